"""`python -m diffariff_jax.generate` on a tiny random LDM: every mode, lengths, seeds, stereo, arrangements."""
import json

import numpy as np
import pytest
import soundfile as sf

from diffariff_jax.generate import main
from diffariff_jax.testing.tiny_ldm import STEP, build_tiny_ldm

SR = 48000
FAST = ["--steps", "2"]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    root = tmp_path_factory.mktemp("generate")
    tiny = build_tiny_ldm(root / "tiny")
    rate = 44100
    t = np.arange(int(3.2 * rate)) / rate
    stereo = np.stack([0.3 * np.sin(2 * np.pi * 220 * t), 0.2 * np.sign(np.sin(2 * np.pi * 3 * t))], axis=1)
    sf.write(root / "song.wav", stereo, rate)
    sf.write(root / "ref.wav", 0.3 * np.sin(2 * np.pi * 880 * np.arange(SR) / SR), SR)
    return tiny, root


def _run(setup, tmp_path, *args):
    tiny, root = setup
    code = main(["--checkpoint", str(tiny.workdir), "--out", str(tmp_path / "out"), *FAST, *args])
    return code, tmp_path / "out"


def _read(path):
    data, rate = sf.read(str(path), always_2d=True)
    assert rate == SR
    return data.T


def test_context_and_text_covers_the_44k_stereo_context_with_sidecar_and_mix(setup, tmp_path):
    code, out = _run(setup, tmp_path, "--context", str(setup[1] / "song.wav"), "--text", "cello", "--write-mix")
    assert code == 0
    stem, mix = _read(out / "stem.wav"), _read(out / "mix.wav")
    assert stem.shape == (2, int(round(3.2 * SR)))  # stereo by default, as long as the context at 48 kHz
    assert mix.shape == stem.shape and np.max(np.abs(mix)) <= 0.99 + 1e-4
    context = sf.read(str(setup[1] / "song.wav"))[0].mean(axis=1)
    rms = lambda x: np.sqrt(np.mean(np.square(x)))  # noqa: E731
    # At the context's level, unless that would clip: then scaled down to a 0.99 peak.
    assert rms(mix) <= rms(context) * 1.01
    assert rms(mix) == pytest.approx(rms(context), rel=0.01) or np.max(np.abs(mix)) == pytest.approx(0.99, abs=1e-3)
    side = json.loads((out / "stem.json").read_text())
    assert side["checkpoint"]["step"] == STEP and len(side["checkpoint"]["fingerprint"]) == 16
    assert side["seed"] == 0 and side["settings"]["text"] == "cello" and side["settings"]["cfg_clap"] == 1.25
    assert side["channels"] == 2 and side["seconds"] == pytest.approx(3.2)


def test_same_seed_same_file_other_seed_other_file(setup, tmp_path):
    args = ["--no-context", "--text", "flute", "--seconds", "1.5", "--stereo-width", "0"]
    assert _run(setup, tmp_path / "a", *args)[0] == 0
    assert _run(setup, tmp_path / "b", *args)[0] == 0
    assert _run(setup, tmp_path / "c", *args, "--seed", "1")[0] == 0
    a, b, c = (_read(tmp_path / d / "out" / "stem.wav") for d in "abc")
    np.testing.assert_array_equal(a, b)
    assert not np.allclose(a, c)


def test_seconds_without_context_gives_that_length_window_by_window(setup, tmp_path):
    code, out = _run(setup, tmp_path, "--no-context", "--seconds", "25", "--stereo-width", "0")
    assert code == 0
    assert _read(out / "stem.wav").shape == (1, 25 * SR)  # 25 s from 1.4 s windows (the tiny crop)


def test_stereo_width_zero_is_mono_and_channel_difference_grows(setup, tmp_path):
    diffs = []
    for width in ("0", "0.2", "0.9"):
        code, out = _run(setup, tmp_path / width, "--audio-prompt", str(setup[1] / "ref.wav"), "--no-context",
                         "--seconds", "1.5", "--stereo-width", width)
        assert code == 0
        wav = _read(out / "stem.wav")
        diffs.append(0.0 if wav.shape[0] == 1 else float(np.mean((wav[0] - wav[1]) ** 2)))
    assert diffs[0] == 0.0 and 0 < diffs[1] < diffs[2]


def test_arrangement_writes_every_stem_and_a_mix_as_long_as_the_context(setup, tmp_path):
    code, out = _run(setup, tmp_path, "--context", str(setup[1] / "song.wav"), "--arrange",
                     f"bass, drums, {setup[1] / 'ref.wav'}", "--stereo-width", "0")
    assert code == 0
    names = sorted(p.name for p in out.glob("*.wav"))
    assert names == ["0_bass.wav", "1_drums.wav", "2_" + names[2][2:], "mix.wav"] and names[2].endswith("wav")
    lengths = {_read(p).shape[1] for p in out.glob("*.wav")}
    assert lengths == {int(round(3.2 * SR))}


