"""tasks.py: the task per kind, data checks that fail in one line, per-host CAE and LDM batches (no compiling)."""
import ml_collections
import numpy as np
import pytest
import soundfile as sf

from configs.cae import get_config as cae_config
from configs.ldm import get_config as ldm_config
from diffariff_jax.training import tasks
from scenario_tasks import write_tiny_latents


def _songs(root, count=3, seconds=1.0):
    rng = np.random.default_rng(0)
    for song in range(count):
        for name, freq in (("violin", 440.0), ("cello", 110.0)):
            t = np.arange(int(48000 * seconds)) / 48000
            wav = 0.3 * np.sin(2 * np.pi * freq * (1 + song / 10) * t) + 0.01 * rng.normal(size=t.size)
            (root / f"song{song}").mkdir(parents=True, exist_ok=True)
            sf.write(root / f"song{song}" / f"{name}.wav", wav.astype(np.float32), 48000)
    return root


def test_make_task_by_kind():
    assert type(tasks.make_task(ldm_config("tiny"))).__name__ == "LdmTask"
    assert type(tasks.make_task(cae_config("tiny"))).__name__ == "CAETask"
    with pytest.raises(ValueError, match="config.kind='gan'"):
        tasks.make_task(ml_collections.ConfigDict({"kind": "gan"}))


def test_check_data_errors(tmp_path):
    config = ldm_config("tiny")
    with pytest.raises(tasks.DataSetupError, match="records_dir is not set"):
        tasks.check_data(config)
    config.data.records_dir = str(tmp_path)
    with pytest.raises(tasks.DataSetupError, match="no latents.json"):
        tasks.check_data(config)
    config.data.records_dir = str(write_tiny_latents(tmp_path / "latents"))  # clap_dim 16, 12 frames
    with pytest.raises(tasks.DataSetupError, match=r"clap_dim=16 records but config.model.clap_dim=32; "
                       r"pass --config.model.clap_dim=16$"):
        tasks.check_data(config)
    config.model.clap_dim = 16
    with pytest.raises(tasks.DataSetupError, match=r"crop_frames=16 is longer than the 12 frames"):
        tasks.check_data(config)
    config.data.crop_frames = 12
    tasks.check_data(config)
    config.data.val_records_dir = str(tmp_path / "missing")
    with pytest.raises(tasks.DataSetupError, match="missing: no latents.json"):
        tasks.check_data(config)
    config = cae_config("tiny")
    with pytest.raises(tasks.DataSetupError, match="root is not set"):
        tasks.check_data(config)
    config.data.update(root=str(tmp_path / "nothing"), layout="generic")
    with pytest.raises(tasks.DataSetupError, match="dataset folder not found"):
        tasks.check_data(config)


def test_adopt_records_clap_dim(tmp_path):
    config = ldm_config("tiny")
    assert tasks.adopt_records_clap_dim(config) is None and config.model.clap_dim == 32  # no records_dir yet
    config.data.records_dir = str(tmp_path)  # no latents.json: untouched, check_data reports it
    assert tasks.adopt_records_clap_dim(config) is None and config.model.clap_dim == 32
    config.data.records_dir = str(write_tiny_latents(tmp_path / "latents", clap_dim=24))
    assert tasks.adopt_records_clap_dim(config) == 24 and config.model.clap_dim == 24
    config.data.crop_frames = 12
    tasks.check_data(config)
    assert tasks.adopt_records_clap_dim(cae_config("tiny")) is None


def test_batches_are_per_host_and_resumable(tmp_path):
    config = ldm_config("tiny")
    config.data.update(records_dir=str(write_tiny_latents(tmp_path / "latents", clap_dim=32)), crop_frames=8)
    config.train.batch_size = 4
    hosts = [tasks.make_batches(config, "train", 3, process_index=i, process_count=2) for i in range(2)]
    first = [next(h) for h in hosts]
    assert all(b["target"].shape == (2, 8, 64) and b["clap"].shape == (2, 32) for b in first)
    assert not np.array_equal(first[0]["target"], first[1]["target"])
    again = next(tasks.make_batches(config, "train", 3, process_index=1, process_count=2))
    np.testing.assert_array_equal(again["target"], first[1]["target"])

    config = cae_config("tiny")
    config.data.update(root=str(_songs(tmp_path / "songs")), layout="generic")
    config.train.batch_size = 2
    tasks.check_data(config)
    batch = next(tasks.make_batches(config, "train", 0, process_index=0, process_count=1))
    assert set(batch) == {"audio"} and batch["audio"].shape == (2, tasks.make_task(config).crop_samples)
    val = next(tasks.make_batches(config, "val", 0, process_index=0, process_count=1))  # or train songs if none
    assert val["audio"].shape == batch["audio"].shape and np.all(np.isfinite(val["audio"]))


def test_unusable_data_found_by_the_reader_is_a_data_setup_error(tmp_path):
    from diffariff_jax.data import latents

    config = ldm_config("tiny")
    empty = tmp_path / "latents"
    latents.write_shard(empty, 0, 1, [])  # what precompute leaves when every song was skipped
    latents.write_info(empty, {"frames": 16, "latent_dim": 64, "clap_dim": 32, "sample_rate": 48000})
    config.data.records_dir = str(empty)
    tasks.check_data(config)
    with pytest.raises(tasks.DataSetupError, match=r"^LDM data: .*latents: the shards hold no examples$"):
        tasks.make_batches(config, "train", 0, process_index=0, process_count=1)

    config = cae_config("tiny")
    root = _songs(tmp_path / "songs", count=1)
    for wav in root.glob("*/*.wav"):
        wav.write_bytes(b"not audio")  # the scan lists the song; the reader finds no readable stem
    config.data.update(root=str(root), layout="generic")
    tasks.check_data(config)
    with pytest.raises(tasks.DataSetupError, match=r"^CAE data: .*songs: no usable song for host 0 in split"):
        tasks.make_batches(config, "train", 0, process_index=0, process_count=1)
