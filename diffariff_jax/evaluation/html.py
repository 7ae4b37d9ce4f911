"""index.html of a report folder: the table, the plots, and players for context / real / generated / mix.

Self-contained (inline CSS, relative links to the PNGs and WAVs beside it), so the folder can be
copied or served as it is. The table header has the fixed colour HEADER_COLOR (the page test finds it).
"""
from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any, Sequence

from diffariff_jax.evaluation.plots import TITLES

HEADER_COLOR = "#23395d"

_STYLE = f"""
body {{ font-family: sans-serif; margin: 24px; color: #111; background: #fff; }}
table {{ border-collapse: collapse; margin: 12px 0; font-size: 13px; }}
th {{ background: {HEADER_COLOR}; color: #fff; padding: 6px 8px; }}
td {{ border: 1px solid #bbb; padding: 4px 8px; text-align: right; white-space: nowrap; }}
td.name {{ text-align: left; }}
tr.baseline td {{ background: #f1f1f1; font-style: italic; }}
.ci {{ color: #666; font-size: 11px; }}
img {{ max-width: 100%; border: 1px solid #ddd; margin: 8px 0; }}
audio {{ width: 220px; height: 32px; }}
.meta {{ font-size: 13px; color: #333; }}
"""


def _cell(metric: dict | None) -> str:
    if metric is None:
        return "<td>—</td>"
    return (f"<td>{metric['value']:.3f}<br><span class='ci'>[{metric['low']:.3f}, {metric['high']:.3f}]</span></td>")


def table(rows: dict[str, dict]) -> str:
    """The metrics table: conditions, then baselines, each value with its interval."""
    head = "".join(f"<th>{escape(TITLES[m])}</th>" for m in TITLES)
    lines = [f"<table><tr><th>system</th>{head}</tr>"]
    for row in sorted(rows.values(), key=lambda r: r["kind"] != "condition"):
        cells = ("".join(_cell((row.get("metrics") or {}).get(m)) for m in TITLES) if row.get("metrics")
                 else f"<td colspan='{len(TITLES)}'>skipped: {escape(str(row.get('skipped')))}</td>")
        lines.append(f"<tr class='{row['kind']}'><td class='name'>{escape(row['label'])}</td>{cells}</tr>")
    return "\n".join(lines + ["</table>"])


def codec_table(codec: dict | None) -> str:
    """The codec's log-mel distances (median [q25, q75] dB) on real stems and mixes, beside its yardsticks."""
    if not codec:
        return ""
    lines = ["<h2>Codec: log-mel distance to the real audio, dB (lower is better)</h2>",
             "<table><tr><th>reconstruction</th><th>stems</th><th>mixes</th></tr>"]
    for name, row in codec.items():
        cells = "".join("<td>—</td>" if row[m] is None else
                        f"<td>{row[m]['median']:.1f}<br><span class='ci'>[{row[m]['q25']:.1f}, "
                        f"{row[m]['q75']:.1f}]</span></td>" for m in ("stems", "mixes"))
        kind = "condition" if name == "cae_roundtrip" else "baseline"
        lines.append(f"<tr class='{kind}'><td class='name'>{escape(row['label'])}</td>{cells}</tr>")
    return "\n".join(lines + ["</table>"])


def denoising_table(denoising: dict) -> str:
    """The LDM's denoising loss per conditioning pattern and the context's paired gain, with intervals."""
    cells = [(f"loss, {name.replace('_', ' + ' if name == 'context_clap' else ' ')}", v)
             for name, v in denoising["losses"].items()]
    cells += [("context gain (CLAP only - context + CLAP)", denoising["context_gain"]),
              ("CLAP gain (context only - context + CLAP)", denoising["clap_gain"])]
    body = "".join(f"<tr><td class='name'>{escape(label)}</td>{_cell(v)}</tr>" for label, v in cells)
    share = 100 * denoising["context_gain"]["improved_fraction"]
    return (f"<h2>Denoising loss on the test examples (lower is better)</h2><table><tr><th>quantity</th>"
            f"<th>value [interval]</th></tr>{body}</table><p class='meta'>The context lowers the loss on "
            f"{share:.0f}% of the {denoising['num_examples']} examples.</p>")


def players(audio_rows: Sequence[dict[str, Any]]) -> str:
    """audio_rows: [{"title", "files": [(label, relative path)]}] -> one table of players per example."""
    parts = []
    for ex in audio_rows:
        cells = "".join(f"<tr><td class='name'>{escape(label)}</td><td><audio controls preload='none' "
                        f"src='{escape(path)}'></audio></td></tr>" for label, path in ex["files"])
        parts.append(f"<h3>{escape(ex['title'])}</h3><table>{cells}</table>")
    return "\n".join(parts)


def write_index(out: Path, report: dict, images: Sequence[tuple[str, str]], audio_rows: Sequence[dict]) -> Path:
    """Writes out/index.html; images: (caption, relative PNG path)."""
    ck, data = report["checkpoint"], report["data"]
    meta = (f"<p class='meta'>checkpoint <b>{escape(str(ck['path']))}</b>, step {ck['step']}, fingerprint "
            f"{escape(ck['fingerprint'])}<br>N = {report['num_examples']} examples of "
            f"{data['seconds_per_example']:.2f} s from {data['num_test_songs']} test songs of "
            f"{escape(str(data['root']))} ({escape(data['note_split'])})"
            + (f"<br>{escape(data['note'])}" if data.get("note") else "")
            + f"<br>sampler {escape(str(report['settings']['sampler']))}; intervals: "
            f"{escape(report['intervals']['method'])}, {int(report['intervals']['confidence'] * 100)}%</p>")
    figures = "\n".join(f"<h2>{escape(caption)}</h2><img src='{escape(src)}' alt='{escape(caption)}'>"
                        for caption, src in images)
    page = (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>diffariff-jax evaluation</title>"
            f"<style>{_STYLE}</style></head><body><h1>Evaluation, step {ck['step']}</h1>{meta}"
            f"{table(report['rows'])}{codec_table(report.get('codec'))}{denoising_table(report['denoising'])}"
            f"{figures}<h2>Listen</h2>{players(audio_rows)}</body></html>")
    path = out / "index.html"
    path.write_text(page)
    return path
