"""The tf.data stem-mixing pipeline and its ops: shapes, targets, context, loudness, determinism, hosts, resume."""
import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf

from diffariff_jax.data import ops, pipeline

SR = 8000
SECONDS = 2.0
INSTRUMENTS = ("violin", "cello", "flute")
NUM_SONGS = 6


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    """6 songs x 3 stems of sines at distinct frequencies; the violin is silent in the first half."""
    root = tmp_path_factory.mktemp("songs")
    t = np.arange(int(SR * SECONDS)) / SR
    for j in range(NUM_SONGS):
        for k, name in enumerate(INSTRUMENTS):
            wav = 0.2 * np.sin(2 * np.pi * (220 + 170 * k + 11 * j) * t)
            if k == 0:
                wav[: t.size // 2] = 0.0
            (root / f"song{j}").mkdir(exist_ok=True)
            sf.write(str(root / f"song{j}" / f"{k:02d}_{name}.wav"), wav.astype(np.float32), SR, subtype="FLOAT")
    return root


def config(root, **kw):
    cfg = pipeline.default_data_config()
    cfg.update(dict(root=str(root), layout="generic", split_fractions=(1.0, 0.0, 0.0), sample_rate=SR,
                    crop_seconds=0.25, examples_per_song=2, num_parallel_calls=2), **kw)
    return cfg


def batches(ds, n):
    it = ds.as_numpy_iterator()
    return [next(it) for _ in range(n)]


def raw_window(root, song_id, k, offset, length):
    wav, _ = sf.read(str(root / song_id / f"{k:02d}_{INSTRUMENTS[k]}.wav"), dtype="float32")
    return wav[offset: offset + length]


def test_pairs_shapes_targets_context_and_loudness(root):
    cfg = config(root)
    length = 2000
    got = batches(pipeline.stem_pair_dataset(cfg, batch_size=4, seed=0), 6)
    b = got[0]
    assert b["context"].shape == b["target"].shape == (4, length) and b["target"].dtype == np.float32
    assert b["song_id"].shape == b["instrument"].shape == b["offset"].shape == (4,)
    context_sizes = []
    for b in got:
        for i in range(4):
            song, inst, off = b["song_id"][i].decode(), b["instrument"][i].decode(), int(b["offset"][i])
            assert 0 <= off <= SR * SECONDS - length
            raws = np.stack([raw_window(root, song, k, off, length) for k in range(3)])
            k_t = INSTRUMENTS.index(inst)
            # the target is its stem's crop, scaled, and that crop is not silent
            assert 20 * np.log10(np.sqrt(np.mean(raws[k_t] ** 2)) + 1e-10) >= cfg.silence_db
            scale = np.dot(b["target"][i], raws[k_t]) / np.dot(raws[k_t], raws[k_t])
            np.testing.assert_allclose(b["target"][i], scale * raws[k_t], atol=1e-4)
            # the context is a mix of the other stems only
            coef, *_ = np.linalg.lstsq(raws.T, b["context"][i], rcond=None)
            np.testing.assert_allclose(raws.T @ coef, b["context"][i], atol=1e-4)
            assert abs(coef[k_t]) < 1e-4
            context_sizes.append(int(np.sum(np.abs(coef) > 1e-4)))
            gains_db = 20 * np.log10(np.abs(coef[np.abs(coef) > 1e-4]) / scale)
            assert np.all(gains_db >= -12.01) and np.all(gains_db <= 0.01)
            level = 20 * np.log10(np.sqrt(np.mean((b["target"][i] + b["context"][i]) ** 2)))
            assert -24.01 <= level <= -15.99
    assert 0 in context_sizes and max(context_sizes) == 2  # empty and full contexts both occur


def test_deterministic_for_a_seed(root):
    cfg = config(root)
    a = batches(pipeline.stem_pair_dataset(cfg, 2, seed=5), 3)
    b = batches(pipeline.stem_pair_dataset(cfg.copy_and_resolve_references(), 2, seed=5), 3)
    c = batches(pipeline.stem_pair_dataset(cfg, 2, seed=6), 3)
    for x, y in zip(a, b):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])
    assert not all(np.array_equal(x["offset"], z["offset"]) for x, z in zip(a, c))


