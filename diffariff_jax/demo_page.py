"""report/examples.html: players for the demo's generated WAVs (each with its settings) and the stage times.

The evaluation's own page (report/index.html, written by `python -m diffariff_jax.eval`) holds the table;
this page sits beside it and links to it. Self-contained: relative links to the WAVs in report/examples.
"""
from __future__ import annotations

import json
from html import escape
from pathlib import Path

_STYLE = ("body { font-family: sans-serif; margin: 24px; } td, th { border: 1px solid #bbb; padding: 4px 8px; } "
          "table { border-collapse: collapse; } th { background: #23395d; color: #fff; } "
          "code { font-size: 12px; color: #333; }")


def _settings(wav: Path) -> str:
    sidecar = wav.with_suffix(".json")
    if not sidecar.exists():
        return ""
    info = json.loads(sidecar.read_text())
    keep = {k: v for k, v in info.items() if k in ("mode", "text", "audio_prompt", "prompt", "seconds", "steps",
                                                   "cfg_context", "cfg_clap", "stereo_width", "seed", "step")}
    return escape(json.dumps(keep or info)[:400])


def write_examples_page(report: Path, stages: list[dict]) -> Path:
    """Writes report/examples.html from report/examples/**.wav and the demo's stage records."""
    examples = report / "examples"
    rows = []
    for wav in sorted(examples.rglob("*.wav")) if examples.exists() else []:
        rel = wav.relative_to(report).as_posix()
        rows.append(f"<tr><td>{escape(rel)}</td><td><audio controls preload='none' src='{escape(rel)}'></audio></td>"
                    f"<td><code>{_settings(wav)}</code></td></tr>")
    times = "".join(f"<tr><td>{escape(r['stage'])}</td><td>{r['wall_seconds']:.0f}</td><td>{r['cpu_seconds']:.0f}</td></tr>"
                    for r in stages)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>diffariff-jax demo</title>"
            f"<style>{_STYLE}</style></head><body><h1>diffariff-jax demo: generated examples</h1>"
            f"<p>The evaluation table (APA, FAD, CLAP score, instrument accuracy, baselines): "
            f"<a href='index.html'>index.html</a>. Inputs are cut from held-out songs; see docs/demo.md.</p>"
            f"<table><tr><th>file</th><th>listen</th><th>settings</th></tr>{''.join(rows)}</table>"
            f"<h2>Stage times</h2><table><tr><th>stage</th><th>wall s</th><th>CPU s</th></tr>{times}</table>"
            f"</body></html>")
    out = report / "examples.html"
    report.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out
