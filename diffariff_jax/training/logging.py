"""Metric output of a training run: JSON lines + TensorBoard events on process 0, a console line, tqdm.

`workdir/metrics.jsonl` gets one object per write ({"step", "split", metric: value, ...}); TensorBoard
events go to `workdir/tensorboard/<split>` through `tf.summary` (TensorFlow is imported only when
TensorBoard is on, and never takes an accelerator). Other processes write nothing.

File output runs on a background thread, so a slow bucket never blocks the train step: a local
metrics.jsonl is appended to; on an object store (gs://), which cannot append, the whole file is
rewritten at most every `upload_secs` and at close (not on every write, which was quadratic). A console
that went away (the ssh session or the `tee` reading our output died) silences the console instead of
raising BrokenPipeError: a preemption save must never fail because nobody is reading the log.
"""
from __future__ import annotations

import json
import logging
import math
import os
import queue
import sys
import threading
import time
from typing import Any, Mapping

import jax

from diffariff_jax import paths

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


def _silence(stream) -> None:
    """Points a dead stream's file descriptor at /dev/null: later writes, and the interpreter's flush at
    exit (which would turn exit status 75 into 120), then succeed silently."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, stream.fileno())
        os.close(devnull)
    except (OSError, ValueError):  # no descriptor to redirect (already closed): nothing left to silence
        return


def _same_file(a, b) -> bool:
    try:
        return os.path.samestat(os.fstat(a.fileno()), os.fstat(b.fileno()))
    except (OSError, ValueError):
        return False


class MetricWriter:
    """Writes scalar metrics for process 0; every method is a no-op elsewhere.

    tensorboard: also write tf.summary events; progress_total: show a tqdm bar (single-host runs only);
    upload_secs: on a bucket, the longest time between rewrites of metrics.jsonl.
    """

    def __init__(self, workdir: str, *, tensorboard: bool = True, progress_total: int | None = None,
                 initial_step: int = 0, console: bool = True, upload_secs: float = 30.0):
        self.enabled = jax.process_index() == 0
        self.workdir = paths.resolve(workdir, "--workdir")
        self.console = console
        self.upload_secs = float(upload_secs)
        self._tf_writers: dict[str, Any] = {}
        self._tf = None
        self._bar = None
        self._thread = None
        if not self.enabled:
            return
        self.workdir.mkdir(parents=True, exist_ok=True)
        path = self.workdir / METRICS_FILE
        self._remote = paths.is_uri(os.fspath(self.workdir))
        self._lines = path.read_text().splitlines(keepends=True) if self._remote and path.exists() else []
        self._uploaded = len(self._lines)
        self._last_upload = time.monotonic()
        self._jsonl = None if self._remote else path.open("a")
        if tensorboard:
            import tensorflow as tf  # only here: the TensorBoard writer is TF's

            tf.config.set_visible_devices([], "GPU")
            self._tf = tf
        if progress_total is not None and jax.process_count() == 1 and sys.stderr.isatty():
            from tqdm import tqdm

            self._bar = tqdm(total=progress_total, initial=initial_step, unit="step", dynamic_ncols=True)
        self._queue: queue.Queue = queue.Queue()
        self._failed = False
        self._thread = threading.Thread(target=self._run, name="metric-writer", daemon=True)
        self._thread.start()

    def write(self, step: int, metrics: Mapping[str, Any], split: str = "train") -> None:
        """Logs scalar `metrics` at `step` under `split` ("train", "val", ...); file output is queued."""
        if not self.enabled:
            return
        values = {name: float(value) for name, value in metrics.items()}
        self._queue.put((int(step), split, values))
        if self.console:
            self.message(format_line(step, split, values))

    def message(self, text: str) -> None:
        """A console line (above the progress bar when there is one); a closed console is silenced."""
        if not self.enabled or not self.console:
            return
        try:
            if self._bar is not None:
                self._bar.write(text)
            else:
                print(text, flush=True)
        except (BrokenPipeError, OSError, ValueError):
            self.console = False
            self._bar = None
            if _same_file(sys.stdout, sys.stderr):  # `2>&1 | tee`: the log lines went to the same dead pipe
                _silence(sys.stderr)
            _silence(sys.stdout)

    def advance(self, steps: int = 1) -> None:
        if self._bar is not None:
            try:
                self._bar.update(steps)
            except (BrokenPipeError, OSError, ValueError):
                self._bar = None
                _silence(sys.stderr)

    def _run(self) -> None:
        while True:
            try:
                item = self._queue.get(timeout=self.upload_secs if self._remote else None)
            except queue.Empty:
                item = ()
            try:
                if item is None:
                    self._upload()
                    return
                if item:
                    self._record(*item)
                if self._remote and time.monotonic() - self._last_upload >= self.upload_secs:
                    self._upload()
            except Exception as err:  # metrics are never worth stopping a run for: warn once, keep training
                if not self._failed:
                    logging.warning("metrics in %s could not be written (%s); training goes on", self.workdir, err)
                self._failed = True

    def _record(self, step: int, split: str, values: dict[str, float]) -> None:
        line = json.dumps({"step": step, "split": split, **values}) + "\n"
        if self._remote:
            self._lines.append(line)
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
                    self._tf.summary.scalar(name, value, step=step)

    def _upload(self) -> None:
        self._last_upload = time.monotonic()
        if self._remote and len(self._lines) > self._uploaded:
            (self.workdir / METRICS_FILE).write_text("".join(self._lines))
            self._uploaded = len(self._lines)

    def close(self) -> None:
        """Writes everything queued (and uploads it), then closes the files."""
        if not self.enabled or self._thread is None:
            return
        self._queue.put(None)
        self._thread.join()
        self._thread = None
        if self._jsonl is not None:
            self._jsonl.close()
        for writer in self._tf_writers.values():
            writer.close()
        if self._bar is not None:
            self._bar.close()


def read_metrics(workdir: str, split: str | None = None) -> list[dict]:
    """The JSON-lines records of a run (optionally one split), in write order."""
    path = paths.resolve(workdir, "--workdir") / METRICS_FILE
    if not path.exists():
        return []
    records = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in records if split is None or r["split"] == split]
