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
    folder = song_id.removeprefix("generic/")
    wav, _ = sf.read(str(root / folder / f"{k:02d}_{INSTRUMENTS[k]}.wav"), dtype="float32")
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
            assert np.all(gains_db >= -12.01) and np.all(gains_db <= 12.01)  # two draws in [-6, 6] dB
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
    assert sorted(set(ids)) == [f"generic/song{j}".encode() for j in range(NUM_SONGS)]
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
    none, fallback = tf.zeros(4, tf.bool), tf.constant([True, False, True, False])
    assert {int(ops.choose_masked(none, ops.fold_seed(seed, i), fallback)) for i in range(40)} == {0, 2}
    ctx, tgt = x[0] * 0.1, x[1] * 0.3
    c2, t2 = ops.normalize_loudness_pair(tf.constant(ctx), tf.constant(tgt), tf.constant(-20.0), 10.0)
    gain = 10 ** (-20 / 20) / np.sqrt(np.mean((ctx + tgt) ** 2))
    np.testing.assert_allclose(c2.numpy(), ctx * gain, rtol=1e-4)
    np.testing.assert_allclose(t2.numpy(), tgt * gain, rtol=1e-4)
    quiet = x[0] * 10 ** (-70 / 20) / np.sqrt(np.mean(x[0] ** 2))  # a -70 dBFS noise floor
    capped, _ = ops.normalize_loudness_pair(tf.constant(quiet), tf.zeros(50), tf.constant(-20.0), 10.0, 20.0)
    np.testing.assert_allclose(10 * np.log10(np.mean(capped.numpy() ** 2)), -50.0, atol=1e-3)
    limited = ops.normalize_loudness(tf.constant(x[2]), tf.constant(0.0), 0.5).numpy()
    np.testing.assert_allclose(np.max(np.abs(limited)), 0.5, rtol=1e-5)
    np.testing.assert_allclose(ops.mix(tf.constant(x), tf.constant([1.0, 0.0, 2.0])).numpy(), x[0] + 2 * x[2],
                               rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(ops.rms_db(tf.constant(x)).numpy(),
                               10 * np.log10(np.mean(x ** 2, axis=1)), rtol=1e-4)


def test_target_to_context_balance_is_centred_on_the_source_mix(root):
    """1,000 pairs: the target's level relative to each context stem, minus the same ratio in the source
    stems (all equal here, as in the mix they came from), averages 0 dB (it was +6 dB when only the
    context stems were attenuated)."""
    cfg = config(root, crop_seconds=0.05, examples_per_song=200)
    length = 400
    rel = []
    for b in pipeline.stem_pair_dataset(cfg, 100, seed=3, num_epochs=1).as_numpy_iterator():
        for i in range(len(b["target"])):
            raws = np.stack([raw_window(root, b["song_id"][i].decode(), k, int(b["offset"][i]), length)
                             for k in range(3)])
            k_t = INSTRUMENTS.index(b["instrument"][i].decode())
            coef, *_ = np.linalg.lstsq(raws.T, b["context"][i] + b["target"][i], rcond=None)
            in_context = [k for k in range(3) if k != k_t and abs(coef[k]) > 1e-4]
            rel += [20 * np.log10(coef[k_t] / coef[k]) for k in in_context]
    assert len(rel) > 800
    assert abs(np.mean(rel)) < 0.6 and 4.4 < np.std(rel) < 5.4  # difference of two U(-6, 6) dB draws: std 4.9


def noise_song(path, names, level_db, sr=SR, seconds=1.0, seed=0):
    rng = np.random.default_rng(seed)
    for name in names:
        wav = rng.normal(size=int(sr * seconds))
        wav *= 10 ** (level_db / 20) / np.sqrt(np.mean(wav ** 2))
        path.mkdir(parents=True, exist_ok=True)
        sf.write(str(path / f"{name}.wav"), wav.astype(np.float32), sr, subtype="FLOAT")


def test_near_silent_crops_are_not_boosted_and_are_flagged(tmp_path):
    noise_song(tmp_path / "quiet", ["bass", "piano"], -70.0)
    cfg = config(tmp_path, crop_seconds=0.25, examples_per_song=4)
    got = next(pipeline.stem_pair_dataset(cfg, 4, seed=0, num_epochs=1).as_numpy_iterator())
    level = 10 * np.log10(np.mean((got["target"] + got["context"]) ** 2, axis=1))
    assert np.all(level <= -70 + 6 + 3 + 20 + 0.1)  # stem gain <= +6 dB, two stems sum <= +3 dB, cap 20 dB
    np.testing.assert_allclose(got["target_db"], -70.0, atol=0.5)  # the level before any gain
    assert np.all(got["target_db"] < cfg.silence_db)


def test_context_only_stems_are_never_targets(tmp_path):
    for name in ("A", "B"):
        noise_song(tmp_path / "train" / name, ["bass", "drums", "other", "vocals"], -20.0)
        (tmp_path / "train" / name / "mixture.wav").write_bytes((tmp_path / "train" / name / "bass.wav").read_bytes())
    cfg = config(tmp_path, layout="musdb18hq", examples_per_song=8)
    ids = [i for b in pipeline.stem_pair_dataset(cfg, 8, num_epochs=1).as_numpy_iterator() for i in b["instrument"]]
    assert set(ids) == {b"bass"}
    grouped = config(tmp_path, layout="musdb18hq", examples_per_song=8, group_targets=True)
    ids = [i for b in pipeline.stem_pair_dataset(grouped, 8, num_epochs=1).as_numpy_iterator() for i in b["instrument"]]
    assert len(set(ids)) > 1


def test_a_mix_filed_as_a_stem_is_left_out(tmp_path, caplog):
    song = tmp_path / "s"
    noise_song(song, ["bass", "piano", "organ"], -25.0)
    wavs = [sf.read(str(song / f"{n}.wav"))[0] for n in ("bass", "piano", "organ")]
    sf.write(str(song / "blend.wav"), np.sum(wavs, axis=0).astype(np.float32), SR, subtype="FLOAT")
    cfg = config(tmp_path, examples_per_song=12)
    with caplog.at_level("WARNING"):
        got = list(pipeline.stem_pair_dataset(cfg, 12, num_epochs=1).as_numpy_iterator())[0]
    assert b"blend" not in set(got["instrument"])
    for i in range(12):  # nor in any context: the context is explained by the three real stems alone
        off = int(got["offset"][i])
        raws = np.stack([w[off:off + 2000] for w in wavs])
        coef, *_ = np.linalg.lstsq(raws.T, got["context"][i], rcond=None)
        np.testing.assert_allclose(raws.T @ coef, got["context"][i], atol=1e-4)
    assert sum("blend.wav" in r.message and "a mix filed as a stem" in r.message for r in caplog.records) == 1


def test_mixes_per_minute_scale_with_song_length(tmp_path):
    noise_song(tmp_path / "short", ["bass", "piano"], -20.0, seconds=30.0, sr=1000)
    noise_song(tmp_path / "long", ["bass", "piano"], -20.0, seconds=300.0, sr=1000)
    cfg = config(tmp_path, sample_rate=1000, examples_per_song=3, examples_per_minute=2.0, crop_seconds=0.1)
    songs = pipeline.host_songs(cfg, 0, 1)
    assert [s.song_id for s in songs] == ["generic/long", "generic/short"]
    np.testing.assert_array_equal(pipeline.examples_per_song(songs, cfg), [10, 3])  # 5 min x 2; the minimum 3
    ids = [i for b in pipeline.stem_pair_dataset(cfg, 13, num_epochs=1, songs=songs).as_numpy_iterator()
           for i in b["song_id"]]
    assert ids.count(b"generic/long") == 10 and ids.count(b"generic/short") == 3
