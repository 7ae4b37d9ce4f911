"""MMD^2 against closed-form expectations for Gaussian data and brute-force reference computations.

Closed forms (derived for this test, not taken from the code under test): for independent
x ~ N(a, A), y ~ N(b, B) in d dims and s = x.y,
    E s   = a.b
    E s^2 = tr(AB) + a'Ba + b'Ab + (a.b)^2
    E s^3 = (a.b)^3 + 3 (a.b) a'Ba + 3 [(a.b)(b'Ab + tr(AB)) + 2 a'BAb]
(condition on y: s | y ~ N(a.y, y'Ay), so E[s^3 | y] = m^3 + 3 m v; then take moments of y), hence
    E (s/d + 1)^3 = E s^3 / d^3 + 3 E s^2 / d^2 + 3 E s / d + 1.
For the RBF kernel, x - y ~ N(delta, S) with delta = a - b, S = A + B, and
    E exp(-|x-y|^2 / (2h^2)) = det(I + S/h^2)^(-1/2) exp(-delta' (h^2 I + S)^(-1) delta / 2).
Population MMD^2 = E k(x, x') + E k(y, y') - 2 E k(x, y), which the unbiased estimator targets.
"""
import numpy as np
import pytest
import sklearn.metrics.pairwise as skp
from scipy.spatial.distance import pdist

from diffariff_jax.metrics.mmd import (
    median_bandwidth,
    mmd2_polynomial,
    mmd2_rbf,
    mmd2_subsets,
    mmd2_unbiased,
    polynomial_kernel,
    rbf_kernel,
)


def expected_cubic_kernel(a, A, b, B):
    d = a.shape[0]
    ab = a @ b
    es = ab
    es2 = np.trace(A @ B) + a @ B @ a + b @ A @ b + ab**2
    es3 = ab**3 + 3 * ab * (a @ B @ a) + 3 * (ab * (b @ A @ b + np.trace(A @ B)) + 2 * a @ B @ A @ b)
    return es3 / d**3 + 3 * es2 / d**2 + 3 * es / d + 1


def expected_rbf_kernel(a, A, b, B, h):
    d = a.shape[0]
    s = A + B
    delta = a - b
    quadratic = delta @ np.linalg.solve(h**2 * np.eye(d) + s, delta)
    return np.linalg.det(np.eye(d) + s / h**2) ** -0.5 * np.exp(-0.5 * quadratic)


def population_mmd2(expect, a, A, b, B, *args):
    return expect(a, A, a, A, *args) + expect(b, B, b, B, *args) - 2 * expect(a, A, b, B, *args)


D = 6
RNG = np.random.default_rng(0)
MEAN_A = np.zeros(D)
MEAN_B = np.full(D, 0.6)
_L = RNG.normal(size=(D, D)) * 0.3
COV_A = np.eye(D)
COV_B = 0.7 * np.eye(D) + _L @ _L.T


def test_kernels_match_sklearn():
    x, y = RNG.normal(size=(7, 5)), RNG.normal(size=(4, 5))
    np.testing.assert_allclose(
        polynomial_kernel(x, y), skp.polynomial_kernel(x, y, degree=3, gamma=1 / 5, coef0=1), rtol=1e-12
    )
    np.testing.assert_allclose(rbf_kernel(x, y, 1.7), skp.rbf_kernel(x, y, gamma=1 / (2 * 1.7**2)), rtol=1e-12)


def test_unbiased_estimator_matches_pair_loop():
    x, y = RNG.normal(size=(6, 3)), RNG.normal(size=(5, 3)) + 0.3
    k = lambda u, v: (u @ v / 3 + 1) ** 3  # noqa: E731
    xx = np.mean([k(x[i], x[j]) for i in range(6) for j in range(6) if i != j])
    yy = np.mean([k(y[i], y[j]) for i in range(5) for j in range(5) if i != j])
    xy = np.mean([k(x[i], y[j]) for i in range(6) for j in range(5)])
    got = mmd2_unbiased(polynomial_kernel(x, x), polynomial_kernel(y, y), polynomial_kernel(x, y))
    assert got == pytest.approx(xx + yy - 2 * xy, rel=1e-12)


