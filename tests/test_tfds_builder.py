"""The offline TFDS multitrack builder: configs, splits by song, stems as audio at the config's rate."""
import json

import numpy as np
import pytest
import soundfile as sf
import soxr
import tensorflow_datasets as tfds

from diffariff_jax.data import layouts
from diffariff_jax.data.tfds import DiffariffMultitrack, MultitrackConfig

SR = 8000


def sine(seconds, sr, freq):
    return (0.3 * np.sin(2 * np.pi * freq * np.arange(int(sr * seconds)) / sr)).astype(np.float32)


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    root = tmp_path_factory.mktemp("generic")
    for j in range(8):
        d = root / f"song{j}"
        d.mkdir()
        sf.write(str(d / "1_bass.wav"), sine(0.2, SR, 100 + j), SR, subtype="FLOAT")
        sf.write(str(d / "2_organ.wav"), sine(0.1, SR, 300 + j), SR, subtype="FLOAT")  # shorter: padded
    sf.write(str(root / "song0" / "3_flute.wav"), np.stack([sine(0.2, 16000, 700)] * 2, 1), 16000,
             subtype="FLOAT")  # other rate, stereo
    (root / "bad").mkdir()
    (root / "bad" / "a.wav").write_bytes(b"garbage")
    sf.write(str(root / "bad" / "b.wav"), sine(0.2, SR, 100), SR)
    return root


def build(root, data_dir, config):
    builder = DiffariffMultitrack(config=config, data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
    return builder


def test_generic_build_splits_and_audio(catalogue, tmp_path):
    config = MultitrackConfig(name="tiny", layout="generic", sample_rate=SR, split_fractions=(0.5, 0.25, 0.25))
    builder = build(catalogue, tmp_path, config)
    songs = layouts.scan(catalogue, "generic")
    examples = {}
    for split in builder.info.splits:
        got = {ex["song_id"].decode(): ex for ex in tfds.as_numpy(builder.as_dataset(split=split))}
        expected = [s.song_id for s in layouts.songs_in_split(songs, split, (0.5, 0.25, 0.25)) if s.song_id != "generic/bad"]
        assert sorted(got) == expected
        examples.update(got)
    assert sorted(examples) == [f"generic/song{j}" for j in range(8)]
    assert builder.skips == {"bad stem: unreadable": 1, "fewer than 2 usable stems": 1}
    ex = examples["generic/song3"]
    assert [i.decode() for i in ex["instruments"]] == ["bass", "organ"]
    assert list(ex["can_be_target"]) == [True, True]
    audio = ex["audio"]
    assert audio.dtype == np.float32 and audio.shape == (2, int(0.2 * SR))
    np.testing.assert_allclose(audio[0], sine(0.2, SR, 103), atol=1e-6)
    np.testing.assert_allclose(audio[1, : int(0.1 * SR)], sine(0.1, SR, 303), atol=1e-6)
    np.testing.assert_array_equal(audio[1, int(0.1 * SR):], 0.0)
    flute = examples["generic/song0"]["audio"][2]
    reference = soxr.resample(sine(0.2, 16000, 700), 16000, SR, quality="HQ")
    np.testing.assert_allclose(flute[50:-50], reference[50:-50], atol=1e-4)


def test_registered_configs_and_demo_layout(tmp_path):
    assert sorted(DiffariffMultitrack.builder_configs) == sorted(layouts.LAYOUTS)
    assert all(c.sample_rate == 48000 for c in DiffariffMultitrack.builder_configs.values())
    assert "diffariff_multitrack" in tfds.list_builders()
    root = tmp_path / "demo"
    for j in range(3):
        d = root / f"0000{j}_bach_x"
        d.mkdir(parents=True)
        stems = [{"file": "00_violin.wav", "instrument": "violin"}, {"file": "01_tuba.wav", "instrument": "tuba"}]
        (d / "metadata.json").write_text(json.dumps({"song_id": d.name, "stems": stems}))
        for k, s in enumerate(stems):
            sf.write(str(d / s["file"]), sine(0.05, 48000, 200 * (k + 1)), 48000)
    builder = tfds.builder("diffariff_multitrack/demo", data_dir=str(tmp_path / "tfds"))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(root)))
    n = sum(builder.info.splits[s].num_examples for s in builder.info.splits)
    assert n == 3
    ex = next(iter(tfds.as_numpy(builder.as_dataset(split=list(builder.info.splits)[0]))))
    assert [i.decode() for i in ex["instruments"]] == ["violin", "tuba"]
    assert ex["audio"].shape == (2, int(0.05 * 48000))


def test_missing_manual_dir_names_the_path(tmp_path):
    with pytest.raises(Exception, match="nowhere"):
        build(tmp_path / "nowhere", tmp_path / "tfds", MultitrackConfig(name="x", layout="generic"))
