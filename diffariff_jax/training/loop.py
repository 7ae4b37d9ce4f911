"""The generic trainer: one loop for the CAE and the LDM, from 1 CPU to a TPU pod slice.

Reads top to bottom: mesh -> task -> sharded state (restored when the workdir has a checkpoint) ->
jitted train step with in/out shardings and donation -> loop with metrics, validation, sampling,
checkpoints, NaN stop and preemption handling. The task supplies the loss; `state.train_step` the update.
"""
from __future__ import annotations

import dataclasses
import functools
import logging
import signal
import time
from typing import Any, Callable, Iterator

import jax
import ml_collections
import numpy as np

from diffariff_jax.training import checkpoint as ckpt
from diffariff_jax.training import mesh as mesh_lib
from diffariff_jax.training import state as state_lib
from diffariff_jax.training.logging import MetricWriter

Batches = Callable[[str, int], Iterator[dict[str, np.ndarray]]]  # (split, start_step) -> per-host batches

# Dense bf16 peak FLOP/s per device, by jax `device_kind` prefix (vendor datasheets).
PEAK_FLOPS = {
    "TPU v4": 275e12, "TPU v5 lite": 197e12, "TPU v5e": 197e12, "TPU v5p": 459e12, "TPU v5": 459e12,
    "TPU v6 lite": 918e12, "TPU v6e": 918e12, "NVIDIA H100": 989e12, "NVIDIA H200": 989e12,
    "NVIDIA A100": 312e12, "NVIDIA L4": 121e12, "NVIDIA A10G": 70e12,
}


class TrainingError(RuntimeError):
    """The run cannot go on (NaN/inf loss); the message names the step and the last good checkpoint."""


@dataclasses.dataclass
class TrainResult:
    """How a run ended: final step, whether it stopped for preemption, last logged metrics, final state."""

    step: int
    preempted: bool
    metrics: dict[str, float]
    state: Any


def peak_flops_per_device(device: jax.Device, override: float = 0.0) -> float:
    """Peak FLOP/s of one device (0.0 when unknown, e.g. CPU: MFU is then not reported)."""
    if override:
        return float(override)
    kind = getattr(device, "device_kind", "")
    for prefix in sorted(PEAK_FLOPS, key=len, reverse=True):
        if kind.startswith(prefix):
            return PEAK_FLOPS[prefix]
    return 0.0


class _Preemption:
    """SIGTERM -> save and stop. Single-process: our own handler; multi-process: JAX's preemption sync
    point (every process must agree on the step, or collectives would hang)."""

    def __init__(self, manager):
        self.manager = manager
        self.requested = False
        self._previous = None
        if jax.process_count() == 1:
            self._previous = signal.signal(signal.SIGTERM, self._handle)

    def _handle(self, signum, frame):
        self.requested = True

    def reached(self, step: int) -> bool:
        if jax.process_count() == 1:
            return self.requested
        return self.manager.reached_preemption(step)

    def restore_handler(self):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)


def _mean_metrics(history: list[dict[str, float]]) -> dict[str, float]:
    return {name: float(np.mean([h[name] for h in history])) for name in history[0]}


def _first_non_finite(history: list[dict[str, float]], first_step: int) -> int | None:
    for offset, metrics in enumerate(history):
        if not np.isfinite(metrics["loss"]):
            return first_step + offset
    return None


def abstract_state(task, config: ml_collections.ConfigDict, mesh) -> tuple[Any, Any]:
    """(ShapeDtypeStructs of the TrainState carrying its shardings, the shardings) -- nothing is computed."""
    key = jax.random.PRNGKey(int(config.train.seed))
    shapes = jax.eval_shape(functools.partial(state_lib.create_train_state, task), key)
    shardings = mesh_lib.tree_shardings(shapes, mesh, int(config.mesh.min_fsdp_size))
    return ckpt.abstract_like(shapes, shardings), shardings


def init_state(task, config: ml_collections.ConfigDict, shardings: Any) -> Any:
    """A fresh TrainState created directly with its shardings (params never exist unsharded)."""
    # A plain jit, not models.init_compile's: the init inside is compiled as it always was, so a run started
    # today draws the weights earlier runs (and docs/demo.md's numbers) drew.
    create = jax.jit(functools.partial(state_lib.create_train_state, task), out_shardings=shardings)
    return create(jax.random.PRNGKey(int(config.train.seed)))


