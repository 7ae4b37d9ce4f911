"""Folder-layout readers on tiny fake trees of every layout, and the song-level hash splits."""
import json

import numpy as np
import pytest
import soundfile as sf
import yaml

from diffariff_jax.data import layouts
from diffariff_jax.data.layouts import Song, Stem


def tone(path, sr=8000, seconds=0.1, channels=1):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(sr * seconds)) / sr
    wav = 0.1 * np.sin(2 * np.pi * 440 * t)
    sf.write(str(path), np.stack([wav] * channels, 1) if channels > 1 else wav, sr)


def by_id(songs):
    return {s.song_id: s for s in songs}


def test_generic_layout(tmp_path):
    tone(tmp_path / "songA" / "01_Electric_Bass.flac", sr=44100, channels=2)
    tone(tmp_path / "songA" / "02-lead vocals.wav")
    tone(tmp_path / "songA" / "mixture.wav")  # a full mix, not a stem
    (tmp_path / "songA" / "notes.txt").write_text("not audio")
    tone(tmp_path / "album" / "songB" / "piano.ogg")
    tone(tmp_path / "album" / "songB" / "drums.wav")
    tone(tmp_path / "lonely" / "guitar.wav")  # one stem -> skipped
    skips = layouts.Skips()
    songs = by_id(layouts.scan(tmp_path, "generic", skips))
    assert sorted(songs) == ["album/songB", "songA"]
    assert [s.instrument for s in songs["songA"].stems] == ["electric bass", "lead vocals"]
    assert [s.instrument for s in songs["album/songB"].stems] == ["drums", "piano"]
    assert all(len(s.paths) == 1 for s in songs["songA"].stems)
    assert skips == {"fewer than 2 stems": 1}


def test_musdb18hq_keeps_official_test_split(tmp_path):
    for split, name in [("train", "A - One"), ("train", "B - Two"), ("test", "C - Three")]:
        for stem in ("mixture", "drums", "bass", "other", "vocals"):
            tone(tmp_path / split / name / f"{stem}.wav")
    songs = by_id(layouts.scan(tmp_path, "musdb18hq"))
    assert sorted(songs) == ["test/C - Three", "train/A - One", "train/B - Two"]
    assert [s.instrument for s in songs["train/A - One"].stems] == ["bass", "drums", "other", "vocals"]
    assert layouts.split_of(songs["test/C - Three"], (1.0, 0.0, 0.0)) == "test"
    # official train songs never land in test, whatever the fractions
    assert layouts.split_of(songs["train/A - One"], (0.0, 0.0, 1.0)) == "train"
    assert layouts.split_of(songs["train/A - One"], (0.0, 1.0, 0.0)) == "validation"


def test_slakh2100_layout(tmp_path):
    track = tmp_path / "train" / "Track00001"
    meta = {"UUID": "x", "stems": {
        "S00": {"audio_rendered": True, "inst_class": "Piano", "is_drum": False,
                "midi_program_name": "Acoustic Grand Piano", "program_num": 0},
        "S01": {"audio_rendered": True, "inst_class": "Drums", "is_drum": True,
                "midi_program_name": "Drums", "program_num": 128},
        "S02": {"audio_rendered": False, "inst_class": "Bass", "is_drum": False,
                "midi_program_name": "Fretless Bass", "program_num": 35},
        "S03": {"audio_rendered": True, "inst_class": "Guitar", "is_drum": False,
                "midi_program_name": "Distortion Guitar", "program_num": 30}}}
    track.mkdir(parents=True)
    (track / "metadata.yaml").write_text(yaml.safe_dump(meta))
    for key in ("S00", "S01", "S03"):
        tone(track / "stems" / f"{key}.flac")
    tone(track / "mix.flac")
    omitted = tmp_path / "omitted" / "Track00002"
    omitted.mkdir(parents=True)
    (omitted / "metadata.yaml").write_text(yaml.safe_dump(meta))
    skips = layouts.Skips()
    (song,) = layouts.scan(tmp_path, "slakh2100", skips)
    assert song.song_id == "train/Track00001" and song.split == "train"
    assert [s.instrument for s in song.stems] == ["acoustic grand piano", "drums", "distortion guitar"]
    assert song.stems[2].paths[0].endswith("S03.flac")
    assert skips == {"in Slakh's 'omitted' split": 1}


