"""Train state, optimiser and the generic (task-agnostic) train step.

One `train_step(task, state, batch)` serves the CAE and the LDM: the task supplies the loss, this file
supplies AdamW/RAdam with warmup + cosine (or constant) learning rate, global-norm clipping, decoupled
weight decay masked off for biases, norm scales and every 1-D parameter, and an EMA of the weights.
Everything is pure: callers wrap `train_step` in `jax.jit` (with shardings and donation as they like).
"""
from __future__ import annotations

from typing import Any, Callable, Protocol

import flax
import jax
import jax.numpy as jnp
import ml_collections
import optax

from diffariff_jax.training import mesh as mesh_lib

PyTree = Any
Schedule = Callable[[jax.Array], jax.Array]

# Leaf names that never get weight decay, whatever their rank (Flax's names for biases and norm gains).
NO_DECAY_NAMES = ("bias", "scale")


class Task(Protocol):
    """What `create_train_state` / `train_step` need from a model task (see training/ldm_task.py)."""

    config: ml_collections.ConfigDict

    def init_params(self, key: jax.Array) -> PyTree: ...

    def loss(self, params: PyTree, batch: dict[str, jax.Array], key: jax.Array,
             step: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]: ...


@flax.struct.dataclass
class TrainState:
    """Everything a training run carries from step to step (a pytree; checkpointed whole)."""

    step: jax.Array  # int32 scalar: number of optimiser updates applied so far
    params: PyTree  # float32 weights being optimised
    opt_state: PyTree  # optax state of `make_optimizer(config.train)`
    ema_params: PyTree  # exponential moving average of `params` (used for sampling and release)
    rng: jax.Array  # PRNG key, split once per step


def make_lr_schedule(train_cfg: ml_collections.ConfigDict) -> Schedule:
    """Learning rate as a function of the update index `step` (0 for the first update).

    Linear warmup lr * step / warmup_steps over [0, warmup_steps], then either constant lr or a half
    cosine from lr down to lr * final_lr_ratio at step num_steps (held there afterwards).
    """
    peak = float(train_cfg.lr)
    warmup = int(train_cfg.warmup_steps)
    total = int(train_cfg.num_steps)
    kind = train_cfg.lr_schedule
    if kind not in ("cosine", "constant"):
        raise ValueError(f"train.lr_schedule={kind!r}; choose 'cosine' or 'constant'")
    final = peak * float(train_cfg.final_lr_ratio)
    decay_len = max(total - warmup, 1)

    def schedule(step: jax.Array) -> jax.Array:
        step = jnp.asarray(step, jnp.float32)
        warm = jnp.minimum(step / warmup, 1.0) if warmup > 0 else jnp.float32(1.0)
        if kind == "constant":
            return peak * warm
        progress = jnp.clip((step - warmup) / decay_len, 0.0, 1.0)
        cosine = final + (peak - final) * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        return jnp.where(step < warmup, peak * warm, cosine)

    return schedule


def weight_decay_mask(params: PyTree) -> PyTree:
    """True where weight decay applies: parameters of rank >= 2 that are not biases or norm scales."""

    def decide(path, leaf) -> bool:
        name = path[-1].key if path and hasattr(path[-1], "key") else ""
        return jnp.ndim(leaf) >= 2 and name not in NO_DECAY_NAMES

    return jax.tree_util.tree_map_with_path(decide, params)


def make_optimizer(train_cfg: ml_collections.ConfigDict) -> optax.GradientTransformation:
    """clip(global norm) -> Adam or RAdam moments -> decoupled masked weight decay -> -lr(step)."""
    parts = []
    if train_cfg.grad_clip and train_cfg.grad_clip > 0:
        parts.append(optax.clip_by_global_norm(float(train_cfg.grad_clip)))
    if train_cfg.optimizer == "adamw":
        parts.append(optax.scale_by_adam(b1=float(train_cfg.b1), b2=float(train_cfg.b2)))
    elif train_cfg.optimizer == "radam":
        parts.append(optax.scale_by_radam(b1=float(train_cfg.b1), b2=float(train_cfg.b2)))
    else:
        raise ValueError(f"train.optimizer={train_cfg.optimizer!r}; choose 'adamw' or 'radam'")
    if train_cfg.weight_decay and train_cfg.weight_decay > 0:
        parts.append(optax.add_decayed_weights(float(train_cfg.weight_decay), mask=weight_decay_mask))
    parts.append(optax.scale_by_learning_rate(make_lr_schedule(train_cfg)))
    return optax.chain(*parts)


