"""Bad input in a catalogue: each bad file or song is skipped with one log line and counted, or fails fast."""
import logging

import numpy as np
import pytest
import soundfile as sf
import soxr

from diffariff_jax.data import layouts, pipeline
from diffariff_jax.data.stems import load_song, probe_songs, read_window

SR = 8000


def sine(seconds, sr=SR, freq=330.0, channels=1):
    t = np.arange(int(sr * seconds)) / sr
    wav = (0.3 * np.sin(2 * np.pi * freq * t)).astype(np.float32)
    return np.stack([wav, 0.5 * wav], 1) if channels == 2 else wav


def write(path, wav, sr=SR):
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), wav, sr, subtype="FLOAT")


@pytest.fixture()
def root(tmp_path):
    write(tmp_path / "good" / "a.wav", sine(1.0))
    write(tmp_path / "good" / "b.wav", sine(1.0, freq=500))
    write(tmp_path / "odd" / "a.wav", sine(1.0, sr=22050, channels=2), sr=22050)  # other rate, stereo
    write(tmp_path / "odd" / "b.wav", sine(0.5, freq=500))  # half as long: zero-padded
    (tmp_path / "unreadable").mkdir()
    (tmp_path / "unreadable" / "x.wav").write_bytes(b"RIFF not really a wave file")
    write(tmp_path / "unreadable" / "y.wav", sine(1.0))
    write(tmp_path / "unreadable" / "z.wav", sine(1.0, freq=500))
    write(tmp_path / "empty" / "e.wav", np.zeros(0, np.float32))
    write(tmp_path / "empty" / "f.wav", sine(1.0))
    write(tmp_path / "short" / "a.wav", sine(0.05))
    write(tmp_path / "short" / "b.wav", sine(0.05))
    nan = sine(1.0)
    nan[100:200] = np.nan
    write(tmp_path / "nan" / "n.wav", nan)
    write(tmp_path / "nan" / "m.wav", sine(1.0))
    write(tmp_path / "nan" / "o.wav", sine(1.0, freq=500))
    write(tmp_path / "silent" / "s.wav", np.zeros(SR, np.float32))
    write(tmp_path / "silent" / "t.wav", sine(1.0))
    write(tmp_path / "silent" / "u.wav", sine(1.0, freq=500))
    write(tmp_path / "one" / "solo.wav", sine(1.0))
    return tmp_path


def probe(root, full):
    skips = layouts.Skips()
    songs = probe_songs(layouts.scan(root, "generic", skips), SR, 0.25, skips, full=full)
    return {s.song_id.removeprefix("generic/"): s for s in songs}, skips


def test_header_probe_skips_and_counts(root, caplog):
    caplog.set_level(logging.WARNING)
    songs, skips = probe(root, full=False)
    assert sorted(songs) == ["good", "nan", "odd", "silent", "unreadable"]
    assert songs["unreadable"].instruments == ("y", "z")
    assert skips == {"fewer than 2 stems": 1, "bad stem: unreadable": 1, "bad stem: empty file": 1,
                     "fewer than 2 usable stems": 1, "too short": 1}
    for name in ("x.wav", "e.wav", "one", "short"):
        assert name in caplog.text
    assert len([r for r in caplog.records if r.name.startswith("diffariff_jax.data")]) == 5


def test_full_probe_also_catches_nan_and_silence(root, caplog):
    caplog.set_level(logging.WARNING)
    songs, skips = probe(root, full=True)
    assert songs["nan"].instruments == ("m", "o") and songs["silent"].instruments == ("t", "u")
    assert skips["bad stem: contains NaN or inf samples"] == 1 and skips["bad stem: silent"] == 1
    assert "n.wav" in caplog.text and "s.wav" in caplog.text