def test_moisesdb_layout_sums_tracks_of_a_stem(tmp_path):
    song_dir = tmp_path / "provider" / "0a1b"
    data = {"artist": "x", "song": "y", "genre": "rock", "stems": [
        {"id": "s1", "stemName": "guitar", "tracks": [
            {"id": "t1", "trackType": "clean_electric_guitar", "extension": "wav"},
            {"id": "t2", "trackType": "distorted_electric_guitar", "extension": "wav"}]},
        {"id": "s2", "stemName": "bowed_strings", "tracks": [
            {"id": "t3", "trackType": "cello", "extension": "wav"}]}]}
    song_dir.mkdir(parents=True)
    (song_dir / "data.json").write_text(json.dumps(data))
    for stem, track in [("guitar", "t1"), ("guitar", "t2"), ("bowed_strings", "t3")]:
        tone(song_dir / stem / f"{track}.wav")
    (song,) = layouts.scan(tmp_path, "moisesdb")
    assert song.song_id == "provider/0a1b"
    assert [(s.instrument, len(s.paths)) for s in song.stems] == [("guitar", 2), ("bowed strings", 1)]


def test_demo_layout_reads_metadata(tmp_path):
    d = tmp_path / "00000_bach_x"
    meta = {"song_id": "00000_bach_x", "stems": [{"file": "00_violin.wav", "instrument": "violin"},
                                                 {"file": "01_tuba.wav", "instrument": "tuba"}]}
    d.mkdir()
    (d / "metadata.json").write_text(json.dumps(meta))
    tone(d / "00_violin.wav")
    tone(d / "01_tuba.wav")
    (song,) = layouts.scan(tmp_path, "demo")
    assert song == Song("00000_bach_x", (Stem("violin", (str(d / "00_violin.wav"),)),
                                         Stem("tuba", (str(d / "01_tuba.wav"),))))
    with pytest.raises(FileNotFoundError, match=r"render --out .*00000_bach_x`$"):  # the path, not "{root}"
        layouts.scan(tmp_path / "00000_bach_x", "demo")


def test_hash_splits_are_stable_and_proportional():
    songs = [Song(f"song{i:04d}", ()) for i in range(4000)]
    splits = [layouts.split_of(s, (0.8, 0.1, 0.1)) for s in songs]
    counts = {k: splits.count(k) / len(songs) for k in layouts.SPLITS}
    assert abs(counts["train"] - 0.8) < 0.03 and abs(counts["test"] - 0.1) < 0.02
    # a song's split depends on its id alone: a subset (or a superset) of the catalogue keeps it
    assert [layouts.split_of(s, (0.8, 0.1, 0.1)) for s in songs[::7]] == splits[::7]
    val = layouts.songs_in_split(songs, "validation", (0.8, 0.1, 0.1))
    assert [s.song_id for s in val] == sorted(s.song_id for s, k in zip(songs, splits) if k == "validation")


def test_clear_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        layouts.scan(tmp_path / "missing")
    with pytest.raises(ValueError, match="unknown layout 'medley'"):
        layouts.scan(tmp_path, "medley")
    with pytest.raises(FileNotFoundError, match="no song with >= 2 stems"):
        layouts.scan(tmp_path, "generic")
    with pytest.raises(ValueError, match="unknown split"):
        layouts.songs_in_split([], "dev")
    with pytest.raises(ValueError, match="fractions"):
        layouts.split_of(Song("a", ()), (1.0, -1.0, 0.0))