def test_polynomial_same_distribution_near_zero_and_shift_matches_closed_form():
    rng = np.random.default_rng(1)
    n = 3000
    x = rng.multivariate_normal(MEAN_A, COV_A, n)
    x2 = rng.multivariate_normal(MEAN_A, COV_A, n)
    y = rng.multivariate_normal(MEAN_B, COV_B, n)
    expected = population_mmd2(expected_cubic_kernel, MEAN_A, COV_A, MEAN_B, COV_B)
    same = mmd2_polynomial(x, x2, subset_size=1000, num_subsets=50, seed=0)
    shifted = mmd2_polynomial(x, y, subset_size=1000, num_subsets=50, seed=0)
    assert expected > 0.3
    assert abs(same) < 0.01 * expected
    assert shifted == pytest.approx(expected, rel=0.08)  # pool-to-pool std is about 4.5% here


def test_rbf_matches_closed_form_and_median_heuristic():
    rng = np.random.default_rng(2)
    n = 3000
    x = rng.multivariate_normal(MEAN_A, COV_A, n)
    x2 = rng.multivariate_normal(MEAN_A, COV_A, n)
    y = rng.multivariate_normal(MEAN_B, COV_B, n)
    h = 3.0
    expected = population_mmd2(expected_rbf_kernel, MEAN_A, COV_A, MEAN_B, COV_B, h)
    value, used = mmd2_rbf(x, y, subset_size=1000, num_subsets=50, seed=0, bandwidth=h)
    same, _ = mmd2_rbf(x, x2, subset_size=1000, num_subsets=50, seed=0, bandwidth=h)
    assert used == h
    assert value == pytest.approx(expected, rel=0.05)
    assert abs(same) < 0.02 * expected
    small_x, small_y = x[:40], y[:30]
    assert median_bandwidth(small_x, small_y) == pytest.approx(np.median(pdist(np.concatenate([small_x, small_y]))))
    assert mmd2_rbf(small_x, small_y, subset_size=20, num_subsets=3)[1] == pytest.approx(
        median_bandwidth(small_x, small_y)
    )


def test_whole_set_and_per_subset_routes_agree_and_seed_is_deterministic():
    x, y = RNG.normal(size=(30, 4)), RNG.normal(size=(25, 4)) + 0.2
    # One subset is cheaper per subset; twenty are cheaper through whole-set kernels. The first draw
    # is identical in both, so their first values must agree.
    one = mmd2_subsets(x, y, polynomial_kernel, 10, 1, seed=3)
    many = mmd2_subsets(x, y, polynomial_kernel, 10, 20, seed=3)
    assert one[0] == pytest.approx(many[0], rel=1e-10)
    assert np.array_equal(many, mmd2_subsets(x, y, polynomial_kernel, 10, 20, seed=3))
    assert not np.array_equal(many, mmd2_subsets(x, y, polynomial_kernel, 10, 20, seed=4))


def test_refuses_small_sets_and_mismatched_dims():
    x, y = RNG.normal(size=(50, 4)), RNG.normal(size=(80, 4))
    with pytest.raises(ValueError, match=r"subset_size 60 is larger than the sets \(x has 50 samples, y has 80\)"):
        mmd2_polynomial(x, y, subset_size=60)
    with pytest.raises(ValueError, match=r"embedding dims differ \(x has 4, y has 5\)"):
        mmd2_polynomial(x, RNG.normal(size=(80, 5)), subset_size=10)
    with pytest.raises(ValueError, match="bandwidth must be positive"):
        mmd2_rbf(x, y, subset_size=10, bandwidth=-1.0)
    with pytest.raises(ValueError, match="NaN"):
        mmd2_polynomial(np.full((50, 4), np.nan), y, subset_size=10)
