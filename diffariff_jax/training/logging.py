"""Metric output of a training run: JSON lines + TensorBoard events on process 0, a console line, tqdm.

`workdir/metrics.jsonl` gets one object per write ({"step", "split", metric: value, ...}); TensorBoard
events go to `workdir/tensorboard/<split>` through `tf.summary` (TensorFlow is imported only when
TensorBoard is on, and never takes an accelerator). Other processes write nothing.
"""
from __future__ import annotations

import json
import math
import sys
from typing import Any, Mapping

import jax
from etils import epath

METRICS_FILE = "metrics.jsonl"
TENSORBOARD_DIR = "tensorboard"


def format_line(step: int, split: str, metrics: Mapping[str, float]) -> str:
    """A readable one-line summary: 'step 120 train | loss 0.4123 | grad_norm 1.02 | lr 1.0e-04 ...'."""
    parts = [f"step {step} {split}"]
    for name, value in metrics.items():
        value = float(value)
        if name == "lr" or (value != 0 and not math.isnan(value) and abs(value) < 1e-3):
            parts.append(f"{name} {value:.2e}")
        else:
            parts.append(f"{name} {value:.4g}")
    return " | ".join(parts)


class MetricWriter:
    """Writes scalar metrics for process 0; every method is a no-op elsewhere.

    tensorboard: also write tf.summary events; progress_total: show a tqdm bar (single-host runs only).
    """

    def __init__(self, workdir: str, *, tensorboard: bool = True, progress_total: int | None = None,
                 initial_step: int = 0, console: bool = True):
        self.enabled = jax.process_index() == 0
        self.workdir = epath.Path(workdir)
        self.console = console
        self._tf_writers: dict[str, Any] = {}
        self._tf = None
        self._bar = None
        if not self.enabled:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / METRICS_FILE
        # Object stores (gs://) cannot append: there the whole file is rewritten on every write.
        self._remote = "://" in str(workdir)
        self._lines = path.read_text().splitlines(keepends=True) if self._remote and path.exists() else []
        self._jsonl = None if self._remote else path.open("a")
        if tensorboard:
            import tensorflow as tf  # only here: the TensorBoard writer is TF's

            tf.config.set_visible_devices([], "GPU")
            self._tf = tf
        if progress_total is not None and jax.process_count() == 1 and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=progress_total, initial=initial_step, unit="step", dynamic_ncols=True)

    def write(self, step: int, metrics: Mapping[str, Any], split: str = "train") -> None:
        """Logs scalar `metrics` at `step` under `split` ("train", "val", ...)."""
        if not self.enabled:
            return
        values = {name: float(value) for name, value in metrics.items()}
        line = json.dumps({"step": int(step), "split": split, **values}) + "\n"
        if self._remote:
            self._lines.append(line)
            (self.workdir / METRICS_FILE).write_text("".join(self._lines))
        else:
            self._jsonl.write(line)
            self._jsonl.flush()
        if self._tf is not None:
            writer = self._tf_writers.get(split)
            if writer is None:
                writer = self._tf.summary.create_file_writer(str(self.workdir / TENSORBOARD_DIR / split))
                self._tf_writers[split] = writer
            with writer.as_default():
                for name, value in values.items():
                    self._tf.summary.scalar(name, value, step=int(step))
            writer.flush()
        if self.console:
            self.message(format_line(step, split, values))

    def message(self, text: str) -> None:
        """A console line (above the progress bar when there is one)."""
        if not self.enabled:
            return
        if self._bar is not None:
            self._bar.write(text)
        else:
            print(text, flush=True)

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(steps)

    def close(self) -> None:
        if not self.enabled:
            return
        if self._jsonl is not None:
            self._jsonl.close()
        for writer in self._tf_writers.values():
            writer.close()
        if self._bar is not None:
            self._bar.close()


def read_metrics(workdir: str, split: str | None = None) -> list[dict]:
    """The JSON-lines records of a run (optionally one split), in write order."""
    path = epath.Path(workdir) / METRICS_FILE
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if split is None or r["split"] == split]
