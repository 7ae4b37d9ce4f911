"""EDM equations against independently computed values: preconditioning, loss weight, noise levels,
conditioning dropout, and the denoiser wrapper around a zero-output backbone."""
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.ldm import get_config
from diffariff_jax.diffusion import edm


def test_precond_hand_values_at_sigma_data():
    # sigma = sd = 0.5: c_skip = 1/2, c_out = 0.25/sqrt(0.5), c_in = 1/sqrt(0.5), c_noise = ln(0.5)/4.
    c = edm.precond(jnp.float32(0.5), 0.5)
    np.testing.assert_allclose([c.c_skip, c.c_out, c.c_in, c.c_noise],
                               [0.5, 0.3535533906, 1.4142135624, -0.1732867951], rtol=1e-6)
    np.testing.assert_allclose(edm.loss_weight(jnp.float32(0.5), 0.5), 8.0, rtol=1e-6)


@pytest.mark.parametrize("sigma", [0.002, 0.1, 1.0, 80.0])
def test_precond_matches_float64_formulas(sigma):
    sd = 0.5
    c = edm.precond(jnp.float32(sigma), sd)
    ref = dict(c_skip=sd**2 / (sigma**2 + sd**2), c_out=sigma * sd / math.sqrt(sigma**2 + sd**2),
               c_in=1 / math.sqrt(sigma**2 + sd**2), c_noise=math.log(sigma) / 4)
    for name, value in ref.items():
        np.testing.assert_allclose(float(getattr(c, name)), value, rtol=1e-5, err_msg=name)
    # The weight makes the loss on F unit-weighted: lambda * c_out^2 = 1 at every sigma.
    np.testing.assert_allclose(float(edm.loss_weight(jnp.float32(sigma), sd) * c.c_out**2), 1.0, rtol=1e-5)


def test_training_sigmas_are_log_normal():
    sigma = edm.sample_sigma(jax.random.key(0), (40000,), p_mean=-1.2, p_std=1.2)
    log_sigma = np.log(np.asarray(sigma))
    assert abs(log_sigma.mean() + 1.2) < 0.03 and abs(log_sigma.std() - 1.2) < 0.03


def test_conditioning_dropout_is_independent_and_zeroes_context():
    batch = 20000
    context = jnp.ones((batch, 2, 3))
    dropped_ctx, clap_dropped = edm.drop_conditioning(jax.random.key(1), context, batch, 0.5, 0.5)
    ctx_dropped = np.asarray(dropped_ctx[:, 0, 0] == 0)
    per_example = np.asarray(dropped_ctx).reshape(batch, -1)
    assert np.all((per_example == 0).all(1) | (per_example == 1).all(1))  # whole examples dropped
    clap_dropped = np.asarray(clap_dropped)
    assert abs(ctx_dropped.mean() - 0.5) < 0.02 and abs(clap_dropped.mean() - 0.5) < 0.02
    assert abs((ctx_dropped & clap_dropped).mean() - 0.25) < 0.02  # independent
    none_dropped, _ = edm.drop_conditioning(jax.random.key(2), context, batch, 0.0, 0.0)
    np.testing.assert_array_equal(none_dropped, context)


@pytest.fixture(scope="module")
def tiny_denoiser():
    config = get_config("tiny")
    denoiser = edm.Denoiser.from_config(config)
    return config, denoiser, jax.jit(denoiser.init, static_argnums=1)(jax.random.key(0), 8)


def test_fresh_denoiser_is_c_skip_times_input(tiny_denoiser):
    # The backbone's output layer starts at zero, so D(x; sigma) = c_skip(sigma) x exactly.
    config, denoiser, params = tiny_denoiser
    x = jax.random.normal(jax.random.key(3), (3, 8, 64))
    sigma = jnp.array([0.1, 0.5, 10.0])
    out = jax.jit(lambda p, x, s: denoiser(p, x, s, context=x, clap=jnp.zeros((3, 32)),
                                           clap_dropped=jnp.array([True, False, True])))(params, x, sigma)
    c_skip = 0.25 / (np.asarray(sigma) ** 2 + 0.25)
    np.testing.assert_allclose(out, c_skip[:, None, None] * np.asarray(x), rtol=1e-5, atol=1e-6)


