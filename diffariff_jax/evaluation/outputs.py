"""The report folder: report.json, examples.csv, WAVs, PNG plots and index.html.

    report.json    every number with its interval, the baselines, settings, checkpoint step and fingerprint,
                   the data split, stage timings, cache use and package versions
    examples.csv   one row per example: song, offset, instrument, and per system its per-example scores
    audio/ex<k>/   context.wav, real.wav, <system>.wav and <system>_mix.wav for the first few examples
    metrics.png, spectrograms.png (and steps.png over checkpoints), index.html
A folder holding the report of another evaluation (another checkpoint or other settings) is refused
unless overwrite is set, so one run cannot silently replace another's numbers.
"""
from __future__ import annotations

import csv
import json
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from diffariff_jax.audio.io import write_audio
from diffariff_jax.evaluation import html, plots

REPORT = "report.json"
_PACKAGES = ("jax", "flax", "numpy", "torch", "transformers", "ml_collections", "matplotlib")


class OutputError(ValueError):
    """A one-line problem with the output folder."""


def identity(checkpoint: str, config: Any) -> dict:
    """What makes two evaluations the same one: the checkpoint path and every setting."""
    return {"checkpoint": str(checkpoint), "config": json.loads(config.to_json_best_effort())}


def check_out(out: Path, ident: dict, overwrite: bool) -> None:
    """Refuses a folder whose report.json belongs to another evaluation (unless overwrite)."""
    path = out / REPORT
    if overwrite or not path.exists():
        return
    try:
        held = json.loads(path.read_text()).get("identity")
    except (OSError, ValueError):
        held = None
    if held != ident:
        what = f"checkpoint {held['checkpoint']}" if isinstance(held, dict) else "an unreadable report"
        raise OutputError(f"--out {out} holds the report of another evaluation ({what}, or other settings); "
                          "pass --overwrite to replace it, or choose another --out")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name.replace("_", "-"))
        except metadata.PackageNotFoundError:
            out[name] = "absent"
    try:
        out["diffariff_jax_commit"] = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True,
            timeout=10).stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        out["diffariff_jax_commit"] = "unknown"
    return out


def write_examples_csv(path: Path, prep: Any) -> None:
    e = prep.examples
    columns = [(name, key) for name, per in prep.per_example.items() for key in per]
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["index", "song_id", "offset_seconds", "instrument"] + [f"{n}/{k}" for n, k in columns])
        for i in range(len(e)):
            w.writerow([i, e.song_ids[i], round(int(e.offsets[i]) / prep.sample_rate, 4), e.instruments[i]]
                       + [f"{float(prep.per_example[n][k][i]):.6f}" for n, k in columns])


def _peak_safe(x: np.ndarray) -> np.ndarray:
    return x / max(1.0, float(np.max(np.abs(x))) / 0.99)


def write_audio_examples(out: Path, prep: Any, systems: list[str]) -> list[dict]:
    """WAVs of the first examples; returns the player rows of index.html."""
    e, rows = prep.examples, []
    count = min(len(e), *(len(prep.audio[s]) for s in systems)) if systems else 0
    for k in range(count):
        folder = out / "audio" / f"ex{k}"
        files = [("context", "context.wav", e.context[k]), ("real stem", "real.wav", e.target[k]),
                 ("real mix", "real_mix.wav", e.context[k] + e.target[k])]
        for s in systems:
            files += [(s, f"{s}.wav", prep.audio[s][k]), (f"{s} mix", f"{s}_mix.wav", e.context[k] + prep.audio[s][k])]
        for _, name, wav in files:
            write_audio(folder / name, _peak_safe(np.asarray(wav, np.float32)), prep.sample_rate)
        rows.append({"title": f"example {k}: {e.instruments[k]} in {e.song_ids[k]} at "
                              f"{int(e.offsets[k]) / prep.sample_rate:.1f} s",
                     "files": [(label, f"audio/ex{k}/{name}") for label, name, _ in files]})
    return rows


def write_all(out: Path, report: dict, prep: Any, history: list[dict] | None = None) -> list[Path]:
    """Writes every file of the report folder; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    (out / REPORT).write_text(json.dumps(report, indent=1, sort_keys=False))
    write_examples_csv(out / "examples.csv", prep)
    conditions = [n for n, r in report["rows"].items() if r["kind"] == "condition"]
    systems = conditions + (["cae_roundtrip"] if "cae_roundtrip" in prep.audio else [])
    audio_rows = write_audio_examples(out, prep, systems)
    plots.metric_bars(report["rows"], out / "metrics.png")
    images = [("Metrics with 95% intervals (grey: baselines)", "metrics.png")]
    if audio_rows:
        e, count = prep.examples, len(audio_rows)
        plots.spectrogram_grid([("context", e.context[:count]), ("real", e.target[:count])]
                               + [(s, prep.audio[s][:count]) for s in systems], prep.sample_rate,
                               out / "spectrograms.png")
        images.append(("Mel spectrograms: context, real stem, generated stems", "spectrograms.png"))
    if history and len(history) > 1:
        plots.metrics_over_steps(history, out / "steps.png")
        images.insert(1, ("Metrics over training steps", "steps.png"))
    html.write_index(out, report, images, audio_rows)
    return sorted(p for p in out.rglob("*") if p.is_file())