def make_train_step(task, state_shardings, mesh) -> Callable:
    """jit: (state, batch) -> (state, metrics), sharded and donating the state (also compiled ahead by aot.py)."""
    return jax.jit(functools.partial(state_lib.train_step, task),
                   in_shardings=(state_shardings, mesh_lib.batch_sharding(mesh)),
                   out_shardings=(state_shardings, None), donate_argnums=0)


def make_eval_fn(task, state_shardings, mesh) -> Callable:
    """jit: (state, batch, key) -> (loss with raw params, loss with EMA params, the task's eval_metrics of
    the EMA params: for the LDM the loss under each conditioning pattern)."""

    def evaluate(state, batch, key):
        raw, _ = task.loss(state.params, batch, key, state.step)
        ema, _ = task.loss(state.ema_params, batch, key, state.step)
        return raw, ema, task.eval_metrics(state.ema_params, batch, key)

    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    return jax.jit(evaluate, in_shardings=(state_shardings, mesh_lib.batch_sharding(mesh), replicated))


def validation_batches(batches: Batches, config: ml_collections.ConfigDict) -> list[dict[str, np.ndarray]]:
    """The `train.eval_batches` fixed per-host validation batches, read once per run: rebuilding the reader
    (latent shards reopened, the CAE's song folders rescanned) at every evaluation cost more than the loss."""
    iterator = batches("val", 0)
    try:
        return [next(iterator) for _ in range(int(config.train.eval_batches))]
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


def validate(eval_fn, state, val_batches: list[dict[str, np.ndarray]], mesh, config) -> dict[str, float]:
    """Mean validation loss over the fixed `val_batches` (the same batches and noise every time)."""
    raw, ema, extra = [], [], []
    for index, host_batch in enumerate(val_batches):
        batch = mesh_lib.make_global_batch(host_batch, mesh)
        key = jax.random.PRNGKey(int(config.train.seed) + 1 + index)
        loss_raw, loss_ema, metrics = eval_fn(state, batch, key)
        raw.append(float(loss_raw))
        ema.append(float(loss_ema))
        extra.append({k: float(v) for k, v in metrics.items()})
    means = {f"val_{k}": float(np.mean([m[k] for m in extra])) for k in (extra[0] if extra else {})}
    return {"val_loss": float(np.mean(ema)), "val_loss_raw": float(np.mean(raw)), **means}


def train(config: ml_collections.ConfigDict, workdir: str, *, task=None, batches: Batches | None = None,
          sample_fn: Callable | None = None, mesh: jax.sharding.Mesh | None = None) -> TrainResult:
    """Trains `config` in `workdir`, resuming from its newest readable checkpoint.

    task / batches / sample_fn default to `tasks.make_task`, `tasks.make_batches` and
    `tasks.make_sample_fn` for config.kind; mesh defaults to `make_mesh(config.mesh)` over all devices.
    """
    mesh = mesh if mesh is not None else mesh_lib.make_mesh(config.mesh)
    with jax.set_mesh(mesh):
        return _train(config, workdir, task, batches, sample_fn, mesh)


