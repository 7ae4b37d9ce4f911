"""Consistency-model maths of the CAE decoder: boundary condition, rho grid, gap schedule, level
sampling, pseudo-Huber loss and few-step sampling, against closed forms computed here."""
import jax
import jax.numpy as jnp
import numpy as np
from scipy.stats import norm

from diffariff_jax.diffusion.consistency import Consistency

C = Consistency()


def grid_sigma(u):  # independent closed form of the rho = 7 grid
    return (0.002 ** (1 / 7) + u * (80 ** (1 / 7) - 0.002 ** (1 / 7))) ** 7


def test_boundary_condition_is_exact():
    c_skip, c_out, c_in = C.scalings(jnp.asarray([0.002]))
    assert float(c_skip[0]) == 1.0 and float(c_out[0]) == 0.0
    np.testing.assert_allclose(float(c_in[0]), 1 / np.sqrt(0.002**2 + 0.25), rtol=1e-6)
    x = jax.random.normal(jax.random.PRNGKey(0), (3, 8, 4, 2)) * 5
    f = C.precondition(lambda x_in, sigma: jnp.sin(x_in * 7.0) * 100.0 + 3.0)
    np.testing.assert_array_equal(np.asarray(f(x, jnp.full((3,), 0.002))), np.asarray(x))


def test_scalings_match_spec_formulas():
    s = np.array([0.01, 0.5, 3.0, 80.0])
    c_skip, c_out, c_in = (np.asarray(v) for v in C.scalings(jnp.asarray(s)))
    np.testing.assert_allclose(c_skip, 0.25 / ((s - 0.002) ** 2 + 0.25), rtol=1e-6)
    np.testing.assert_allclose(c_out, 0.5 * (s - 0.002) / np.sqrt(0.25 + s**2), rtol=1e-6)
    np.testing.assert_allclose(c_in, 1 / np.sqrt(s**2 + 0.25), rtol=1e-6)


def test_grid_and_sampling_levels():
    np.testing.assert_allclose(float(C.sigma_at(0.0)), 0.002, rtol=1e-5)
    np.testing.assert_allclose(float(C.sigma_at(1.0)), 80.0, rtol=1e-5)
    np.testing.assert_allclose(C.sampling_sigmas(1), [80.0], rtol=1e-5)
    # Music2Latent's k-step decode visits get_sigma(k + 1 - j, k + 1) = grid((k - j) / k), j = 0..k-1
    np.testing.assert_allclose(C.sampling_sigmas(3), grid_sigma(np.array([1.0, 2 / 3, 1 / 3])), rtol=1e-5)


def test_gap_schedule_shrinks_geometrically():
    gaps = [float(C.gap(s, 1000)) for s in (0, 500, 1000, 5000)]
    np.testing.assert_allclose(gaps, [0.1, 0.01, 0.001, 0.001], rtol=1e-5)


def test_level_sampling_follows_lognormal_on_the_grid():
    n = 20000
    hi, lo = C.sample_levels(jax.random.PRNGKey(1), jnp.asarray(0), 100, n)  # step 0: gap 0.1, N = 10
    grid = grid_sigma(np.arange(11) / 10)
    idx = np.argmin(np.abs(np.log(np.asarray(hi))[:, None] - np.log(grid)[None]), axis=1)
    np.testing.assert_allclose(np.asarray(hi), grid[idx], rtol=1e-4)
    np.testing.assert_allclose(np.asarray(lo), grid[idx - 1], rtol=1e-4)
    assert idx.min() >= 1
    cdf = norm.cdf((np.log(grid) - (-1.1)) / 2.0)
    expected = np.diff(cdf) / (cdf[-1] - cdf[0])
    observed = np.bincount(idx, minlength=11)[1:] / n
    np.testing.assert_allclose(observed, expected, atol=0.01)


def test_loss_is_weighted_pseudo_huber():
    x = jax.random.normal(jax.random.PRNGKey(2), (6, 16, 8, 2))
    key, step = jax.random.PRNGKey(3), jnp.asarray(0)
    # f = identity on the noisy input: student - target = (sigma_hi - sigma_lo) z exactly
    loss, metrics = C.loss(lambda x_noisy, sigma: x_noisy, x, key, step, 100)
    level_key, noise_key = jax.random.split(key)
    hi, lo = (np.asarray(v, np.float64) for v in C.sample_levels(level_key, step, 100, 6))
    z = np.asarray(jax.random.normal(noise_key, x.shape), np.float64)
    c = 0.00054 * np.sqrt(16 * 8 * 2)
    dist = np.sqrt((hi - lo) ** 2 * np.sum(z.reshape(6, -1) ** 2, axis=1) + c**2) - c
    np.testing.assert_allclose(float(loss), np.mean(dist / (hi - lo)), rtol=2e-4)
    np.testing.assert_allclose(float(metrics["distance"]), np.mean(dist), rtol=2e-4)


def test_loss_gradient_flows_only_through_the_student():
    x = jnp.ones((2, 4, 4, 2))

    def loss_of(w):
        return C.loss(lambda x_noisy, sigma: w * x_noisy, x, jax.random.PRNGKey(0), jnp.asarray(0), 10)[0]

    w = 1.3
    eps = 1e-3
    grad = float(jax.grad(loss_of)(w))
    # finite difference of the same loss with the target frozen at w
    level_key, noise_key = jax.random.split(jax.random.PRNGKey(0))
    hi, lo = C.sample_levels(level_key, jnp.asarray(0), 10, 2)
    z = jax.random.normal(noise_key, x.shape)
    target = w * (x + lo[:, None, None, None] * z)

    def frozen(v):
        student = v * (x + hi[:, None, None, None] * z)
        return jnp.mean(C.pseudo_huber(student, target) / (hi - lo))

    np.testing.assert_allclose(grad, (float(frozen(w + eps)) - float(frozen(w - eps))) / (2 * eps), rtol=2e-2)


def test_few_step_sampling_visits_the_grid_and_renoises():
    seen = []

    def f(x, sigma):
        seen.append((float(sigma[0]), float(jnp.std(x))))
        return jnp.zeros_like(x) + 0.25

    out = C.sample(f, jax.random.PRNGKey(0), (2, 64, 64, 2), steps=3)
    np.testing.assert_allclose(np.asarray(out), 0.25)
    sigmas = [s for s, _ in seen]
    np.testing.assert_allclose(sigmas, C.sampling_sigmas(3), rtol=1e-6)
    # the first input is N(0, 80^2); later ones are 0.25 + sqrt(sigma^2 - sigma_min^2) z
    np.testing.assert_allclose(seen[0][1], 80.0, rtol=0.05)
    np.testing.assert_allclose(seen[1][1], np.sqrt(sigmas[1] ** 2 - 0.002**2), rtol=0.05)
