"""Precompute with a real (micro, random) CAE and tiny CLAP: sharded encoder, CLI end to end, CLI errors."""
import json
import logging

import numpy as np
import pytest

from diffariff_jax.data import layouts
from diffariff_jax.data.latents import decode_example, list_shards, read_info
from diffariff_jax.precompute import call_sizes, main, sharded_encoder
from diffariff_jax.testing.random_cae import MICRO_CAE, random_cae
from diffariff_jax.testing.synth_stems import make_tree
from diffariff_jax.testing.tiny_clap import build_tiny_clap

HOP, FRAMES = 4096, 8


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_tree(tmp_path_factory.mktemp("data"), num_songs=5, seconds=3.0)


def _records(out):
    from array_record.python.array_record_module import ArrayRecordReader

    return [decode_example(b) for p in list_shards(out) for b in ArrayRecordReader(str(p)).read_all()]


@pytest.fixture(scope="module")
def micro_cae(tmp_path_factory):
    from diffariff_jax.autoencoder import Autoencoder
    from diffariff_jax.training.checkpoint import save_release

    cfg, params = random_cae("tiny", MICRO_CAE)
    path = tmp_path_factory.mktemp("cae") / "release"
    save_release(path, cfg, params)
    return str(path), Autoencoder(cfg, params)


def test_sharded_encoder_equals_autoencoder(micro_cae):
    _, ae = micro_cae
    wav = (0.1 * np.random.default_rng(1).standard_normal((3, FRAMES * HOP))).astype(np.float32)
    np.testing.assert_allclose(sharded_encoder(ae)(wav), ae.encode(wav), atol=1e-4)
    with pytest.raises(ValueError, match="whole number"):
        sharded_encoder(ae)(wav[:, :-1])


def test_call_sizes_cover_the_rows_with_few_shapes():
    assert call_sizes(64, 64, 1) == [64] and call_sizes(13, 8, 1) == [8, 4, 1]
    assert call_sizes(3, 8, 2) == [4] and call_sizes(5, 8, 2) == [4, 2]  # padded to the 2 devices
    shapes = {n for b in range(1, 65) for n in call_sizes(b, 64, 1)}
    assert shapes == {1, 2, 4, 8, 16, 32, 64}
    for b in range(1, 40):
        sizes = call_sizes(b, 10, 2)
        assert 0 <= sum(sizes) - b < 2 and set(sizes) <= {10, 8, 4, 2}


def test_sharded_encoder_with_rows_reuses_few_compiled_shapes(micro_cae):
    """Batches of every size from 1 to 8 (a shard's last batch, targets dropped as silent) trace 4 shapes, not 8."""
    from types import SimpleNamespace

    _, ae = micro_cae
    traced = []

    def encode_frames(params, wav):  # runs once per compiled shape
        traced.append(wav.shape[0])
        return ae.encode_frames(params, wav)

    counting = SimpleNamespace(params=ae.params, hop_samples=ae.hop_samples, encode_frames=encode_frames)
    encode = sharded_encoder(counting, rows=8)
    wav = (0.1 * np.random.default_rng(2).standard_normal((8, 2 * HOP))).astype(np.float32)
    want = ae.encode(wav)
    for n in range(1, 9):
        np.testing.assert_allclose(encode(wav[:n]), want[:n], atol=1e-4)
    assert sorted(traced) == [1, 2, 4, 8]


def test_cli_end_to_end_and_errors(micro_cae, data, tmp_path, caplog):
    cae, _ = micro_cae
    clap = build_tiny_clap(tmp_path / "clap")
    args = ["--cae", cae, "--clap", str(clap), "--data", str(data), "--out", str(tmp_path / "out"),
            "--segment-frames", str(FRAMES), "--clap-seconds", "0.25", "--mixes-per-song", "1",
            "--songs-per-shard", "4", "--encode-batch", "8", "--clap-segments", "2"]
    assert main(args) == 0
    train = layouts.songs_in_split(layouts.scan(data, "demo"), "train")
    info = read_info(tmp_path / "out")
    assert (info["clap_dim"], info["clap"], info["cae"]) == (32, str(clap), cae)
    recs = _records(tmp_path / "out")
    assert len(recs) == len(train) and recs[0].clap.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(recs[0].clap, axis=1), 1.0, atol=1e-5)
    caplog.set_level(logging.ERROR)
    missing = args.copy()
    missing[1] = str(tmp_path / "no_cae")
    assert main(missing) == 1
    assert f"checkpoint path {tmp_path / 'no_cae'} does not exist" in caplog.text
    (tmp_path / "empty").mkdir()
    empty = args.copy()
    empty[5] = str(tmp_path / "empty")
    assert main(empty) == 1
    assert "empty: no */metadata.json" in caplog.text
    nodata = args.copy()
    nodata[5] = str(tmp_path / "nowhere")
    assert main(nodata) == 1
    assert "nowhere: dataset folder not found" in caplog.text