def test_hosts_get_disjoint_songs(root):
    cfg = config(root)
    seen = []
    for host in range(2):
        got = batches(pipeline.stem_pair_dataset(cfg, 2, seed=0, process_index=host, process_count=2), 6)
        seen.append({s for b in got for s in b["song_id"]})
    assert not seen[0] & seen[1]
    assert len(seen[0] | seen[1]) == NUM_SONGS  # one epoch per host covers every one of its songs


def test_resume_reproduces_batches_across_an_epoch_boundary(root):
    cfg = config(root)  # 6 songs x 2 examples = 12 examples = 6 steps of 2 per epoch
    full = batches(pipeline.stem_pair_dataset(cfg, 2, seed=1), 8)
    resumed = batches(pipeline.stem_pair_dataset(cfg, 2, seed=1, start_step=5), 3)
    for x, y in zip(full[5:], resumed):
        for key in x:
            np.testing.assert_array_equal(x[key], y[key])


def test_one_finite_epoch_visits_each_song_examples_per_song_times(root):
    cfg = config(root, examples_per_song=3)  # 18 examples, batches of 4: 4 full + one of 2
    got = list(pipeline.stem_pair_dataset(cfg, 4, seed=2, num_epochs=1).as_numpy_iterator())
    assert [len(b["song_id"]) for b in got] == [4, 4, 4, 4, 2]
    ids = [s for b in got for s in b["song_id"]]
    assert sorted(set(ids)) == [f"song{j}".encode() for j in range(NUM_SONGS)]
    assert all(ids.count(s) == 3 for s in set(ids))


def test_cae_crops(root):
    cfg = config(root, crop_seconds=0.1)
    a = batches(pipeline.cae_dataset(cfg, 4, seed=0), 3)
    b = batches(pipeline.cae_dataset(cfg, 4, seed=0, start_step=2), 1)
    assert set(a[0]) == {"audio"} and a[0]["audio"].shape == (4, 800)
    np.testing.assert_array_equal(a[2]["audio"], b[0]["audio"])
    levels = 20 * np.log10(np.sqrt(np.mean(np.concatenate([x["audio"] for x in a]) ** 2, axis=1)))
    assert np.all(levels >= -24.01) and np.all(levels <= -15.99)


def test_ops_against_numpy():
    seed = tf.constant([1, 2], tf.int64)
    x = np.random.default_rng(0).normal(size=(3, 50)).astype(np.float32)
    mask = tf.constant([False, True, False, True])
    picks = {int(ops.choose_masked(mask, ops.fold_seed(seed, i))) for i in range(40)}
    assert picks == {1, 3}
    ctx, tgt = x[0] * 0.1, x[1] * 0.3
    c2, t2 = ops.normalize_loudness_pair(tf.constant(ctx), tf.constant(tgt), tf.constant(-20.0), 10.0)
    gain = 10 ** (-20 / 20) / np.sqrt(np.mean((ctx + tgt) ** 2))
    np.testing.assert_allclose(c2.numpy(), ctx * gain, rtol=1e-4)
    np.testing.assert_allclose(t2.numpy(), tgt * gain, rtol=1e-4)
    limited = ops.normalize_loudness(tf.constant(x[2]), tf.constant(0.0), 0.5).numpy()
    np.testing.assert_allclose(np.max(np.abs(limited)), 0.5, rtol=1e-5)
    np.testing.assert_allclose(ops.mix(tf.constant(x), tf.constant([1.0, 0.0, 2.0])).numpy(), x[0] + 2 * x[2],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ops.rms_db(tf.constant(x)).numpy(),
                               10 * np.log10(np.mean(x ** 2, axis=1)), rtol=1e-4)
