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
    fmt = "AIFF" if path.suffix == ".aif" else None
    sf.write(str(path), np.stack([wav] * channels, 1) if channels > 1 else wav, sr, format=fmt)


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
    assert sorted(songs) == ["generic/songA", "generic/songB"]
    assert [s.instrument for s in songs["generic/songA"].stems] == ["electric bass", "lead vocals"]
    assert [s.instrument for s in songs["generic/songB"].stems] == ["drums", "piano"]
    assert all(len(s.paths) == 1 for s in songs["generic/songA"].stems)
    assert skips == {"fewer than 2 stems": 1}


def test_musdb18hq_keeps_official_test_split(tmp_path):
    for split, name in [("train", "A - One"), ("train", "B - Two"), ("test", "C - Three")]:
        for stem in ("mixture", "drums", "bass", "other", "vocals"):
            tone(tmp_path / split / name / f"{stem}.wav")
    songs = by_id(layouts.scan(tmp_path, "musdb18hq"))
    assert sorted(songs) == ["musdb18hq/A - One", "musdb18hq/B - Two", "musdb18hq/C - Three"]
    assert [s.instrument for s in songs["musdb18hq/A - One"].stems] == ["bass", "drums", "other", "vocals"]
    assert layouts.split_of(songs["musdb18hq/C - Three"], (1.0, 0.0, 0.0)) == "test"
    # official train songs never land in test, whatever the fractions
    assert layouts.split_of(songs["musdb18hq/A - One"], (0.0, 0.0, 1.0)) == "train"
    assert layouts.split_of(songs["musdb18hq/A - One"], (0.0, 1.0, 0.0)) == "validation"
    # drums / other / vocals are groups of instruments: context only, unless group_targets
    assert [s.can_be_target for s in songs["musdb18hq/A - One"].stems] == [True, False, False, False]
    grouped = by_id(layouts.scan(tmp_path, "musdb18hq", group_targets=True))
    assert all(s.can_be_target for s in grouped["musdb18hq/A - One"].stems)


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
    assert song.song_id == "slakh2100/Track00001" and song.split == "train"
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
    assert song.song_id == "moisesdb/0a1b"
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


def test_generic_mix_like_names_are_not_stems(tmp_path):
    song = tmp_path / "Song"
    for name in ("00_mix.wav", "Song_Mix.flac", "mixdown.wav", "full mix.wav", "FullMix.wav", "Instrumental.wav",
                 "accompaniment.wav", "03 Master.wav", "01_bass.wav", "02_Piano.aiff", "04_cello.mp3",
                 "05_sax.aif"):
        tone(song / name)
    (song / "06_flute.m4a").write_bytes(b"ftypM4A ")  # not decodable by libsndfile: listed as skipped, not silently ignored
    skips = layouts.Skips()
    (got,) = layouts.scan(tmp_path, "generic", skips)
    assert [s.instrument for s in got.stems] == ["bass", "piano", "cello", "sax"]
    assert skips == {"unsupported audio format": 1}
    assert not any(layouts.is_mix_name(n) for n in ("backing vocals", "mixolydian flute", "remix_guitar2"))


def test_split_does_not_depend_on_where_root_points(tmp_path):
    for i in range(40):
        for inst in ("bass", "piano"):
            tone(tmp_path / "lab" / "catalogue" / f"song{i:02d}" / f"{inst}.wav", seconds=0.01)
    low = layouts.scan(tmp_path / "lab" / "catalogue", "generic")
    high = layouts.scan(tmp_path, "generic")
    assert [s.song_id for s in low] == [s.song_id for s in high]
    assert [layouts.split_of(s, (0.5, 0.25, 0.25)) for s in low] == [layouts.split_of(s, (0.5, 0.25, 0.25))
                                                                       for s in high]
    # two song folders with one name stay two songs
    tone(tmp_path / "other" / "song00" / "bass.wav", seconds=0.01)
    tone(tmp_path / "other" / "song00" / "drums.wav", seconds=0.01)
    ids = [s.song_id for s in layouts.scan(tmp_path, "generic")]
    assert "generic/catalogue/song00" in ids and "generic/other/song00" in ids and len(ids) == 41


def test_slakh_original_split_is_refused(tmp_path):
    meta = {"stems": {"S00": {"audio_rendered": True, "is_drum": False, "midi_program_name": "Cello"},
                      "S01": {"audio_rendered": True, "is_drum": True, "midi_program_name": "Drums"}}}
    for split, track in [("train", "Track00001"), ("test", "Track01901")]:
        d = tmp_path / split / track
        d.mkdir(parents=True)
        (d / "metadata.yaml").write_text(yaml.safe_dump(meta))
        tone(d / "stems" / "S00.flac")
        tone(d / "stems" / "S01.flac")
    with pytest.raises(ValueError, match="Slakh2100-orig.*resplit_slakh.py"):
        layouts.scan(tmp_path, "slakh2100")
    # split2 moves tracks out of their original split: accepted
    (tmp_path / "train" / "Track01901").parent.mkdir(exist_ok=True)
    (tmp_path / "test" / "Track01901").rename(tmp_path / "train" / "Track01901")
    assert [s.split for s in layouts.scan(tmp_path, "slakh2100")] == ["train", "train"]


