"""Train state: LR schedule, EMA and the weight-decay mask against hand-computed values."""
import math

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import pytest

from configs.common import train_config
from diffariff_jax.training import state as state_lib


class LinearTask:
    """y = x @ w + b regression: a task small enough to reason about by hand."""

    def __init__(self, **train_overrides):
        self.config = ml_collections.ConfigDict({"train": train_config(**train_overrides)})

    def init_params(self, key):
        return {"dense": {"kernel": jax.random.normal(key, (3, 2)), "bias": jnp.zeros((2,))}}

    def loss(self, params, batch, key, step):
        pred = batch["x"] @ params["dense"]["kernel"] + params["dense"]["bias"]
        mse = jnp.mean((pred - batch["y"]) ** 2)
        return mse, {"mse": mse}


def _batch():
    x = np.random.default_rng(0).normal(size=(16, 3)).astype(np.float32)
    w = np.array([[1.0, -1.0], [0.5, 2.0], [0.0, 1.0]], np.float32)
    return {"x": x, "y": x @ w + 0.3}


def test_cosine_schedule_matches_hand_computed_values():
    cfg = train_config(lr=1e-3, warmup_steps=10, num_steps=110, final_lr_ratio=0.1, lr_schedule="cosine")
    sched = state_lib.make_lr_schedule(cfg)
    # warmup: lr * step / 10; cosine over steps 10..110 from 1e-3 to 1e-4.
    expected = {0: 0.0, 5: 5e-4, 10: 1e-3, 60: 1e-4 + 9e-4 * 0.5, 35: 1e-4 + 9e-4 * 0.5 * (1 + math.cos(math.pi / 4)),
                110: 1e-4, 500: 1e-4}
    for step, lr in expected.items():
        np.testing.assert_allclose(float(sched(step)), lr, rtol=1e-5, atol=1e-10, err_msg=f"step {step}")


def test_constant_schedule_and_bad_names():
    sched = state_lib.make_lr_schedule(train_config(lr=2e-4, warmup_steps=4, lr_schedule="constant"))
    assert [round(float(sched(s)), 9) for s in (0, 2, 4, 1000)] == [0.0, 1e-4, 2e-4, 2e-4]
    with pytest.raises(ValueError, match="lr_schedule"):
        state_lib.make_lr_schedule(train_config(lr_schedule="linear"))
    with pytest.raises(ValueError, match="optimizer"):
        state_lib.make_optimizer(train_config(optimizer="sgd"))


def test_weight_decay_mask_and_effect():
    params = {"conv": {"kernel": jnp.ones((3, 4, 5)), "bias": jnp.ones((5,))},
              "norm": {"scale": jnp.ones((5,)), "bias": jnp.ones((5,))},
              "null_clap": jnp.ones((8,)), "dense": {"kernel": jnp.ones((4, 4))}}
    mask = state_lib.weight_decay_mask(params)
    assert mask == {"conv": {"kernel": True, "bias": False}, "norm": {"scale": False, "bias": False},
                    "null_clap": False, "dense": {"kernel": True}}
    # Zero gradients: Adam's step is exactly 0, so only decoupled decay moves the weights: p *= 1 - lr*wd.
    cfg = train_config(lr=0.1, warmup_steps=0, lr_schedule="constant", weight_decay=0.5, grad_clip=1.0)
    opt = state_lib.make_optimizer(cfg)
    updates, _ = opt.update(jax.tree.map(jnp.zeros_like, params), opt.init(params), params)
    new = jax.tree.map(lambda p, u: p + u, params, updates)
    np.testing.assert_allclose(new["conv"]["kernel"], 1 - 0.1 * 0.5, rtol=1e-6)
    np.testing.assert_allclose(new["dense"]["kernel"], 0.95, rtol=1e-6)
    for leaf in (new["conv"]["bias"], new["norm"]["scale"], new["norm"]["bias"], new["null_clap"]):
        np.testing.assert_array_equal(leaf, 1.0)


def test_ema_closed_form():
    # Constant params p, start e0: after n updates ema = p + d^n (e0 - p).
    e0, p, d = {"w": jnp.full((2,), 3.0)}, {"w": jnp.full((2,), 1.0)}, 0.9
    ema = e0
    for _ in range(5):
        ema = state_lib.ema_update(ema, p, d)
    np.testing.assert_allclose(ema["w"], 1.0 + 0.9**5 * 2.0, rtol=1e-6)


@pytest.mark.parametrize("optimizer", ["adamw", "radam"])
def test_train_step_learns_and_tracks_ema(optimizer):
    task = LinearTask(lr=0.2, warmup_steps=2, num_steps=100, lr_schedule="cosine", optimizer=optimizer,
                      ema_decay=0.8, weight_decay=1e-4)
    state = state_lib.create_train_state(task, jax.random.key(0))
    assert int(state.step) == 0
    step_fn = jax.jit(lambda s, b: state_lib.train_step(task, s, b))
    batch = _batch()
    sched = state_lib.make_lr_schedule(task.config.train)
    ema_ref = jax.tree.map(np.asarray, state.params)
    losses = []
    for i in range(100):
        state, metrics = step_fn(state, batch)
        assert set(metrics) >= {"loss", "grad_norm", "lr", "mse"}
        np.testing.assert_allclose(float(metrics["lr"]), float(sched(i)), rtol=1e-5)
        ema_ref = jax.tree.map(lambda e, p: 0.8 * e + 0.2 * np.asarray(p), ema_ref, state.params)
        losses.append(float(metrics["loss"]))
    assert int(state.step) == 100
    print(f"{optimizer}: loss {losses[0]:.3f} -> {losses[-1]:.3f}")
    assert losses[-1] < 0.3 * losses[0]  # RAdam warms its moments up slowly
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6), state.ema_params, ema_ref)
