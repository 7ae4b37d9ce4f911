"""`make demo-quick`: the demo driver at smoke size runs every stage through the real CLIs, writes the
evaluation report and a WAV for every generate mode, and a second run skips every finished stage. Proves the
chain runs, not that it learns (docs/demo.md); the stages' CPU time is printed (pytest -s) to track its size."""
import json
import os
import resource
import subprocess
import sys

import numpy as np
import pytest
import soundfile as sf

from diffariff_jax.demo_plan import REPO, SIZES, plan

SR = 48000


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _read(path):
    audio, sr = sf.read(str(path), dtype="float32", always_2d=True)
    assert sr == SR and np.all(np.isfinite(audio)), path
    return audio


@pytest.mark.pipeline
def test_quick_demo_runs_every_stage_and_resumes(tmp_path):
    out = tmp_path / "demo_quick"
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "CUDA_VISIBLE_DEVICES": ""}
    cmd = [sys.executable, "-m", "diffariff_jax.demo", "--out", str(out), "--size", "quick"]
    cpu0 = _children_cpu()
    first = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=1500)
    assert first.returncode == 0, first.stderr[-3000:]
    print(f"\nquick demo: {_children_cpu() - cpu0:.0f} CPU s in its subprocesses\n{first.stdout[-900:]}")
    names = [s.name for s in plan(out, SIZES["quick"])]
    assert names == ["render", "cae", "clap", "precompute", "ldm", "eval", "generate"]
    assert all((out / ".stages" / f"{n}.json").exists() for n in names)
    report = json.loads((out / "report" / "report.json").read_text())
    assert {"context_audio", "context_text", "context_only", "audio_only", "unconditional"} <= set(report["rows"])
    assert "<table" in (out / "report" / "index.html").read_text()

    examples, inputs = out / "report" / "examples", out / "inputs"
    context = _read(inputs / "context.wav")
    for name in ("context_text_flute", "context_audio_prompt"):  # mono stem + its mix, the context's length
        stem, mix = _read(examples / f"{name}.wav"), _read(examples / f"{name}_mix.wav")
        assert stem.shape == (context.shape[0], 1) and mix.shape[0] == context.shape[0]
    tracks = sorted((examples / "arrangement").glob("*.wav"))
    assert len(tracks) >= 2 and all(_read(t).shape == (context.shape[0], 1) for t in tracks)
    long_stem, long_context = _read(examples / "outpainted_30s_cello.wav"), _read(inputs / "context_long.wav")
    assert long_stem.shape[0] == long_context.shape[0] > 10 * SR  # the whole context, window by window
    stereo = _read(examples / "pseudo_stereo_flute.wav")
    assert stereo.shape == (context.shape[0], 2) and not np.allclose(stereo[:, 0], stereo[:, 1])
    assert "examples/" in (out / "report" / "examples.html").read_text()

    second = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0, second.stderr[-3000:]
    assert second.stdout.count("done earlier") == len(names)
    record = json.loads((out / "stages.json").read_text())
    assert all(r["skipped"] for r in record["stages"])