def _train(config, workdir, task, batches, sample_fn, mesh) -> TrainResult:
    train_cfg = config.train
    if task is None or batches is None or (sample_fn is None and int(train_cfg.sample_every) > 0):
        from diffariff_jax.training import tasks  # imports the models: only when the caller passed no task

    task = task if task is not None else tasks.make_task(config)
    if batches is None:
        batches = functools.partial(tasks.make_batches, config, process_index=jax.process_index(),
                                    process_count=jax.process_count())
    if sample_fn is None and int(train_cfg.sample_every) > 0:
        sample_fn = tasks.make_sample_fn(config, task)

    mesh_lib.per_host_batch_size(int(train_cfg.batch_size), mesh)  # a batch that does not split: fail now
    ckpt.check_kind(workdir, config.kind)
    ckpt.check_same_model(workdir, config)  # before write_config: keep config.json true to the checkpoints
    ckpt.write_config(workdir, config)
    manager = ckpt.make_manager(workdir, train_cfg)
    target, shardings = abstract_state(task, config, mesh)
    start_step, data_position = 0, {"step": 0, "seed": int(train_cfg.seed)}
    restored = ckpt.restore_latest(manager, target)  # straight onto the shardings: no throwaway init
    if restored is not None:
        state, data_position, start_step = restored
        logging.info("resumed from step %d of %s", start_step, workdir)
    else:
        state = init_state(task, config, shardings)
    last_good = start_step if restored is not None else None

    step_fn = make_train_step(task, shardings, mesh)
    eval_fn = make_eval_fn(task, shardings, mesh)
    num_steps = int(train_cfg.num_steps)
    writer = MetricWriter(workdir, tensorboard=bool(train_cfg.tensorboard),
                          progress_total=num_steps, initial_step=start_step)
    preemption = _Preemption(manager)
    flops = float(task.flops_per_example())
    peak = peak_flops_per_device(jax.devices()[0], float(train_cfg.peak_flops)) * jax.device_count()
    global_batch = int(train_cfg.batch_size)
    iterator = batches("train", int(data_position["step"]))
    history: list[dict] = []
    window_start, last_metrics, preempted = None, {}, False
    val_cache: list | None = None

    def exclude_from_timing(since: float) -> None:
        """Validation, sampling and checkpoint time stay out of steps/s."""
        nonlocal window_start
        if window_start is not None:
            window_start = (window_start[0], window_start[1] + time.perf_counter() - since)

    def collect(step: int) -> dict[str, float] | None:
        """Fetches the pending per-step metrics; stops on NaN/inf; returns their mean at `step` (None if none)."""
        nonlocal history, window_start, last_metrics
        if not history:
            return None
        fetched = jax.device_get(history)
        history = []
        bad = _first_non_finite(fetched, step - len(fetched) + 1)
        if bad is not None:
            where = f"step {last_good} in {manager.directory}" if last_good is not None else "none saved yet"
            raise TrainingError(f"loss is NaN/inf at step {bad}; last good checkpoint: {where}")
        metrics = _mean_metrics(fetched)
        now = time.perf_counter()
        if window_start is not None:
            seconds = (now - window_start[1]) / max(step - window_start[0], 1)
            metrics.update(steps_per_s=1.0 / seconds, examples_per_s=global_batch / seconds)
            if peak:
                metrics["mfu"] = flops * global_batch / seconds / peak
        window_start = (step, now)
        last_metrics = metrics
        return metrics

    def flush(step: int) -> None:
        metrics = collect(step)
        if metrics is not None:
            writer.write(step, metrics, "train")

    try:
        for step in range(start_step + 1, num_steps + 1):
            batch = mesh_lib.make_global_batch(next(iterator), mesh)
            state, metrics = step_fn(state, batch)
            history.append(metrics)
            writer.advance()
            if step == start_step + 1:
                jax.block_until_ready(metrics)  # compile time stays out of the first steps/s window
                flush(step)
            val_loss = None
            if step % int(train_cfg.log_every) == 0 or step == num_steps:
                flush(step)
            if int(train_cfg.eval_batches) > 0 and (step % int(train_cfg.eval_every) == 0 or step == num_steps):
                flush(step)
                since = time.perf_counter()
                if val_cache is None:
                    val_cache = validation_batches(batches, config)
                val = validate(eval_fn, state, val_cache, mesh, config)
                writer.write(step, val, "val")
                val_loss = val["val_loss"]
                exclude_from_timing(since)
            if sample_fn is not None and (step % int(train_cfg.sample_every) == 0 or step == num_steps):
                since = time.perf_counter()
                sample_fn(state.ema_params, step, workdir)
                exclude_from_timing(since)
            stop = preemption.reached(step)
            if stop or step == num_steps or manager.should_save(step):
                pending = collect(step)  # never checkpoint a NaN state
                since = time.perf_counter()
                ckpt.save(manager, step, state, config, {"step": step, "seed": int(train_cfg.seed)},
                          val_loss=val_loss, force=True)
                last_good = step
                exclude_from_timing(since)
                if pending is not None:  # logged after the save: a preemption stop saves first
                    writer.write(step, pending, "train")
            if stop:
                writer.message(f"preempted: saved step {step} in {manager.directory}; exiting")
                preempted = True
                break
    finally:
        manager.wait_until_finished()
        manager.close()
        writer.close()
        preemption.restore_handler()
    final_step = int(jax.device_get(state.step))
    return TrainResult(step=final_step, preempted=preempted, metrics=last_metrics, state=state)