def ema_update(ema_params: PyTree, params: PyTree, decay: float | jax.Array) -> PyTree:
    """ema <- decay * ema + (1 - decay) * params, leaf by leaf."""
    return jax.tree.map(lambda e, p: decay * e + (1.0 - decay) * p, ema_params, params)


def create_train_state(task: Task, key: jax.Array) -> TrainState:
    """Initial state: fresh params from `task.init_params`, EMA = a copy of them, step 0."""
    init_key, rng = jax.random.split(key)
    params = task.init_params(init_key)
    optimizer = make_optimizer(task.config.train)
    # A real copy, so callers may donate params and ema_params as separate buffers.
    ema_params = jax.tree.map(lambda p: jnp.array(p, copy=True), params)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                      opt_state=optimizer.init(params), ema_params=ema_params, rng=rng)


def _identity(tree: Any) -> Any:
    return tree


def _fsdp_gather(config) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """(gather, scatter): params -> params replicated over the mesh's `fsdp` axis, and gradients -> back on
    the parameters' fsdp shards, when the mesh has an fsdp axis and mesh.gather_params is on (else identities).

    The fsdp-sharded parameters are all-gathered once at the start of the forward pass, so every
    convolution runs on whole weights and batch-split activations. Left to itself, the SPMD partitioner
    splits some convolutions over the sharded weight dimension instead, exchanging activations (all-to-all,
    collective-permute) and repeating work: for the paper LDM on v5p-64 (data=4, fsdp=8) XLA counted 1.72x
    the analytic FLOPs per chip, 1.00x with the gather. The gradients of the gathered parameters come out
    replicated; constraining them back to the parameters' sharding keeps the clip, optimizer and EMA update
    on each chip's shard (XLA's estimate for that step: 15.9 ms without the constraint, 11.6 ms with it,
    12.1 ms for the default). The tiny LDM's gradients are then reduce-scattered; the paper LDM's are still
    all-reduced whole and sliced (XLA combines them into 11 all-reduces). Off by default: the cost model
    ignores collectives, so which is faster on a slice is for a slice to measure (docs/training.md).
    """
    if not config.get("mesh", {}).get("gather_params", False):
        return _identity, _identity
    mesh = jax.sharding.get_abstract_mesh()
    if mesh.empty or mesh.shape.get("fsdp", 1) == 1:
        return _identity, _identity
    replicated = jax.sharding.PartitionSpec()
    fsdp, smallest = mesh.shape["fsdp"], int(config.mesh.min_fsdp_size)

    def gather(params):
        return jax.tree.map(lambda p: jax.lax.with_sharding_constraint(p, replicated), params)

    def scatter(grads):
        return jax.tree.map(
            lambda g: jax.lax.with_sharding_constraint(g, mesh_lib.param_spec(g.shape, fsdp, smallest)), grads)

    return gather, scatter


def train_step(task: Task, state: TrainState,
               batch: dict[str, jax.Array]) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimiser update. Returns the new state and scalar metrics (task metrics + loss, grad_norm, lr).

    `grad_norm` is measured before clipping; `lr` is the rate applied by this update.
    """
    train_cfg = task.config.train
    rng, step_key = jax.random.split(state.rng)

    gather, scatter = _fsdp_gather(task.config)

    def loss_fn(params):
        return task.loss(gather(params), batch, step_key, state.step)

    (loss, metrics), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
    grads = scatter(grads)
    optimizer = make_optimizer(train_cfg)
    updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    ema_params = ema_update(state.ema_params, params, float(train_cfg.ema_decay))
    metrics = dict(metrics)
    metrics.update(loss=loss, grad_norm=optax.tree.norm(grads),
                   lr=make_lr_schedule(train_cfg)(state.step))
    new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state,
                              ema_params=ema_params, rng=rng)
    return new_state, metrics
