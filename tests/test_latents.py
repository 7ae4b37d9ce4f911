"""Latent records: encode/decode, atomic shards, deterministic resumable reader, host split."""
import os

import numpy as np
import pytest

from diffariff_jax.data.latents import (LatentExample, LatentReader, decode_example, encode_example, list_shards,
                                        read_info, shard_path, write_info, write_shard)

FRAMES, DIM, K, D = 20, 64, 3, 8


def _example(i: int) -> LatentExample:
    rng = np.random.default_rng(i)
    # Frame f of example i holds i + f/100 in channel 0, so crops can be checked exactly.
    target = rng.standard_normal((FRAMES, DIM)).astype(np.float32)
    target[:, 0] = i + np.arange(FRAMES) / 100
    context = -target
    clap = np.full((K, D), i, np.float32) + np.arange(K)[:, None] * 0.25
    return LatentExample(target, context, clap, f"song{i // 4}", ["cello", "flute"][i % 2], 4096 * i, (i, 2 * i, 3 * i))


def _make(root, n=23, shards=3):
    ids = np.array_split(np.arange(n), shards)
    for s, part in enumerate(ids):
        write_shard(root, s, shards, (_example(int(i)) for i in part), latent_dtype="float32")
    write_info(root, {"frames": FRAMES, "latent_dim": DIM, "clap_dim": D})
    return root


def test_encode_decode_round_trip():
    ex = _example(5)
    back = decode_example(encode_example(ex, "float32"))
    np.testing.assert_array_equal(back.target, ex.target)
    np.testing.assert_array_equal(back.context, ex.context)
    np.testing.assert_array_equal(back.clap, ex.clap)
    assert (back.song_id, back.instrument, back.offset, back.clap_offsets) == ("song1", "flute", 5 * 4096, (5, 10, 15))
    half = decode_example(encode_example(ex))  # float16 default: relative rounding <= 2^-11
    assert half.target.dtype == np.float16
    np.testing.assert_allclose(half.target.astype(np.float32), ex.target, rtol=2**-11, atol=1e-7)
    with pytest.raises(ValueError, match="not a latent record"):
        decode_example(b"nope" + bytes(10))


def test_shards_written_atomically_and_listed(tmp_path):
    _make(tmp_path)
    assert [p.name for p in list_shards(tmp_path)] == [f"latents-0000{i}-of-00003.array_record" for i in range(3)]
    assert not list(tmp_path.glob("*.tmp-*"))

    def broken():
        yield _example(0)
        raise RuntimeError("encoder died")

    with pytest.raises(RuntimeError):
        write_shard(tmp_path / "b", 0, 2, broken())
    assert not list((tmp_path / "b").iterdir())  # no partial shard, no temp file left behind
    write_shard(tmp_path / "b", 1, 2, [_example(1)])
    with pytest.raises(FileNotFoundError, match="1 of 2 shards missing.*latents-00000-of-00002"):
        list_shards(tmp_path / "b")
    with pytest.raises(FileNotFoundError, match="no latents.json"):
        read_info(tmp_path / "b")


def test_batches_are_crops_of_the_records(tmp_path):
    r = LatentReader(_make(tmp_path), batch_size=5, crop_frames=8, seed=1)
    assert r.num_examples == 23
    b = r.batch(0)
    assert b["target"].shape == (5, 8, DIM) and b["context"].shape == (5, 8, DIM) and b["clap"].shape == (5, D)
    assert all(v.dtype == np.float32 for v in b.values())
    for row, i in enumerate(r.indices(0)):
        first = b["target"][row, 0, 0] - i  # the crop's first frame / 100
        start = int(round(first * 100))
        assert 0 <= start <= FRAMES - 8
        np.testing.assert_allclose(b["target"][row], _example(int(i)).target[start:start + 8], atol=1e-6)
        np.testing.assert_allclose(b["context"][row], -b["target"][row])
        assert (b["clap"][row] - i)[0] in (0.0, 0.25, 0.5)


