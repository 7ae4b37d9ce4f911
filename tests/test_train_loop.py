"""The generic loop on a toy regression task: metrics files, validation, NaN stop, SIGTERM save + exit."""
import json
import os
import signal

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs.common import mesh_config, train_config
from diffariff_jax.training import checkpoint as ckpt
from diffariff_jax.training import loop
from diffariff_jax.training.logging import format_line, read_metrics


class ToyTask:
    """y = x @ W + b with noisy targets; `nan_at` makes the loss NaN from that update index on."""

    def __init__(self, config, nan_at=None):
        self.config = config
        self.nan_at = nan_at

    def init_params(self, key):
        return {"dense": {"kernel": jax.random.normal(key, (4, 8)) * 0.1, "bias": jnp.zeros(8)}}

    def loss(self, params, batch, key, step):
        pred = batch["x"] @ params["dense"]["kernel"] + params["dense"]["bias"]
        loss = jnp.mean((pred + 0.01 * jax.random.normal(key, pred.shape) - batch["y"]) ** 2)
        if self.nan_at is not None:
            loss = jnp.where(step >= self.nan_at, jnp.nan, loss)
        return loss, {"mse": loss}

    def eval_metrics(self, params, batch, key):
        return {}

    def dummy_batch(self, batch_size):
        return {"x": np.zeros((batch_size, 4), np.float32), "y": np.zeros((batch_size, 8), np.float32)}

    def flops_per_example(self):
        return 6.0 * 4 * 8


def toy_batches(split, start_step, hook=None):
    step = start_step
    while True:
        rng = np.random.default_rng([0 if split == "train" else 1, step])
        x = rng.normal(size=(4, 4)).astype(np.float32)
        if hook is not None:
            hook(step)
        yield {"x": x, "y": np.repeat(x.sum(1, keepdims=True), 8, axis=1)}
        step += 1


def toy_config(**train):
    defaults = dict(batch_size=4, num_steps=8, lr=1e-2, warmup_steps=2, log_every=1, eval_every=4, ckpt_every=4,
                    tensorboard=False, async_checkpoints=False, eval_batches=2)
    defaults.update(train)
    return ml_collections.ConfigDict({"kind": "toy", "mesh": mesh_config(), "train": train_config(**defaults)})


def test_run_writes_config_metrics_and_checkpoints(tmp_path):
    config = toy_config(tensorboard=True)
    opened = []

    def batches(split, start_step):
        opened.append(split)
        return toy_batches(split, start_step)

    result = loop.train(config, str(tmp_path), task=ToyTask(config), batches=batches)
    assert opened == ["train", "val"]  # the validation batches are read once, not at every evaluation
    assert result.step == 8 and not result.preempted
    train = read_metrics(str(tmp_path), "train")
    assert [r["step"] for r in train] == list(range(1, 9))
    assert {"loss", "grad_norm", "lr", "mse"} <= set(train[0])
    assert {"steps_per_s", "examples_per_s"} <= set(train[-1])
    assert np.isclose(train[-1]["examples_per_s"], 4 * train[-1]["steps_per_s"])
    assert train[-1]["loss"] < train[0]["loss"]
    assert [r["step"] for r in read_metrics(str(tmp_path), "val")] == [4, 8]
    assert json.loads((tmp_path / "config.json").read_text())["kind"] == "toy"
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [4, 8]
    assert any((tmp_path / "tensorboard" / "train").iterdir())
    _, ema = ckpt.load_for_inference(str(tmp_path))
    assert ema["dense"]["kernel"].shape == (4, 8)


def test_nan_loss_stops_naming_step_and_last_checkpoint(tmp_path):
    config = toy_config(num_steps=10, log_every=3)
    with pytest.raises(loop.TrainingError, match=r"NaN/inf at step 7; last good checkpoint: step 4 in "):
        loop.train(config, str(tmp_path), task=ToyTask(config, nan_at=6), batches=toy_batches)
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [4]


