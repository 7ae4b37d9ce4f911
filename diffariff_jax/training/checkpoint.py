"""Checkpoints: one orbax CheckpointManager factory, exact resume, EMA-only release dirs, inference loading.

A training workdir holds `config.json` (the resolved config) and `checkpoints/<step>/` with three composite
items: `state` (the whole TrainState pytree), `config` (JSON) and `data` (the data position: seed and
step, enough for the deterministic iterators to resume on the same batch). A release dir holds
`config.json` and `params/` (EMA params only). Paths may be local or `gs://` (orbax and etils.epath); every
one goes through `paths.resolve`, so a relative workdir works (orbax itself refuses relative paths).
"""
from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
import ml_collections
import orbax.checkpoint as ocp
from etils import epath

from diffariff_jax import paths

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
PARAMS_DIR = "params"
ITEMS = ("state", "config", "data")


class CheckpointError(ValueError):
    """A one-line, user-facing checkpoint problem (missing path, empty workdir, wrong model kind)."""


def _path(directory: str | os.PathLike, what: str = "workdir") -> epath.Path:
    """paths.resolve, with its one-line errors as CheckpointError (the one error type of this layer)."""
    try:
        return paths.resolve(directory, what)
    except paths.PathError as err:
        raise CheckpointError(str(err)) from None