def test_moisesdb_repeated_stem_name_is_one_stem_and_bleed_is_context_only(tmp_path):
    song_dir = tmp_path / "provider" / "9f00"
    data = {"stems": [
        {"id": "s1", "stemName": "guitar", "tracks": [{"id": "t1", "trackType": "clean", "extension": "wav"}]},
        {"id": "s2", "stemName": "bass", "tracks": [{"id": "t2", "trackType": "bass", "extension": "wav"}]},
        {"id": "s3", "stemName": "guitar", "tracks": [{"id": "t3", "trackType": "distorted", "extension": "wav"}]},
        {"id": "s4", "stemName": "drums", "tracks": [
            {"id": "t4", "trackType": "kick", "extension": "wav"},
            {"id": "t5", "trackType": "overheads", "extension": "wav", "has_bleed": True}]},
        {"id": "s5", "stemName": "other", "tracks": [{"id": "t6", "trackType": "fx", "extension": "wav"}]}]}
    song_dir.mkdir(parents=True)
    (song_dir / "data.json").write_text(json.dumps(data))
    for stem, track in [("guitar", "t1"), ("bass", "t2"), ("guitar", "t3"), ("drums", "t4"), ("drums", "t5"),
                        ("other", "t6")]:
        tone(song_dir / stem / f"{track}.wav")
    (song,) = layouts.scan(tmp_path, "moisesdb")
    got = {s.instrument: (len(s.paths), s.can_be_target) for s in song.stems}
    assert got == {"guitar": (2, True), "bass": (1, True), "drums": (2, False), "other": (1, False)}
    (song,) = layouts.scan(tmp_path, "moisesdb", bleed_targets=True, group_targets=True)
    assert all(s.can_be_target for s in song.stems)


def medleydb_track(root, track, stems, has_bleed="no", metadata_dir=None):
    d = root / "Audio" / track
    meta = {"artist": "a", "title": "t", "has_bleed": has_bleed, "mix_filename": f"{track}_MIX.wav",
            "stem_dir": f"{track}_STEMS", "raw_dir": f"{track}_RAW", "stems": {}}
    for k, inst in enumerate(stems, 1):
        meta["stems"][f"S{k:02d}"] = {"component": "", "filename": f"{track}_STEM_{k:02d}.wav", "instrument": inst,
                                      "raw": {"R01": {"filename": f"{track}_RAW_{k:02d}_01.wav", "instrument": inst}}}
        tone(d / f"{track}_STEMS" / f"{track}_STEM_{k:02d}.wav")
        tone(d / f"{track}_RAW" / f"{track}_RAW_{k:02d}_01.wav")
        tone(d / f"{track}_RAW" / f"{track}_RAW_{k:02d}_02.wav")  # a second microphone
    tone(d / f"{track}_MIX.wav")
    meta_dir = metadata_dir or d
    meta_dir.mkdir(parents=True, exist_ok=True)
    (meta_dir / f"{track}_METADATA.yaml").write_text(yaml.safe_dump(meta))


def test_medleydb_one_song_per_track_stems_only_named_by_metadata(tmp_path):
    medleydb_track(tmp_path, "ArtistA_Song1", ["drum set", "electric bass", "female singer"])
    medleydb_track(tmp_path, "ArtistB_Song2", ["piano", "violin"], has_bleed="yes",
                   metadata_dir=tmp_path / "medleydb" / "data" / "Metadata")
    songs = by_id(layouts.scan(tmp_path, "medleydb"))
    assert sorted(songs) == ["medleydb/ArtistA_Song1"]  # every stem of song 2 bleeds: no possible target
    a = songs["medleydb/ArtistA_Song1"]
    assert [s.instrument for s in a.stems] == ["drum set", "electric bass", "female singer"]
    assert all("_STEMS" in s.paths[0] for s in a.stems)
    b = by_id(layouts.scan(tmp_path, "medleydb", bleed_targets=True))["medleydb/ArtistB_Song2"]
    assert [s.instrument for s in b.stems] == ["piano", "violin"]
    # read as `generic`, the same tree would have given _STEMS and _RAW as two songs with file-name instruments
    assert len(layouts.scan(tmp_path, "generic")) > 2
