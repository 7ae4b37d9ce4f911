"""PNG figures of the report: metric bars with intervals, mel spectrograms, metrics over training steps.

matplotlib's Agg backend (no display); colours are fixed so the page test can find the bars:
conditions CONDITION_COLOR, baselines BASELINE_COLOR.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402

CONDITION_COLOR = "#1f77b4"
BASELINE_COLOR = "#8c8c8c"
TITLES = {"fad": "FAD (lower is better)", "mmd2": "MMD² (lower is better)", "density": "density",
          "coverage": "coverage", "apa": "APA (1 = like real pairs)", "clap_score": "CLAP score (text)",
          "instrument_acc": "instrument accuracy"}


def metric_bars(rows: dict[str, dict], path: Path) -> None:
    """One panel per metric: a bar per system (conditions, then baselines) with its interval."""
    names = list(rows)
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    for ax, metric in zip(axes.flat, TITLES):
        values, lows, highs, colors, labels = [], [], [], [], []
        for name in names:
            m = (rows[name].get("metrics") or {}).get(metric)
            if m is None:
                continue
            values.append(m["value"])
            lows.append(max(m["value"] - m["low"], 0.0))
            highs.append(max(m["high"] - m["value"], 0.0))
            colors.append(CONDITION_COLOR if rows[name]["kind"] == "condition" else BASELINE_COLOR)
            labels.append(rows[name]["label"])
        y = np.arange(len(values))
        ax.barh(y, values, xerr=[lows, highs], color=colors, capsize=3)
        ax.set_yticks(y, labels, fontsize=8)
        ax.invert_yaxis()
        ax.set_title(TITLES[metric], fontsize=10)
        ax.grid(axis="x", alpha=0.3)
    axes.flat[-1].axis("off")
    axes.flat[-1].legend(handles=[plt.Rectangle((0, 0), 1, 1, color=CONDITION_COLOR),
                                  plt.Rectangle((0, 0), 1, 1, color=BASELINE_COLOR)],
                         labels=["condition", "baseline"], loc="center")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def log_mel(wav: np.ndarray, sample_rate: int, n_mels: int = 64) -> np.ndarray:
    """wav: [samples] -> [n_mels, frames] log-mel power in dB (top 80 dB)."""
    import librosa

    mel = librosa.feature.melspectrogram(y=np.asarray(wav, np.float32), sr=sample_rate, n_fft=2048, hop_length=512,
                                         n_mels=n_mels)
    return librosa.power_to_db(mel, ref=np.max(mel) if np.max(mel) > 0 else 1.0, top_db=80.0)


def spectrogram_grid(columns: Sequence[tuple[str, np.ndarray]], sample_rate: int, path: Path) -> None:
    """columns: (title, audio [num_examples, samples]) -> a grid, one row per example."""
    rows = columns[0][1].shape[0]
    fig, axes = plt.subplots(rows, len(columns), figsize=(2.4 * len(columns), 2.0 * rows), squeeze=False)
    for c, (title, audio) in enumerate(columns):
        for r in range(rows):
            ax = axes[r, c]
            ax.imshow(log_mel(audio[r], sample_rate), origin="lower", aspect="auto", cmap="magma", vmin=-80, vmax=0)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(f"example {r}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def metrics_over_steps(history: list[dict[str, Any]], path: Path) -> None:
    """history: [{"step": int, "rows": {condition: row}}] -> one panel per metric, a line per condition."""
    steps = [h["step"] for h in history]
    conditions = [n for n, row in history[0]["rows"].items() if row["kind"] == "condition"]
    fig, axes = plt.subplots(2, 4, figsize=(16, 7.5))
    for ax, metric in zip(axes.flat, TITLES):
        for name in conditions:
            ms = [(h["rows"][name].get("metrics") or {}).get(metric) for h in history]
            if any(m is None for m in ms):
                continue
            v = np.array([m["value"] for m in ms])
            ax.plot(steps, v, marker="o", label=history[0]["rows"][name]["label"])
            ax.fill_between(steps, [m["low"] for m in ms], [m["high"] for m in ms], alpha=0.15)
        ax.set_title(TITLES[metric], fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
    handles, labels = axes.flat[0].get_legend_handles_labels()
    axes.flat[-1].axis("off")
    axes.flat[-1].legend(handles, labels, loc="center")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
