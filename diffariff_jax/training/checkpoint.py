"""Checkpoints: one orbax CheckpointManager factory, exact resume, EMA-only release dirs, inference loading.

A training workdir holds `config.json` (the resolved config) and `checkpoints/<step>/` with three composite
items: `state` (the whole TrainState pytree), `config` (JSON) and `data` (the data position: seed and
step, enough for the deterministic iterators to resume on the same batch). A release dir holds
`config.json` and `params/` (EMA params only). Paths may be local or `gs://` (orbax and etils.epath); every
one goes through `paths.resolve`, so a relative workdir works (orbax itself refuses relative paths).
"""
from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import time
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from etils import epath

from diffariff_jax import paths

CONFIG_FILE = "config.json"
CHECKPOINT_DIR = "checkpoints"
PARAMS_DIR = "params"
ITEMS = ("state", "config", "data")


class _StepMetadataNotice(logging.Filter):
    """Drops orbax's "Metadata file does not exist" warning for one item of a step read on its own: the
    `_CHECKPOINT_METADATA` it looks for belongs to the step folder above, so every inference load (generate,
    eval, precompute) printed it for a checkpoint that is fine."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Metadata file does not exist")


@contextlib.contextmanager
def _quiet_step_metadata():
    absl_logger = logging.getLogger("absl")
    notice = _StepMetadataNotice()
    absl_logger.addFilter(notice)
    try:
        yield
    finally:
        absl_logger.removeFilter(notice)


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


# Read errors that say nothing about the checkpoint itself (storage or network trouble): retried, then
# reported as a TransientCheckpointError, never taken for corruption (which would set a good step aside).
# The words are matched outside quoted text, and HTTP codes only beside a word that makes them a status:
# a NOT_FOUND for a damaged step names its data file, a random hex name, and a bare "503" matched it in about
# one run in 70 (the step was retried as a network fault and never set aside).
TRANSIENT_TYPES = (TimeoutError, ConnectionError, InterruptedError)
TRANSIENT_PATTERN = re.compile(
    r"\b(?:DEADLINE_EXCEEDED|UNAVAILABLE)\b|Connection reset|timed out|Too Many Requests|Service Unavailable"
    r"|\b(?:HTTP(?:/[\d.]+)?|status(?: code)?|code|response)[\s:=]*(?:429|503)\b", re.IGNORECASE)
_QUOTED = re.compile(r'"[^"]*"|\'[^\']*\'')
UNREADABLE_DIR = "unreadable_checkpoints"
_OK, _CORRUPT, _TRANSIENT = 0, 1, 2


class TransientCheckpointError(RuntimeError):
    """A checkpoint could not be read for a reason outside it (storage, network): retry the run later."""


def is_transient(err: BaseException) -> bool:
    """Is `err` storage or network trouble rather than evidence against the checkpoint?"""
    return isinstance(err, TRANSIENT_TYPES) or bool(TRANSIENT_PATTERN.search(_QUOTED.sub('""', str(err))))


def _agree(code: int) -> int:
    """The worst read outcome over all processes (transient > corrupt > ok), so every host restores the
    same step: one host reading a step that another cannot would start the hosts from different states."""
    if jax.process_count() == 1:
        return code
    from jax.experimental import multihost_utils

    return int(np.max(multihost_utils.process_allgather(np.asarray(code, np.int32))))


def _aside_dir(manager: ocp.CheckpointManager) -> epath.Path:
    return epath.Path(manager.directory).parent / UNREADABLE_DIR


def _reports(manager: ocp.CheckpointManager, step: int) -> list[epath.Path]:
    """Notes left by processes whose restore of `step` failed (see restore_latest)."""
    aside = _aside_dir(manager)
    return sorted(aside.glob(f"step-{step}.process-*.txt")) if aside.exists() else []


def precheck(manager: ocp.CheckpointManager, step: int) -> tuple[int, str]:
    """(code, reason): can this process expect to read `step`? Local file checks only, no collective: every
    process must run the same sequence of orbax collectives, so which step to restore is agreed first."""
    root = epath.Path(manager.directory) / str(step)
    try:
        if _reports(manager, step):
            return _CORRUPT, f"a previous run failed to read it ({_reports(manager, step)[0].read_text()[:200]})"
        for part in ("_CHECKPOINT_METADATA", "state/_METADATA", "data"):
            if not (root / part).exists():
                return _CORRUPT, f"{part} is missing"
    except Exception as err:  # a storage error while looking: not evidence against the checkpoint
        return (_TRANSIENT if is_transient(err) else _CORRUPT), f"{type(err).__name__}: {err}"
    return _OK, ""


def set_aside(manager: ocp.CheckpointManager, step: int) -> epath.Path | None:
    """Process 0 moves an unreadable step out of checkpoints/ (to unreadable_checkpoints/<step>[-k], with the
    failure notes about it): left in place, orbax refuses to save that step again, so the final or
    preemption save would fail. All processes call it; returns where it went (on process 0)."""
    target = None
    if jax.process_index() == 0:
        source = epath.Path(manager.directory) / str(step)
        aside = _aside_dir(manager)
        aside.mkdir(parents=True, exist_ok=True)
        target, k = aside / str(step), 1
        while target.exists():
            target, k = aside / f"{step}-{k}", k + 1
        if source.exists():
            source.rename(target)
        else:
            target.mkdir()
        for note in _reports(manager, step):
            note.rename(target / note.name)
        logging.warning("moved unreadable checkpoint step %d to %s", step, target)
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(f"set_aside_{step}")
    manager.reload()
    return target


def restore_latest(manager: ocp.CheckpointManager, abstract_state: Any, *, attempts: int = 3,
                   retry_secs: float = 2.0) -> tuple[Any, dict, int] | None:
    """Restores the newest checkpoint every process can read onto `abstract_state`'s shardings ->
    (state, data_position, step); None when the manager has no checkpoint at all.

    The processes first agree on the newest step that passes every one's `precheck`; steps failing it
    anywhere are set aside (`set_aside`). A restore that then fails: single-process, the step is set aside
    and the previous one tried; multi-process (the hosts' collectives are out of step by then), the process
    leaves a note that makes the next run's precheck reject the step, and raises. A read failing for a
    reason outside the checkpoint (storage, network: `is_transient`) is retried `attempts` times, then
    raises TransientCheckpointError without touching the step.
    """
    manager.reload()
    steps = sorted(manager.all_steps(), reverse=True)
    if not steps:
        return None
    restore_args = ocp.checkpoint_utils.construct_restore_args(abstract_state)
    errors = []
    for step in steps:
        code, message = precheck(manager, step)
        verdict = _agree(code)
        if verdict == _OK:
            for attempt in range(attempts):
                try:
                    restored = manager.restore(step, args=ocp.args.Composite(
                        state=ocp.args.PyTreeRestore(item=abstract_state, restore_args=restore_args),
                        data=ocp.args.JsonRestore(),
                    ))
                    return restored["state"], dict(restored["data"]), step
                except Exception as err:  # orbax raises many types for a damaged step; classified here
                    message = f"{type(err).__name__}: {str(err).splitlines()[0][:200] if str(err) else ''}"
                    verdict = _TRANSIENT if is_transient(err) else _CORRUPT
                    if verdict == _CORRUPT or attempt == attempts - 1:
                        break
                    logging.warning("checkpoint step %d: %s; retrying", step, message)
                    time.sleep(retry_secs * (attempt + 1))
            if verdict == _CORRUPT and jax.process_count() > 1:
                aside = _aside_dir(manager)
                aside.mkdir(parents=True, exist_ok=True)
                (aside / f"step-{step}.process-{jax.process_index()}.txt").write_text(message)
                raise TransientCheckpointError(f"checkpoint step {step} in {manager.directory} failed to restore "
                                               f"here ({message}); the next run skips it")
        if verdict == _TRANSIENT:
            raise TransientCheckpointError(f"checkpoint step {step} in {manager.directory} could not be read "
                                           f"({message or 'on another process'}); not corrupt, retry later")
        logging.warning("checkpoint step %d in %s is unreadable (%s); trying the previous one",
                        step, manager.directory, message or "on another process")
        errors.append(f"step {step}: {message.split(':')[0] or 'unreadable on another process'}")
        set_aside(manager, step)
    raise CheckpointError(f"no readable checkpoint in {manager.directory} ({'; '.join(errors)}); the unreadable "
                          f"steps are in {_aside_dir(manager)}")


def _restore_params(directory: epath.Path, subtree: str | None) -> Any:
    """Restores a params tree (or one top-level `subtree` of a saved tree) as single-device jax arrays."""
    with ocp.PyTreeCheckpointer() as checkpointer, _quiet_step_metadata():
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


def newest_step(path: str | epath.Path) -> int:
    """The newest checkpoint step of a workdir (0 for a plain release dir, which records no step)."""
    ckpts = _path(path, "checkpoint") / CHECKPOINT_DIR
    steps = [int(p.name) for p in ckpts.iterdir() if p.name.isdigit()] if ckpts.exists() else []
    return max(steps, default=0)


def load_ema_params(path: str | epath.Path, step: int) -> Any:
    """The EMA params of one kept step of a training workdir (eval --all-checkpoints scores every step)."""
    state = _path(path, "checkpoint") / CHECKPOINT_DIR / str(int(step)) / "state"
    if not state.exists():
        raise CheckpointError(f"workdir {path} holds no checkpoint at step {step}")
    return _restore_params(state, "ema_params")


def _check_loaded_kind(path: Any, config: ml_collections.ConfigDict, kind: str | None) -> None:
    if kind is not None and config.get("kind") != kind:
        raise CheckpointError(f"{path} holds a {config.get('kind')!r} model, not {kind!r}")