def test_odd_rate_stereo_is_resampled_downmixed_and_short_stem_padded(root):
    songs, _ = probe(root, full=False)
    odd = songs["odd"]
    assert odd.num_samples == SR  # the longest stem, at the target rate
    whole = load_song(odd, SR)
    assert whole.shape == (2, SR)
    stereo, sr = sf.read(str(root / "odd" / "a.wav"), dtype="float32")
    reference = soxr.resample(stereo.mean(axis=1), sr, SR, quality="HQ")
    np.testing.assert_allclose(whole[0, 200:-200], reference[200:SR - 200], atol=1e-4)
    np.testing.assert_array_equal(whole[1, SR // 2:], 0.0)  # pad decision: zeros after a stem ends
    window = read_window(odd, 3000, 2000, SR)
    np.testing.assert_allclose(window[0, 100:-100], reference[3100:4900], atol=2e-3)
    np.testing.assert_array_equal(window[1, 1000:], 0.0)
    np.testing.assert_allclose(window[1, :1000], whole[1, 3000:4000], atol=1e-6)


def test_nan_window_is_zeroed_with_a_log_line(root, caplog):
    songs, _ = probe(root, full=False)
    window = read_window(songs["nan"], 0, 400, SR)
    assert np.all(np.isfinite(window)) and np.all(window[1] == 0.0) and np.any(window[0] != 0.0)
    assert "n.wav" in caplog.text and "NaN" in caplog.text


def test_pipeline_runs_on_the_messy_catalogue(root):
    cfg = pipeline.default_data_config()
    cfg.update(dict(root=str(root), layout="generic", split_fractions=(1.0, 0.0, 0.0), sample_rate=SR,
                    crop_seconds=0.25, validate="full"))
    skips = layouts.Skips()
    songs = pipeline.host_songs(cfg, 0, 1, skips)
    assert len(songs) == 5 and sum(skips.values()) == 7
    batch = next(pipeline.stem_pair_dataset(cfg, 8, songs=songs).as_numpy_iterator())
    assert np.all(np.isfinite(batch["target"])) and np.all(np.isfinite(batch["context"]))


def test_fail_fast_cases(root, tmp_path_factory):
    cfg = pipeline.default_data_config()
    cfg.update(dict(root=str(root), layout="generic", split_fractions=(1.0, 0.0, 0.0), sample_rate=SR,
                    crop_seconds=0.25))
    with pytest.raises(ValueError, match="fewer than the 9 hosts"):
        pipeline.host_songs(cfg, 0, 9)
    with pytest.raises(ValueError, match="process_index 2"):
        pipeline.host_songs(cfg, 2, 2)
    with pytest.raises(ValueError, match="no usable song"):
        pipeline.host_songs(_with(cfg, crop_seconds=5.0), 0, 1)
    with pytest.raises(ValueError, match="context_keep_prob"):
        pipeline.host_songs(_with(cfg, context_keep_prob=1.5), 0, 1)
    with pytest.raises(ValueError, match="validate"):
        pipeline.host_songs(_with(cfg, validate="sometimes"), 0, 1)
    with pytest.raises(FileNotFoundError, match="nowhere"):
        pipeline.host_songs(_with(cfg, root=str(root / "nowhere")), 0, 1)


def _with(cfg, **kw):
    new = cfg.copy_and_resolve_references()
    new.update(kw)
    return new


def test_moisesdb_tracks_one_sample_apart_after_resampling(tmp_path):
    """Two tracks of one stem, 4400 and 4401 samples at 44.1 kHz, resample to 4789 and 4790 samples at 48 kHz:
    full validation sums them instead of failing to broadcast (which aborted a whole precompute)."""
    import json
    song = tmp_path / "prov" / "abc"
    data = {"stems": [{"stemName": "guitar", "tracks": [{"id": "t1", "extension": "wav"},
                                                        {"id": "t2", "extension": "wav"}]},
                      {"stemName": "bass", "tracks": [{"id": "t3", "extension": "wav"}]}]}
    song.mkdir(parents=True)
    (song / "data.json").write_text(json.dumps(data))
    write(song / "guitar" / "t1.wav", sine(4400 / 44100, sr=44100), sr=44100)
    write(song / "guitar" / "t2.wav", sine(4401 / 44100, sr=44100, freq=500), sr=44100)
    write(song / "bass" / "t3.wav", sine(4401 / 44100, sr=44100, freq=110), sr=44100)
    skips = layouts.Skips()
    (probed,) = probe_songs(layouts.scan(tmp_path, "moisesdb"), 48000, 0.05, skips, full=True)
    assert probed.instruments == ("guitar", "bass") and not skips


def corrupt_flac(path, seconds=2.0):
    sf.write(str(path), sine(seconds), SR, format="FLAC")
    data = bytearray(path.read_bytes())
    mid = len(data) // 2
    data[mid:mid + 2000] = bytes(np.random.default_rng(1).integers(0, 256, 2000, dtype=np.uint8))
    path.write_bytes(bytes(data))


def test_corrupt_flac_frames_are_skipped_and_counted_with_the_path(tmp_path, caplog):
    song = tmp_path / "song"
    write(song / "bass.wav", sine(2.0, freq=110))
    write(song / "piano.wav", sine(2.0, freq=500))
    corrupt_flac(song / "cello.flac")
    assert sf.info(str(song / "cello.flac")).frames == 2 * SR  # the header is fine: header validation passes
    cfg = pipeline.default_data_config()
    cfg.update(dict(root=str(tmp_path), layout="generic", split_fractions=(1.0, 0.0, 0.0), sample_rate=SR,
                    crop_seconds=0.5, examples_per_song=16, validate="header"))
    skips = layouts.Skips()
    with caplog.at_level(logging.WARNING):
        got = [b for b in pipeline.stem_pair_dataset(cfg, 8, num_epochs=1, skips=skips).as_numpy_iterator()]
    assert sum(len(b["target"]) for b in got) == 16  # the run went on
    assert skips["read error in a crop (stem zeroed)"] > 0
    assert any("cello.flac" in r.message and "read error" in r.message for r in caplog.records)
    # full validation decodes every file up front and drops the stem, naming it
    full = layouts.Skips()
    (probed,) = probe_songs(layouts.scan(tmp_path, "generic"), SR, 0.5, full, full=True)
    assert probed.instruments == ("bass", "piano") and sum(full.values()) == 1