def test_sigterm_saves_and_stops_then_resume_matches_uninterrupted(tmp_path):
    config = toy_config(num_steps=8, eval_every=100, ckpt_every=100)
    loop.train(config, str(tmp_path / "full"), task=ToyTask(config), batches=toy_batches)

    def sigterm_at_batch_5(step):
        if step == 4:  # the batch of update 5: the signal lands mid-run
            os.kill(os.getpid(), signal.SIGTERM)

    first = loop.train(config, str(tmp_path / "cut"), task=ToyTask(config),
                       batches=lambda split, start: toy_batches(split, start, sigterm_at_batch_5))
    assert first.preempted and first.step == 5
    assert sorted(int(p.name) for p in (tmp_path / "cut" / "checkpoints").iterdir()) == [5]
    second = loop.train(config, str(tmp_path / "cut"), task=ToyTask(config), batches=toy_batches)
    assert second.step == 8 and not second.preempted
    full = {r["step"]: r["loss"] for r in read_metrics(str(tmp_path / "full"), "train")}
    cut = {r["step"]: r["loss"] for r in read_metrics(str(tmp_path / "cut"), "train")}
    assert sorted(cut) == list(range(1, 9))
    np.testing.assert_allclose([cut[s] for s in range(1, 9)], [full[s] for s in range(1, 9)], rtol=1e-6)


def test_peak_flops_table_and_console_line():
    class Device:
        device_kind = "TPU v5 lite"

    assert loop.peak_flops_per_device(Device()) == 197e12
    assert loop.peak_flops_per_device(jax.devices("cpu")[0]) == 0.0
    assert loop.peak_flops_per_device(jax.devices("cpu")[0], override=1e12) == 1e12
    assert format_line(3, "train", {"loss": 0.5, "lr": 1e-4}) == "step 3 train | loss 0.5 | lr 1.00e-04"


def test_ldm_run_writes_decoded_samples(tmp_path):
    """The real tiny LDM task, latent records and a random micro CAE release decoding the samples."""
    from diffariff_jax.testing.random_cae import MICRO_CAE, random_cae
    from diffariff_jax.training.tasks import DataSetupError
    from scenario_tasks import tiny_ldm_setup, write_tiny_latents

    cae_config, cae_params = random_cae("tiny", overrides=MICRO_CAE)
    ckpt.save_release(tmp_path / "cae", cae_config, cae_params)
    config, task, _ = tiny_ldm_setup(batch_size=4, num_steps=2, eval_batches=0)
    config.data.records_dir = str(write_tiny_latents(tmp_path / "latents"))
    config.train.update(sample_every=2, sample_count=2)
    config.sampler.steps = 2
    with pytest.raises(DataSetupError, match="needs --config.train.sample_cae"):
        loop.train(config, str(tmp_path / "no_cae"), task=task)
    config.train.sample_cae = str(tmp_path / "cae")
    loop.train(config, str(tmp_path / "run"), task=task)
    written = sorted(p.name for p in (tmp_path / "run" / "samples" / "step_00000002").iterdir())
    assert written == [f"{kind}_{i}.wav" for kind in ("context", "sample", "target") for i in (0, 1)]
    import soundfile as sf

    wav, rate = sf.read(tmp_path / "run" / "samples" / "step_00000002" / "sample_0.wav")
    assert rate == 48000 and wav.shape == (8 * 4096,) and np.all(np.isfinite(wav))


def test_ldm_validation_logs_the_loss_under_each_conditioning_pattern(tmp_path):
    """The LDM's val records carry the loss with and without context / CLAP (shared noise), so a run shows
    whether the model uses its conditioning; the fresh output layer is zero, so all four start equal."""
    from scenario_tasks import tiny_ldm_setup

    config, task, batches = tiny_ldm_setup(batch_size=4, num_steps=1, eval_batches=1, lr=0.0)
    loop.train(config, str(tmp_path), task=task, batches=batches)
    (val,) = read_metrics(str(tmp_path), "val")
    patterns = [f"val_loss_{p}" for p in ("context_clap", "context_only", "clap_only", "unconditional")]
    assert set(patterns) <= set(val)
    np.testing.assert_allclose([val[p] for p in patterns], val[patterns[0]], rtol=1e-5)
    assert np.isfinite(val[patterns[0]]) and val[patterns[0]] > 0