def test_edm_loss_of_fresh_denoiser(tiny_denoiser):
    # With F = 0 and target y = 0: D = c_skip sigma n, so the weighted per-example loss is
    # lambda c_skip^2 sigma^2 E[n^2] = sd^2 / (sigma^2 + sd^2), averaged over the log-normal sigma law.
    config, denoiser, params = tiny_denoiser
    batch = 256
    target = jnp.zeros((batch, 8, 64))
    loss, metrics = jax.jit(lambda p, k: edm.edm_loss(denoiser, p, k, target, target, jnp.zeros((batch, 32)),
                                                      config.diffusion))(params, jax.random.key(4))
    sigma = np.exp(-1.2 + 1.2 * np.random.default_rng(0).normal(size=400000))
    expected = np.mean(0.25 / (sigma**2 + 0.25))  # Monte Carlo over the log-normal sigma law
    assert abs(float(loss) - expected) < 0.08, (float(loss), expected)
    assert float(metrics["denoise_mse"]) > 0


def _perturbed(params, seed=7, scale=0.05):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(seed), len(leaves))
    return jax.tree.unflatten(tree, [p + scale * jax.random.normal(k, p.shape) for p, k in zip(leaves, keys)])


def test_conditioning_losses_equal_training_loss_with_each_dropout_fixed(tiny_denoiser):
    # edm_loss with dropout probabilities 0 or 1 is the training path with the pattern forced; the
    # validation patterns must reproduce it on the same key (same sigmas and noise), pattern by pattern.
    config, denoiser, params = tiny_denoiser
    params = _perturbed(params)  # the output layer starts at zero: make the conditioning matter
    k = jax.random.key(5)
    target, context = jax.random.normal(k, (2, 4, 8, 64))
    clap = jax.random.normal(jax.random.key(6), (4, 32))
    losses = jax.jit(lambda p: edm.conditioning_losses(denoiser, p, jax.random.key(9), target, context, clap,
                                                       config.diffusion))(params)
    for name, (keep_context, keep_clap) in edm.CONDITIONING_PATTERNS.items():
        cfg = config.diffusion.copy_and_resolve_references()
        cfg.context_dropout, cfg.clap_dropout = float(not keep_context), float(not keep_clap)
        train, _ = jax.jit(lambda p: edm.edm_loss(denoiser, p, jax.random.key(9), target, context, clap, cfg))(params)
        np.testing.assert_allclose(float(jnp.mean(losses[name])), float(train), rtol=1e-5, err_msg=name)
    assert losses["context_clap"].shape == (4,)
    assert float(jnp.abs(losses["context_clap"] - losses["clap_only"]).max()) > 1e-6  # the context is used


class _CopyContext:
    """A denoiser that returns its context: perfect when the target is the context, useless without it."""

    def __call__(self, params, x, sigma, *, context, clap, clap_dropped):
        return context


def test_conditioning_losses_show_a_context_that_helps():
    config = get_config("tiny")
    target = jax.random.normal(jax.random.key(1), (3, 8, 64))
    losses = edm.conditioning_losses(_CopyContext(), None, jax.random.key(2), target, target,
                                     jnp.zeros((3, 32)), config.diffusion)
    np.testing.assert_allclose(losses["context_clap"], 0.0)
    np.testing.assert_allclose(losses["context_only"], 0.0)
    # without the context the estimate is 0: the weighted loss is lambda(sigma) * mean(target^2) > 0
    assert float(jnp.min(losses["clap_only"])) > 0.5 and float(jnp.min(losses["unconditional"])) > 0.5
