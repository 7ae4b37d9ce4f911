"""Checkpoints: release dirs, inference loading from either kind of dir, keep-last-k + best, corrupt fallback."""
import json
import shutil

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from configs.common import mesh_config, train_config
from diffariff_jax.training import checkpoint as ckpt
from diffariff_jax.training.state import TrainState


def _config(kind="ldm", **train):
    return ml_collections.ConfigDict({"kind": kind, "model": {"channel_mult": (1, 2)}, "mesh": mesh_config(),
                                      "train": train_config(ckpt_every=1, async_checkpoints=False, **train)})


def _state(step, scale=1.0):
    params = {"dense": {"kernel": jnp.full((3, 4), scale), "bias": jnp.arange(4.0)}}
    ema = jax.tree.map(lambda x: x * 10 + step, params)
    return TrainState(step=jnp.asarray(step, jnp.int32), params=params, opt_state=optax.adam(1e-3).init(params),
                      ema_params=ema, rng=jax.random.PRNGKey(step))


def _save_steps(workdir, config, steps, val_losses=None):
    ckpt.write_config(workdir, config)
    manager = ckpt.make_manager(workdir, config.train)
    for step in steps:
        val = None if val_losses is None else val_losses.get(step)
        ckpt.save(manager, step, _state(step), config, {"step": step, "seed": 0}, val_loss=val, force=True)
    manager.wait_until_finished()
    return manager


def test_release_round_trip_keeps_config_types_and_params(tmp_path):
    config = _config()
    params = {"a": {"kernel": np.arange(6, dtype=np.float32).reshape(2, 3)}}
    ckpt.save_release(tmp_path / "release", config, params)
    loaded_config, loaded = ckpt.load_for_inference(str(tmp_path / "release"), kind="ldm")
    assert loaded_config.model.channel_mult == (1, 2)
    assert loaded_config.train.lr == config.train.lr
    np.testing.assert_array_equal(np.asarray(loaded["a"]["kernel"]), params["a"]["kernel"])
    with pytest.raises(ckpt.CheckpointError, match="already holds params"):
        ckpt.save_release(tmp_path / "release", config, params)


def test_load_for_inference_from_workdir_takes_latest_ema(tmp_path, caplog):
    config = _config()
    _save_steps(tmp_path, config, [1, 2, 3]).close()
    with caplog.at_level("WARNING"):
        loaded_config, params = ckpt.load_for_inference(str(tmp_path))
    assert not [r for r in caplog.records if r.levelname == "WARNING"]  # orbax's step-metadata notice is not a problem
    assert loaded_config.kind == "ldm"
    np.testing.assert_allclose(np.asarray(params["dense"]["kernel"]), np.full((3, 4), 13.0))
    np.testing.assert_allclose(np.asarray(params["dense"]["bias"]), np.arange(4.0) * 10 + 3)