def test_resume_with_retrained_weights_at_the_same_path_is_refused(data, tmp_path, caplog):
    """A CAE trained further (or a CLAP retrained) in place must not add its records to the old ones."""
    import shutil

    from diffariff_jax.training.checkpoint import save_release

    cae = tmp_path / "cae"
    save_release(cae, *random_cae("tiny", MICRO_CAE, seed=0))
    clap = build_tiny_clap(tmp_path / "clap")
    args = ["--cae", str(cae), "--clap", str(clap), "--data", str(data), "--out", str(tmp_path / "out"),
            "--segment-frames", str(FRAMES), "--clap-seconds", "0.25", "--mixes-per-song", "1",
            "--songs-per-shard", "2", "--encode-batch", "8", "--clap-segments", "2"]
    assert main(args) == 0
    first = read_info(tmp_path / "out")
    assert len(first["cae_weights"]) == 16 and len(first["clap_weights"]) == 16
    assert main(args) == 0  # same weights: resumes (every shard already done)
    shutil.rmtree(cae)
    save_release(cae, *random_cae("tiny", MICRO_CAE, seed=1))
    caplog.set_level(logging.ERROR)
    assert main(args) == 1
    assert "holds latents made with other settings (cae_weights); use a new --out directory" in caplog.text
    assert read_info(tmp_path / "out") == first


SHARDED_SCRIPT = """
import jax, numpy as np
from diffariff_jax.autoencoder import Autoencoder
from diffariff_jax.precompute import sharded_encoder
from diffariff_jax.testing.random_cae import MICRO_CAE, random_cae
assert jax.local_device_count() == 2
ae = Autoencoder(*random_cae("tiny", MICRO_CAE))
wav = (0.1 * np.random.default_rng(1).standard_normal((3, 8 * 4096))).astype(np.float32)
got = sharded_encoder(ae)(wav)  # 3 rows padded to 4: 2 per device
print(float(np.abs(got - ae.encode(wav)).max()))
"""


def test_sharded_encoder_on_two_devices():
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SHARDED_SCRIPT], cwd=Path(__file__).parents[1], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert float(proc.stdout.strip().splitlines()[-1]) < 1e-4


def test_data_whose_every_song_is_skipped_fails(micro_cae, tmp_path, caplog):
    cae, _ = micro_cae
    data = make_tree(tmp_path / "data", num_songs=5, seconds=3.0)
    for wav in data.glob("*/*.wav"):
        wav.write_bytes(b"not audio")
    args = ["--cae", cae, "--clap", str(build_tiny_clap(tmp_path / "clap")), "--data", str(data),
            "--out", str(tmp_path / "out"), "--segment-frames", str(FRAMES), "--clap-seconds", "0.25"]
    caplog.set_level(logging.ERROR)
    assert main(args) == 1
    assert f"{tmp_path / 'out'}: no examples written, every song was skipped (bad stem: unreadable" in caplog.text


def test_out_on_a_bucket_fails_in_one_line_and_relative_paths_work(micro_cae, data, tmp_path, caplog, monkeypatch):
    cae, _ = micro_cae
    build_tiny_clap(tmp_path / "clap")  # found below as "clap" and "./clap", relative to the cwd
    common = ["--segment-frames", str(FRAMES), "--clap-seconds", "0.25", "--mixes-per-song", "1",
              "--songs-per-shard", "8", "--clap-segments", "1"]
    monkeypatch.chdir(tmp_path)
    caplog.set_level(logging.ERROR)
    assert main(["--cae", cae, "--clap", "clap", "--data", str(data), "--out", "gs://bucket/latents"] + common) == 1
    assert "--out gs://bucket/latents: only a local path works here" in caplog.text
    assert not (tmp_path / "gs:").exists()
    assert main(["--cae", cae, "--clap", "./clap", "--data", str(data), "--out", "rel/out"] + common) == 0
    assert read_info(tmp_path / "rel" / "out")["clap"] == str(tmp_path / "clap")


def test_hosts_with_unequal_work_never_wait_for_each_other(micro_cae, data, tmp_path, monkeypatch):
    """2 shards of 3 and 1 songs over 2 hosts launched the way a cluster does (JAX_* environment): host 0 runs
    to the end before host 1 even starts. Joining JAX's distributed runtime would block host 0 until host 1
    connected, or abort it at the runtime's exit barrier; here neither host joins, both exit 0, and every
    shard is written."""
    import jax

    def joined(*args, **kwargs):
        raise AssertionError("precompute joined the distributed runtime")

    monkeypatch.setattr(jax.distributed, "initialize", joined)
    cae, _ = micro_cae
    clap = build_tiny_clap(tmp_path / "clap")
    args = ["--cae", cae, "--clap", str(clap), "--data", str(data), "--out", str(tmp_path / "out"),
            "--segment-frames", str(FRAMES), "--clap-seconds", "0.25", "--mixes-per-song", "1",
            "--songs-per-shard", "3", "--clap-segments", "1", "--split", "train"]
    assert len(layouts.songs_in_split(layouts.scan(data, "demo"), "train")) == 4  # shards of 3 and 1 songs
    monkeypatch.setenv("JAX_COORDINATOR_ADDRESS", "127.0.0.1:1")
    monkeypatch.setenv("JAX_NUM_PROCESSES", "2")
    written = []
    for host in (0, 1):
        monkeypatch.setenv("JAX_PROCESS_ID", str(host))
        assert main(args) == 0
        written.append(json.loads((tmp_path / "out" / f"precompute-host{host:03d}.json").read_text()))
    assert [(w["host"], w["hosts"], w["shards_written"]) for w in written] == [(0, 2, 1), (1, 2, 1)]
    assert written[0]["examples_written"] == 3 and written[1]["examples_written"] == 1
    assert len(list_shards(tmp_path / "out")) == 2
