"""The demo-set renderer: files, rate, lengths, metadata, instrument pools and determinism per seed."""
import json

import numpy as np
import pytest
import soundfile as sf

from diffariff_jax.data import render

SECONDS = 2.0


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    index = render.render_dataset(out, num_songs=2, seed=3, seconds_max=SECONDS, workers=2)
    return out, index


def test_files_rate_and_metadata(rendered):
    out, index = rendered
    assert json.loads((out / "index.json").read_text()) == index
    assert len(index["songs"]) == 2 and index["sample_rate"] == 48000
    expected = int(round((SECONDS + render.TAIL_SECONDS) * 48000))
    for entry in index["songs"]:
        meta = json.loads((out / entry["dir"] / "metadata.json").read_text())
        assert meta["num_samples"] == expected and meta["seed"] == 3
        assert [s["instrument"] for s in meta["stems"]] == [s["instrument"] for s in entry["stems"]]
        assert len(meta["stems"]) >= 2
        assert len({s["program"] for s in meta["stems"]}) == len(meta["stems"])  # no repeats in a song
        # exactly one part (the lowest) plays a bass-pool instrument; every part's comes from its pool
        assert [s["register"] for s in meta["stems"]].count("bass") == 1
        for s in meta["stems"]:
            assert (s["program"], s["instrument"], s["family"]) in render.INSTRUMENT_POOLS[s["register"]]
        mix = 0.0
        for s in meta["stems"]:
            wav, sr = sf.read(out / entry["dir"] / s["file"], dtype="float32")
            assert sr == 48000 and wav.ndim == 1 and wav.size == expected
            assert np.sqrt(np.mean(wav ** 2)) > 1e-3  # audible
            mix = mix + wav
        assert np.max(np.abs(mix)) <= render.MIX_PEAK + 1e-3


def test_song_depends_only_on_seed_and_index(rendered, tmp_path):
    out, index = rendered
    works = render.list_works()
    order = np.random.default_rng(3).permutation(len(works))
    meta = render.render_song(1, works[order[1]], tmp_path, 3, render.default_soundfont(), SECONDS)
    first = index["songs"][1]
    assert meta["song_id"] == first["song_id"]
    for s in meta["stems"]:
        a, _ = sf.read(tmp_path / meta["song_id"] / s["file"])
        b, _ = sf.read(out / first["dir"] / s["file"])
        np.testing.assert_array_equal(a, b)
    other = render.render_song(1, works[order[1]], tmp_path / "s4", 4, render.default_soundfont(), SECONDS)
    assert (other["bpm"], other["transpose"], [s["program"] for s in other["stems"]]) != (
        meta["bpm"], meta["transpose"], [s["program"] for s in meta["stems"]])


def test_single_part_score_is_skipped(tmp_path, caplog):
    from music21 import note, stream

    part = stream.Part([note.Note("C4", quarterLength=1.0), note.Note("E4", quarterLength=1.0)])
    path = tmp_path / "works" / "solo.xml"
    path.parent.mkdir()
    stream.Score([part]).write("musicxml", fp=str(path))
    assert render.render_song(0, str(path), tmp_path / "out", 0, render.default_soundfont(), 1.0) is None
    assert "need 2" in caplog.text and "solo.xml" in caplog.text


def test_cli_rejects_bad_arguments(tmp_path, capsys):
    with pytest.raises(SystemExit):
        render.main(["--out", str(tmp_path), "--num-songs", "0"])
    (tmp_path / "index.json").write_text("{}")
    with pytest.raises(SystemExit) as exit_info:
        render.main(["--out", str(tmp_path / "index.json"), "--num-songs", "1"])
    assert exit_info.value.code == 2 and "index.json is a file, not a folder" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        render.main(["--out", str(tmp_path / "out"), "--num-songs", "1", "--soundfont", str(tmp_path / "no.sf2")])
    assert exit_info.value.code == 1 and capsys.readouterr().err == f"error: {tmp_path / 'no.sf2'}: soundfont not found\n"
    with pytest.raises(FileNotFoundError, match="nope.sf2"):
        render.render_dataset(tmp_path, 1, soundfont=tmp_path / "nope.sf2")
    with pytest.raises(SystemExit) as exit_info:  # fluidsynth writes local files: a bucket is one line, no "gs:" dir
        render.main(["--out", "gs://bucket/demo", "--num-songs", "1"])
    assert exit_info.value.code == 1 and "--out gs://bucket/demo: only a local path works" in capsys.readouterr().err


def test_unparseable_score_is_skipped_with_its_path(tmp_path, caplog):
    bad = tmp_path / "works" / "broken.xml"
    bad.parent.mkdir()
    bad.write_text("<score-partwise><part id='P1'><measure>")
    assert render._render_job((7, str(bad), str(tmp_path / "out"), 0, str(render.default_soundfont()), 1.0)) is None
    assert "skip song 7" in caplog.text and "broken.xml" in caplog.text


def test_missing_fluidsynth_fails_fast(tmp_path, monkeypatch):
    monkeypatch.setattr(render.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="fluidsynth not found"):
        render.render_dataset(tmp_path, 1)


def test_a_note_cut_to_a_sliver_by_seconds_max_does_not_hang_fluidsynth(tmp_path):
    """bwv4.8 cut at 6 s leaves a 0.9 ms alto note whose note-on and note-off share a MIDI tick: the note
    never ended and fluidsynth wrote audio until the disk filled. It must render in seconds."""
    import subprocess
    import sys

    work = next(w for w in render.list_works() if w.endswith("bwv4.8.mxl"))
    code = (f"from diffariff_jax.data import render; m = render.render_song(18, {work!r}, {str(tmp_path)!r}, 0, "
            "render.default_soundfont(), 6.0); print(m['seconds'], len(m['stems']))")
    try:
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired:
        pytest.fail("fluidsynth did not finish a 6 s song in 120 s (a note left hanging)")
    assert out.returncode == 0, out.stderr[-500:]
    seconds, stems = out.stdout.split()
    assert float(seconds) == 6.0 + render.TAIL_SECONDS and int(stems) >= 2