def test_deterministic_epochs_and_resume(tmp_path):
    root = _make(tmp_path)
    a = LatentReader(root, batch_size=4, crop_frames=8, seed=3, workers=3)
    b = LatentReader(root, batch_size=4, crop_frames=8, seed=3)
    # An epoch (23 examples) visits every example once: steps 0..4 cover positions 0..19 without repeats.
    seen = np.concatenate([a.indices(s) for s in range(5)])
    assert len(set(seen.tolist())) == 20
    full = [batch for _, batch in zip(range(7), a.iterate(prefetch=2))]
    resumed = [batch for _, batch in zip(range(3), b.iterate(start_step=4, prefetch=0))]
    for x, y in zip(full[4:], resumed):
        for k in x:
            np.testing.assert_array_equal(x[k], y[k])
    other = LatentReader(root, batch_size=4, crop_frames=8, seed=4)
    assert not np.array_equal(other.indices(0), a.indices(0))


def test_host_split_partitions_the_global_batch(tmp_path):
    root = _make(tmp_path)
    single = LatentReader(root, batch_size=6, crop_frames=8, seed=2)
    hosts = [LatentReader(root, batch_size=3, crop_frames=8, seed=2, process_index=h, process_count=2)
             for h in range(2)]
    for step in range(3):
        np.testing.assert_array_equal(np.concatenate([h.indices(step) for h in hosts]), single.indices(step))
    with pytest.raises(ValueError, match="process_index 2"):
        LatentReader(root, 3, 8, process_index=2, process_count=2)


def test_reader_errors(tmp_path):
    root = _make(tmp_path)
    with pytest.raises(ValueError, match="crop_frames 21 > the 20 frames"):
        LatentReader(root, 2, 21)
    shard_path(root, 1, 3).unlink()
    with pytest.raises(FileNotFoundError, match="shards missing"):
        LatentReader(root, 2, 8)


def test_open_shard_files_stay_bounded_across_threads(tmp_path):
    """Many shards read by several threads hold at most max_open files (not threads x shards), and the
    batches are the ones an unbounded reader gives."""
    root = tmp_path / "many"
    for s in range(12):
        write_shard(root, s, 12, [_example(2 * s), _example(2 * s + 1)])
    write_info(root, {"frames": FRAMES, "latent_dim": DIM, "clap_dim": D})
    bounded = LatentReader(root, batch_size=6, crop_frames=8, seed=1, workers=3, max_open=4)
    reference = LatentReader(root, batch_size=6, crop_frames=8, seed=1, max_open=100)
    fds = len(os.listdir("/proc/self/fd"))
    got = [batch for _, batch in zip(range(10), bounded.iterate(prefetch=3))]
    assert bounded.readers.open_count <= 4 and len(os.listdir("/proc/self/fd")) <= fds + 4
    for step, batch in enumerate(got):
        for k, want in reference.batch(step).items():
            np.testing.assert_array_equal(batch[k], want)
    bounded.close()
    assert bounded.readers.open_count == 0


def test_records_on_a_bucket_fail_in_one_line_naming_the_supported_way(tmp_path):
    with pytest.raises(ValueError, match="gs://b/latents: only a local path works here .*gcsfuse") as err:
        LatentReader("gs://b/latents", 2, 8)
    assert "\n" not in str(err.value)
    with pytest.raises(ValueError, match="gcsfuse"):
        read_info("gs://b/latents")


def test_global_batches_on_a_mesh(tmp_path):
    import jax

    from configs.common import mesh_config
    from diffariff_jax.data.latents import global_batches
    from diffariff_jax.training.mesh import make_mesh

    reader = LatentReader(_make(tmp_path), batch_size=4, crop_frames=8, seed=5)
    gen = global_batches(reader, make_mesh(mesh_config()), start_step=2)
    got = next(gen)
    gen.close()
    want = reader.batch(2)
    assert all(isinstance(v, jax.Array) for v in got.values())
    for k in want:
        np.testing.assert_array_equal(np.asarray(got[k]), want[k])