def _tuples(value: Any) -> Any:
    """JSON turns tuples into lists; configs are written with tuples (e.g. channel multipliers)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
    """A JSON-safe plain dict of the config (round-trips through `config_from_dict`)."""
    return json.loads(config.to_json_best_effort())


def config_from_dict(data: dict) -> ml_collections.ConfigDict:
    return ml_collections.ConfigDict(_tuples(data))


def write_config(directory: str | epath.Path, config: ml_collections.ConfigDict) -> None:
    """Writes `config.json` into `directory` (process 0 only; other processes return at once)."""
    if jax.process_index() != 0:
        return
    path = _path(directory)
    path.mkdir(parents=True, exist_ok=True)
    # Written under a temporary name, then renamed: other processes may be reading it (check_kind).
    tmp = path / f"{CONFIG_FILE}.tmp-{os.getpid()}"
    tmp.write_text(json.dumps(config_to_dict(config), indent=2, sort_keys=True))
    tmp.replace(path / CONFIG_FILE)


def read_config(directory: str | epath.Path) -> ml_collections.ConfigDict:
    """Reads `config.json` from a workdir or release dir."""
    path = _path(directory) / CONFIG_FILE
    if not path.exists():
        raise CheckpointError(f"{directory}: no {CONFIG_FILE} (not a diffariff-jax workdir or release dir)")
    return config_from_dict(json.loads(path.read_text()))


def check_kind(directory: str | epath.Path, kind: str) -> None:
    """Raises if `directory` already holds a run of another model kind (config.kind mismatch)."""
    path = _path(directory) / CONFIG_FILE
    if path.exists():
        held = json.loads(path.read_text()).get("kind")
        if held != kind:
            raise CheckpointError(f"workdir {directory} holds a {held!r} model, not {kind!r}; use another --workdir")


def check_same_model(directory: str | epath.Path, config: ml_collections.ConfigDict) -> None:
    """Raises if `directory` holds checkpoints of a model shaped by another `config.model` (a changed
    --config.model.* override): resuming would fail to restore every step with shape errors, and
    rewriting config.json would describe params the checkpoints do not hold."""
    path = _path(directory)
    checkpoints = path / CHECKPOINT_DIR
    if not (path / CONFIG_FILE).exists() or not checkpoints.exists():
        return
    if not any(entry.name.isdigit() for entry in checkpoints.iterdir()):
        return
    held = json.loads((path / CONFIG_FILE).read_text()).get("model", {})
    wanted = config_to_dict(config).get("model", {})
    changed = sorted(key for key in set(held) | set(wanted) if held.get(key) != wanted.get(key))
    if changed:
        diff = ", ".join(f"config.model.{k}={held.get(k)!r} there, {wanted.get(k)!r} here" for k in changed)
        raise CheckpointError(f"workdir {directory} holds checkpoints of another model shape ({diff}); "
                              "resume with its settings or use another --workdir")


def make_manager(workdir: str | epath.Path, train: ml_collections.ConfigDict, *,
                 read_only: bool = False) -> ocp.CheckpointManager:
    """The one CheckpointManager factory: composite items, interval + preemption saves, keep-last-k + best.

    train.ckpt_every: save interval in steps; train.keep_checkpoints: keep the latest k; train.keep_best:
    additionally keep the best n by validation loss (saved as metrics {"val_loss": ...}); train.async_checkpoints.
    """
    save_policy = ocp.checkpoint_managers.AnySavePolicy([
        ocp.checkpoint_managers.FixedIntervalPolicy(int(train.ckpt_every)),
        ocp.checkpoint_managers.PreemptionCheckpointingPolicy(),
    ])
    keep = [ocp.checkpoint_managers.LatestN(n=int(train.keep_checkpoints))]
    if int(train.keep_best) > 0:
        # BestN keeps the last n after an ascending sort; reverse=True puts the lowest loss last.
        keep.append(ocp.checkpoint_managers.BestN(
            get_metric_fn=lambda metrics: metrics["val_loss"], reverse=True,
            n=int(train.keep_best), keep_checkpoints_without_metrics=False))
    options = ocp.CheckpointManagerOptions(
        save_decision_policy=save_policy,
        preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy(keep),
        enable_async_checkpointing=bool(train.async_checkpoints),
        read_only=read_only,
        create=not read_only,
    )
    return ocp.CheckpointManager(_path(workdir) / CHECKPOINT_DIR, item_names=ITEMS, options=options)


def save(manager: ocp.CheckpointManager, step: int, state: Any, config: ml_collections.ConfigDict,
         data_position: dict, *, val_loss: float | None = None, force: bool = False) -> bool:
    """Saves (asynchronously) if the policies say so at `step`, or always with force=True. All processes call it."""
    args = ocp.args.Composite(
        state=ocp.args.PyTreeSave(state),
        config=ocp.args.JsonSave(config_to_dict(config)),
        data=ocp.args.JsonSave(dict(data_position)),
    )
    metrics = None if val_loss is None else {"val_loss": float(val_loss)}
    return manager.save(int(step), args=args, metrics=metrics, force=force)


def abstract_like(tree: Any, shardings: Any = None) -> Any:
    """ShapeDtypeStructs of `tree`, carrying `shardings` (a matching tree) so a restore lands on that mesh."""
    if shardings is None:
        return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)
    return jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings)


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any) -> tuple[Any, dict, int] | None:
    """Restores the newest readable checkpoint onto `abstract_state`'s shardings -> (state, data_position, step).

    A newest checkpoint that fails to read (corrupt, partially deleted) is skipped with a warning and the
    previous one is used; returns None when the manager has no checkpoint at all.
    """
    manager.reload()
    steps = sorted(manager.all_steps(), reverse=True)
    if not steps:
        return None
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_state)
    errors = []
    for step in steps:
        try:
            restored = manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.PyTreeRestore(item=abstract_state, restore_args=restore_args),
                data=ocp.args.JsonRestore(),
            ))
        except Exception as err:  # orbax raises many types for a damaged step; any of them means "skip it"
            logging.warning("checkpoint step %d in %s is unreadable (%s); trying the previous one",
                            step, manager.directory, str(err).splitlines()[0][:200])
            errors.append(f"step {step}: {type(err).__name__}")
            continue
        return restored["state"], dict(restored["data"]), step
    raise CheckpointError(f"no readable checkpoint in {manager.directory} ({'; '.join(errors)})")


def _restore_params(directory: epath.Path, subtree: str | None) -> Any:
    """Restores a params tree (or one top-level `subtree` of a saved tree) as single-device jax arrays."""
    with ocp.PyTreeCheckpointer() as checkpointer:
        metadata = checkpointer.metadata(directory).item_metadata.tree
        if subtree is not None:
            metadata = {subtree: metadata[subtree]}
        # this process's own device: jax.devices()[0] belongs to process 0 and is not addressable elsewhere
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        abstract = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), metadata)
        restored = checkpointer.restore(directory, args=ocp.args.PyTreeRestore(
            item=abstract, restore_args=ocp.checkpoint_utils.construct_restore_args(abstract),
            partial_restore=subtree is not None))
    return restored[subtree] if subtree is not None else restored


def save_release(directory: str | epath.Path, config: ml_collections.ConfigDict, params: Any) -> None:
    """Writes an EMA-only release dir: `config.json` + orbax `params/`. All processes call it."""
    path = _path(directory, "release dir")
    if (path / PARAMS_DIR).exists():
        raise CheckpointError(f"release dir {directory} already holds params; choose an empty directory")
    write_config(path, config)
    with ocp.PyTreeCheckpointer() as checkpointer:
        checkpointer.save(path / PARAMS_DIR, args=ocp.args.PyTreeSave(params))


def load_for_inference(path: str | epath.Path, kind: str | None = None) -> tuple[ml_collections.ConfigDict, Any]:
    """(config, EMA params) from a release dir or a training workdir (its newest readable checkpoint).

    kind: when given ("ldm" | "cae"), a checkpoint of another model kind is a clear error.
    """
    root = _path(path, "checkpoint")
    if not root.exists():
        raise CheckpointError(f"checkpoint path {path} does not exist")
    if (root / PARAMS_DIR).exists():
        config = read_config(root)
        _check_loaded_kind(path, config, kind)
        return config, _restore_params(root / PARAMS_DIR, None)
    if not (root / CONFIG_FILE).exists() and not (root / CHECKPOINT_DIR).exists():
        raise CheckpointError(f"{path} is neither a training workdir nor a release dir (no {CONFIG_FILE})")
    config = read_config(root)
    _check_loaded_kind(path, config, kind)
    ckpt_root = root / CHECKPOINT_DIR
    steps = sorted((int(p.name) for p in ckpt_root.iterdir() if p.name.isdigit()), reverse=True) \
        if ckpt_root.exists() else []
    if not steps:
        raise CheckpointError(f"workdir {path} holds no checkpoint yet (train first, or pass a release dir)")
    for step in steps:
        try:
            return config, _restore_params(ckpt_root / str(step) / "state", "ema_params")
        except Exception as err:  # a damaged newest step falls back to the previous one
            logging.warning("checkpoint %s/%d unreadable (%s); trying the previous one", ckpt_root, step,
                            str(err).splitlines()[0][:200])
    raise CheckpointError(f"workdir {path}: no readable checkpoint among steps {steps}")


def _check_loaded_kind(path: Any, config: ml_collections.ConfigDict, kind: str | None) -> None:
    if kind is not None and config.get("kind") != kind:
        raise CheckpointError(f"{path} holds a {config.get('kind')!r} model, not {kind!r}")

