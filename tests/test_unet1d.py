"""DDPM++ 1-D UNet: size of `paper`, any frame count, mixed precision, CLAP null embedding, bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.ldm import get_config
from diffariff_jax.models.unet1d import UNet1D
from diffariff_jax.models.unet1d_cost import unet1d_cost


def _inputs(batch, frames, clap_dim, seed=0):
    k = jax.random.split(jax.random.key(seed), 4)
    return (jax.random.normal(k[0], (batch, frames, 64)), jnp.linspace(-1.0, 1.0, batch),
            jax.random.normal(k[1], (batch, frames, 64)), jax.random.normal(k[2], (batch, clap_dim)),
            jnp.zeros((batch,), bool))


def _random_params(model):
    """Random params built on the host from the init shapes (no init compile, and no zero-initialised
    output layers hiding the inputs): kernels ~ N(0, 1/fan_in), norm scales ~ 1, biases small."""
    shapes = jax.eval_shape(model.init, jax.random.key(0), *_inputs(1, 16, model.clap_dim))["params"]
    rng = np.random.default_rng(0)

    def make(path, leaf):
        name = path[-1].key
        if name == "kernel":
            fan_in = int(np.prod(leaf.shape[:-1]))
            return rng.normal(0.0, fan_in**-0.5, leaf.shape).astype(np.float32)
        base = 1.0 if name == "scale" else 0.0
        return (base + 0.1 * rng.normal(size=leaf.shape)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(make, shapes)


@pytest.fixture(scope="module")
def tiny():
    """(jitted apply of the tiny UNet, perturbed params); jit keeps the CPU test time low."""
    model = UNet1D.from_config(get_config("tiny").model)
    return model, jax.jit(model.apply), _random_params(model)


def test_paper_param_count_without_allocation():
    cfg = get_config("paper")
    model = UNet1D.from_config(cfg.model, cfg.train.compute_dtype)
    shapes = jax.eval_shape(lambda k: model.init(k, *_inputs(1, 117, 512)), jax.random.key(0))
    count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes))
    print(f"paper UNet1D parameters: {count:,}")
    assert 0.5e9 <= count <= 0.7e9
    assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(shapes))
    assert count == unet1d_cost(cfg.model, 117).params  # the analytic count used by benchmarks/ldm_size.py


def test_any_frame_count_is_padded_and_cropped(tiny):
    model, apply, params = tiny
    out = apply({"params": params}, *_inputs(2, 13, model.clap_dim))  # 13 -> padded to 14 inside
    assert out.shape == (2, 13, 64) and out.dtype == jnp.float32
    assert bool(jnp.all(jnp.isfinite(out)))
    assert float(jnp.std(out)) > 0


def test_bfloat16_compute_keeps_float32_params_and_output(tiny):
    model, apply, params = tiny
    bf16 = UNet1D.from_config(get_config("tiny").model, "bfloat16")
    fresh = jax.eval_shape(bf16.init, jax.random.key(0), *_inputs(1, 16, model.clap_dim))["params"]
    assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(fresh))
    args = _inputs(2, 16, model.clap_dim)
    out16 = jax.jit(bf16.apply)({"params": params}, *args)
    out32 = apply({"params": params}, *args)
    assert out16.dtype == jnp.float32
    rel = float(jnp.linalg.norm(out16 - out32) / jnp.linalg.norm(out32))
    assert 0 < rel < 0.05  # bf16 rounding, not a different function


def test_dropped_clap_uses_the_null_embedding(tiny):
    model, apply, params = tiny
    x, c_noise, ctx, clap, _ = _inputs(2, 16, model.clap_dim)
    other = clap[::-1] * 3.0
    dropped, kept = jnp.ones((2,), bool), jnp.zeros((2,), bool)
    run = lambda a, d: apply({"params": params}, x, c_noise, ctx, a, d)  # noqa: E731
    np.testing.assert_allclose(run(clap, dropped), run(other, dropped), atol=1e-6)
    assert float(jnp.abs(run(clap, kept) - run(other, kept)).max()) > 1e-3
    # The null embedding is its own learned parameter, not the MLP of a zero vector.
    assert params["null_clap"].shape == (model.noise_channels_mult * model.channels,)


def test_conditioning_reaches_every_block(tiny):
    model, apply, params = tiny
    args = _inputs(2, 16, model.clap_dim)
    reference = apply({"params": params}, *args)
    blocks = [name for name, sub in params.items() if isinstance(sub, dict) and "affine" in sub]
    assert len(blocks) == 10  # tiny: 3 encoder, 2 middle, 5 decoder residual blocks
    for name in blocks:  # cutting one block's embedding input changes the output
        cut = {**params, name: {**params[name], "affine": jax.tree.map(jnp.zeros_like, params[name]["affine"])}}
        assert float(jnp.abs(apply({"params": cut}, *args) - reference).max()) > 1e-4, name


@pytest.mark.parametrize("which, match", [
    ("width", r"noisy latents must be \[batch, frames, 64\]"),
    ("context", "context latents must match"),
    ("clap", r"clap must be \[batch=2, 32\]"),
    ("noise", r"noise level must be \[batch=2\]"),
])
def test_bad_inputs_raise_clear_errors(tiny, which, match):
    model, _, params = tiny
    x, c_noise, ctx, clap, dropped = _inputs(2, 16, model.clap_dim)
    if which == "width":
        x = x[..., :32]
    elif which == "context":
        ctx = ctx[:1]
    elif which == "clap":
        clap = clap[:, :8]
    else:
        c_noise = c_noise[:1]
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(model.apply, {"params": params}, x, c_noise, ctx, clap, dropped)