@pytest.mark.parametrize("args", [
    ["--context", "SONG", "--inpaint", "SONG", "--region", "0.5-1.5", "--region", "2-2.5"],
    ["--variation-of", "SONG", "--strength", "0.3"],
    ["--no-context", "--seconds", "1.3", "--loop-repeats", "2", "--loop-strength", "0.5"],
    ["--context", "SONG", "--text", "cello", "--audio-prompt", "REF", "--prompt-mix", "0.25"],
    ["--context", "SONG"],                   # context only
    ["--no-context", "--seconds", "1.5"],      # unconditional
    ["--context", "SONG", "--text", "cello", "--num-samples", "2", "--solver", "euler", "--churn", "1"],
], ids=["inpaint", "variation", "loop", "prompt-mix", "context-only", "unconditional", "batch-euler-churn"])
def test_every_mode_runs_from_the_cli(setup, tmp_path, args):
    root = setup[1]
    args = [str(root / "song.wav") if a == "SONG" else str(root / "ref.wav") if a == "REF" else a for a in args]
    code, out = _run(setup, tmp_path, *args)
    assert code == 0
    files = sorted(out.glob("*.wav"))
    assert len(files) == (2 if "--num-samples" in args else 1)
    assert all(_read(f).shape[0] == 2 and np.all(np.isfinite(_read(f))) for f in files)


def _bad_files(root):
    (root / "garbage.wav").write_bytes(b"not audio at all")
    sf.write(root / "empty.wav", np.zeros((0, 1)), SR)
    sf.write(root / "silent.wav", np.zeros(SR), SR)
    sf.write(root / "nan.wav", np.full(SR, np.nan), SR, subtype="FLOAT")
    sf.write(root / "blip.wav", 0.3 * np.ones(1000), SR)  # < one 4096-sample latent frame


@pytest.mark.parametrize("args, message", [
    (["--context", "garbage.wav"], "--context {root}/garbage.wav: cannot be read as audio"),
    (["--context", "empty.wav"], "--context {root}/empty.wav: the file holds no samples"),
    (["--context", "nan.wav"], "--context {root}/nan.wav: contains NaN or inf samples"),
    (["--context", "silent.wav"], "--context {root}/silent.wav: the audio is silent"),
    (["--context", "blip.wav"], "--context {root}/blip.wav: 0.021 s is shorter than one latent frame"),
    (["--context", "missing.wav"], "--context {root}/missing.wav: no such file"),
    (["--context", "song.wav", "--inpaint", "song.wav", "--region", "2-9"], "region 2.0-9.0: ends after inpaint stem"),
    (["--context", "song.wav", "--inpaint", "song.wav", "--region", "2-1"], "region 2.0-1.0: needs 0 <= START < END"),
    (["--context", "song.wav", "--region", "1-2"], "--region needs the stem to inpaint: --inpaint FILE"),
    (["--context", "song.wav", "--inpaint", "song.wav"], "inpaint stem: inpainting needs at least one region"),
    (["--variation-of", "song.wav", "--strength", "1.5"], "--strength must be in [0, 1], got 1.5"),
    (["--context", "song.wav", "--stereo-width", "-0.1"], "--stereo-width must be in [0, 1], got -0.1"),
    (["--no-context", "--loop-repeats", "2", "--loop-strength", "2"], "--loop-strength must be in [0, 1]"),
    (["--context", "song.wav", "--text", "a", "--prompt-mix", "3"], "--prompt-mix must be in [0, 1]"),
    (["--no-context", "--seconds", "0"], "seconds must be > 0, got 0.0"),
    (["--no-context", "--seconds", "-2"], "seconds must be > 0, got -2.0"),
    (["--context", "song.wav", "--seconds", "9"], "seconds=9.0 is longer than the context (3.20 s)"),
    (["--no-context", "--seconds", "5", "--loop-repeats", "2"], "loops fit in one window"),
    (["--no-context", "--steps", "0"], "steps must be >= 1, got 0"),
    (["--no-context", "--solver", "rk4"], "solver 'rk4': choose one of euler, heun"),
    (["--context", "song.wav", "--no-context"], "--no-context and --context exclude each other"),
    (["--checkpoint", "CAE"], "holds a 'cae' model, not 'ldm'"),
    (["--clap", "WIDE"], "gives 48-d embeddings, the LDM {tiny} was trained on 32-d"),
], ids=lambda v: v if isinstance(v, str) else None)
def test_bad_input_is_one_line_naming_it_and_exit_1(setup, tmp_path, capsys, args, message):
    tiny, root = setup
    if not (root / "garbage.wav").exists():
        _bad_files(root)
    if "WIDE" in args and not (root / "wide").exists():
        from diffariff_jax.testing.tiny_clap import build_tiny_clap

        build_tiny_clap(root / "wide", projection_dim=48)
    subst = {"CAE": str(tiny.cae), "WIDE": str(root / "wide")}
    args = [subst.get(a, str(root / a) if a.endswith(".wav") else a) for a in args]
    checkpoint = [] if "--checkpoint" in args else ["--checkpoint", str(tiny.workdir)]
    code = main([*checkpoint, "--out", str(tmp_path / "out"), *FAST, *args])
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("error: ")]
    assert code == 1 and len(errors) == 1
    assert message.format(root=root, tiny=tiny.workdir) in errors[0]
    assert not (tmp_path / "out").exists()  # nothing written