def test_load_for_inference_clear_errors(tmp_path):
    with pytest.raises(ckpt.CheckpointError, match="does not exist"):
        ckpt.load_for_inference(str(tmp_path / "missing"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ckpt.CheckpointError, match="neither a training workdir nor a release dir"):
        ckpt.load_for_inference(str(tmp_path / "empty"))
    ckpt.write_config(tmp_path / "fresh", _config())
    with pytest.raises(ckpt.CheckpointError, match="holds no checkpoint yet"):
        ckpt.load_for_inference(str(tmp_path / "fresh"))
    with pytest.raises(ckpt.CheckpointError, match="holds a 'ldm' model, not 'cae'"):
        ckpt.load_for_inference(str(tmp_path / "fresh"), kind="cae")
    with pytest.raises(ckpt.CheckpointError, match="holds a 'ldm' model, not 'cae'"):
        ckpt.check_kind(tmp_path / "fresh", "cae")
    ckpt.check_kind(tmp_path / "fresh", "ldm")
    ckpt.check_kind(tmp_path / "nothing_yet", "cae")


def test_keep_last_k_plus_best_by_validation_loss(tmp_path):
    config = _config(keep_checkpoints=2, keep_best=1)
    manager = _save_steps(tmp_path, config, [1, 2, 3, 4, 5], val_losses={2: 0.1, 4: 0.5})
    assert sorted(manager.all_steps()) == [2, 4, 5]
    manager.close()


# orbax leaves a callback for its closed event loop behind after a read of a damaged step fails: noise only.
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_restore_latest_exact_and_falls_back_from_corrupt_or_partial(tmp_path):
    config = _config()
    _save_steps(tmp_path, config, [1, 2, 3]).close()
    target = ckpt.abstract_like(_state(0))
    manager = ckpt.make_manager(tmp_path, config.train)
    state, position, step = ckpt.restore_latest(manager, target)
    assert step == 3 and position == {"step": 3, "seed": 0}
    np.testing.assert_array_equal(np.asarray(state.rng), np.asarray(jax.random.PRNGKey(3)))
    manager.close()
    # corrupt step 3 (its array data gone) and leave an unfinished step-4 temp dir: step 2 is used
    shutil.rmtree(tmp_path / "checkpoints" / "3" / "state" / "d")
    for path in (tmp_path / "checkpoints" / "3" / "state").glob("ocdbt.process_*"):
        shutil.rmtree(path)
    (tmp_path / "checkpoints" / "4.orbax-checkpoint-tmp-123").mkdir()
    manager = ckpt.make_manager(tmp_path, config.train)
    state, position, step = ckpt.restore_latest(manager, target)
    assert step == 2 and int(state.step) == 2 and position["step"] == 2
    # the bad step was moved aside, so the resumed run can save step 3 again (orbax refused: step exists)
    assert not (tmp_path / "checkpoints" / "3").exists()
    assert (tmp_path / "unreadable_checkpoints" / "3" / "state").is_dir()
    assert ckpt.save(manager, 3, _state(3, scale=2.0), config, {"step": 3, "seed": 0}, force=True)
    manager.wait_until_finished()
    assert sorted(manager.all_steps()) == [1, 2, 3]
    manager.close()
    _, params = ckpt.load_for_inference(str(tmp_path))
    np.testing.assert_allclose(np.asarray(params["dense"]["kernel"]), np.full((3, 4), 23.0))


def test_a_transient_read_error_is_retried_and_never_taken_for_corruption(tmp_path, monkeypatch):
    config = _config()
    _save_steps(tmp_path, config, [1, 2]).close()
    target = ckpt.abstract_like(_state(0))
    manager = ckpt.make_manager(tmp_path, config.train)
    real_restore, calls = manager.restore, []

    def flaky(step, *args, **kwargs):  # the bucket times out twice, then answers
        calls.append(step)
        if len(calls) <= 2:
            raise OSError("DEADLINE_EXCEEDED: reading gs://b/run/checkpoints/2/state")
        return real_restore(step, *args, **kwargs)

    monkeypatch.setattr(manager, "restore", flaky)
    _, _, step = ckpt.restore_latest(manager, target, retry_secs=0)
    assert step == 2 and calls == [2, 2, 2]
    calls.clear()
    monkeypatch.setattr(manager, "restore", lambda *a, **k: calls.append(1) or (_ for _ in ()).throw(
        TimeoutError("read timed out")))
    with pytest.raises(ckpt.TransientCheckpointError, match="checkpoint step 2 .* not corrupt, retry later"):
        ckpt.restore_latest(manager, target, retry_secs=0)
    assert len(calls) == 3 and (tmp_path / "checkpoints" / "2").is_dir()  # retried, and left in place
    assert not (tmp_path / "unreadable_checkpoints").exists()
    manager.close()


def test_config_json_is_readable_and_restores_tuples(tmp_path):
    ckpt.write_config(tmp_path, _config())
    assert json.loads((tmp_path / "config.json").read_text())["model"]["channel_mult"] == [1, 2]
    assert ckpt.read_config(tmp_path).model.channel_mult == (1, 2)


def test_resume_with_another_model_shape_fails_in_one_line(tmp_path):
    config = _config()
    ckpt.check_same_model(tmp_path / "run", config)  # nothing there yet
    ckpt.write_config(tmp_path / "run", config)
    changed = _config()
    changed.model.channel_mult = (1, 4)
    ckpt.check_same_model(tmp_path / "run", changed)  # config.json but no checkpoint yet: any model goes
    _save_steps(tmp_path / "run", config, [1])
    ckpt.check_same_model(tmp_path / "run", _config())  # same shape: resumes
    with pytest.raises(ckpt.CheckpointError, match=r"config.model.channel_mult=\[1, 2\] there, \[1, 4\] here\); "
                       r"resume with its settings or use another --workdir$"):
        ckpt.check_same_model(tmp_path / "run", changed)


def test_a_step_another_run_failed_to_restore_is_skipped_and_set_aside_with_its_note(tmp_path):
    """Multi-host: a process whose restore failed leaves a note and the run exits; the relaunch's precheck
    then rejects that step on every host instead of failing on it again."""
    config = _config()
    _save_steps(tmp_path, config, [1, 2]).close()
    notes = tmp_path / "unreadable_checkpoints"
    notes.mkdir()
    (notes / "step-2.process-1.txt").write_text("ValueError: chunk checksum mismatch")
    manager = ckpt.make_manager(tmp_path, config.train)
    _, _, step = ckpt.restore_latest(manager, ckpt.abstract_like(_state(0)))
    manager.close()
    assert step == 1
    assert (notes / "2" / "step-2.process-1.txt").exists() and not (notes / "step-2.process-1.txt").exists()


@pytest.mark.parametrize("message, transient", [
    # a damaged step: tensorstore names its data file, a random hex name that can hold "503" or "429"
    ('NOT_FOUND: Error reading Byte range [0, 468) of local file "/tmp/x/checkpoints/3/state/d/'
     'f9d5034290b00b8fba5518a3a87f5e"', False),
    ("NOT_FOUND: /tmp/run-503/checkpoints/3/state/d/a429ff is missing", False),
    ("DEADLINE_EXCEEDED: reading gs://b/run/checkpoints/2/state", True),
    ("UNAVAILABLE: Connection to storage.googleapis.com failed", True),
    ("GET gs://b/x: HTTP 503", True),
    ("request failed with status code: 429", True),
    ("503 Service Unavailable", True),
    ('DATA_LOSS: Error reading "step/.zarray": "timed out" in a path', False),
])
def test_only_storage_trouble_counts_as_transient(message, transient):
    assert ckpt.is_transient(ValueError(message)) is transient
