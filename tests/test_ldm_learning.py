"""The LDM task: interface, bad batches, and learning -- the tiny model trained on CPU for a fixed
number of steps generates targets closer to the truth with the context than without it."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.ldm import get_config
from diffariff_jax.diffusion import samplers
from diffariff_jax.models.unet1d_cost import unet1d_cost
from diffariff_jax.training import state as state_lib
from diffariff_jax.training.ldm_task import LdmTask

TRAIN_STEPS = 300
LATENT_RANK = 8  # synthetic latents live in an 8-d subspace, like correlated real latent channels


def _synthetic_task(seed):
    """Batches where target[t] = B z[t-1] and context[t] = A z[t]: a fixed (shifted, mixed, scaled)
    function of the context. CLAP is an uninformative random unit vector."""
    g = np.random.default_rng(123)
    mix_ctx = (g.normal(size=(LATENT_RANK, 64)) / np.sqrt(LATENT_RANK)).astype(np.float32)
    mix_tgt = (0.8 * g.normal(size=(LATENT_RANK, 64)) / np.sqrt(LATENT_RANK)).astype(np.float32)
    rng = np.random.default_rng(seed)

    def batch(size, frames):
        z = rng.normal(size=(size, frames, LATENT_RANK)).astype(np.float32)
        clap = rng.normal(size=(size, 32)).astype(np.float32)
        return {"target": np.roll(z, 1, axis=1) @ mix_tgt, "context": z @ mix_ctx,
                "clap": clap / np.linalg.norm(clap, axis=-1, keepdims=True)}

    return batch


def test_task_interface():
    config = get_config("tiny")
    task = LdmTask(config)
    batch = task.dummy_batch(3)
    assert {k: v.shape for k, v in batch.items()} == {"target": (3, 16, 64), "context": (3, 16, 64),
                                                      "clap": (3, 32)}
    assert all(v.dtype == np.float32 and not v.any() for v in batch.values())
    assert task.flops_per_example() == 3 * unet1d_cost(config.model, 16).flops
    config.kind = "cae"
    with pytest.raises(ValueError, match="needs an ldm config"):
        LdmTask(config)


@pytest.mark.parametrize("change, match", [
    (lambda b: b.pop("clap"), "missing clap"),
    (lambda b: b.update(target=b["target"][..., :32], context=b["context"][..., :32]),
     r"batch\['target'\] must be \[batch, frames, 64\]"),
    (lambda b: b.update(context=b["context"][:1]), r"batch\['context'\] \(1, 16, 64\) must match"),
    (lambda b: b.update(clap=b["clap"][:, :5]), r"batch\['clap'\] must be \[2, 32\]"),
])
def test_bad_batches_raise_clear_errors(change, match):
    task = LdmTask(get_config("tiny"))
    params = jax.eval_shape(task.init_params, jax.random.key(0))
    batch = task.dummy_batch(2)
    change(batch)
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(task.loss, params, batch, jax.random.key(0), 0)


def test_tiny_model_learns_to_use_the_context():
    config = get_config("tiny")
    config.train.update(lr=2e-3, warmup_steps=20, num_steps=TRAIN_STEPS, batch_size=16)
    config.sampler.steps = 20
    task = LdmTask(config)
    frames = config.data.crop_frames
    make_batch = _synthetic_task(seed=0)
    state = state_lib.create_train_state(task, jax.random.key(0))
    step = jax.jit(lambda s, b: state_lib.train_step(task, s, b), donate_argnums=0)
    losses = []
    for _ in range(TRAIN_STEPS):
        state, metrics = step(state, make_batch(16, frames))
        losses.append(float(metrics["loss"]))
    assert np.mean(losses[-30:]) < 0.75 * np.mean(losses[:30])

    held_out = _synthetic_task(seed=1)(32, frames)
    errors = {}
    for name, w_ctx in (("with context", 1.0), ("without context", 0.0)):
        # cfg_context = 0 reduces the guided denoiser to D(0, null): the same program, no context used.
        x = samplers.sample(task.denoiser, state.ema_params, jax.random.key(5), num_frames=frames,
                            sampler_cfg=config.sampler, context=held_out["context"], cfg_context=w_ctx)
        errors[name] = float(jnp.mean((x - held_out["target"]) ** 2))
    ratio = errors["with context"] / errors["without context"]
    print(f"learning: MSE to truth {errors}, ratio {ratio:.3f} after {TRAIN_STEPS} steps")
    assert ratio < 0.6
    # the validation losses the trainer logs tell the same story on shared noise
    val = jax.jit(task.eval_metrics)(state.ema_params, held_out, jax.random.key(6))
    assert float(val["loss_context_clap"]) < 0.92 * float(val["loss_clap_only"]), val
    assert float(val["loss_context_only"]) < 0.92 * float(val["loss_unconditional"]), val
