"""Frechet distance against closed forms and independent computations (scipy sqrtm, a nuclear norm)."""
import numpy as np
import pytest
import scipy.linalg

from diffariff_jax.metrics.fad import fad, frechet_distance, gaussian_fit, trace_sqrt_product


def commuting_gaussians(rng, d):
    """Two Gaussians whose covariances share eigenvectors: FD = |mu_a - mu_b|^2 + sum (sqrt(a_i) - sqrt(b_i))^2."""
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    eig_a, eig_b = rng.uniform(0.2, 2.0, d), rng.uniform(0.2, 2.0, d)
    mu_a, mu_b = rng.normal(size=d), rng.normal(size=d)
    closed_form = np.sum((mu_a - mu_b) ** 2) + np.sum((np.sqrt(eig_a) - np.sqrt(eig_b)) ** 2)
    return mu_a, (q * eig_a) @ q.T, mu_b, (q * eig_b) @ q.T, closed_form


def test_exact_parameters_match_closed_form():
    mu_a, cov_a, mu_b, cov_b, closed_form = commuting_gaussians(np.random.default_rng(0), 7)
    assert frechet_distance(mu_a, cov_a, mu_b, cov_b) == pytest.approx(closed_form, rel=1e-10)


def test_non_commuting_covariances_match_scipy_sqrtm():
    rng = np.random.default_rng(1)
    la, lb = rng.normal(size=(9, 9)), rng.normal(size=(9, 9))
    cov_a, cov_b = la @ la.T + 0.1 * np.eye(9), lb @ lb.T + 0.1 * np.eye(9)
    reference = np.trace(scipy.linalg.sqrtm(cov_a @ cov_b)).real
    assert trace_sqrt_product(cov_a, cov_b) == pytest.approx(reference, rel=1e-9)


def test_samples_of_two_gaussians_approach_closed_form():
    rng = np.random.default_rng(2)
    mu_a, cov_a, mu_b, cov_b, closed_form = commuting_gaussians(rng, 4)
    x = rng.multivariate_normal(mu_a, cov_a, 20000)
    y = rng.multivariate_normal(mu_b, cov_b, 20000)
    assert fad(x, y) == pytest.approx(closed_form, rel=0.03)
    mu, cov = gaussian_fit(x)
    np.testing.assert_allclose(cov, np.cov(x.T), rtol=1e-12)
    np.testing.assert_allclose(mu, x.mean(0), rtol=1e-12)


def test_symmetric_and_zero_on_identical_sets():
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(300, 16)), rng.normal(size=(200, 16)) * 1.3 + 0.2
    assert fad(x, y) == pytest.approx(fad(y, x), rel=1e-10)
    assert fad(x, x) == pytest.approx(0.0, abs=1e-9)


def test_singular_covariance_is_finite_real_and_exact():
    # 10-dim embeddings, 8 samples each: rank-7 covariances. For S_a = A A', S_b = B B' the eigenvalues
    # of S_a S_b are the squared singular values of B'A, so tr sqrt(S_a S_b) is the nuclear norm of B'A.
    rng = np.random.default_rng(4)
    x, y = rng.normal(size=(8, 10)), rng.normal(size=(8, 10)) + 0.5
    value = fad(x, y)
    assert isinstance(value, float) and np.isfinite(value)
    a = (x - x.mean(0)).T / np.sqrt(7)
    b = (y - y.mean(0)).T / np.sqrt(7)
    nuclear = np.linalg.svd(b.T @ a, compute_uv=False).sum()
    reference = np.sum((x.mean(0) - y.mean(0)) ** 2) + np.trace(a @ a.T) + np.trace(b @ b.T) - 2 * nuclear
    assert value == pytest.approx(reference, rel=1e-9)


def test_errors_are_one_line_and_name_the_sizes():
    rng = np.random.default_rng(5)
    with pytest.raises(ValueError, match=r"fad: embedding dims differ \(x has 10, y has 12\)"):
        fad(rng.normal(size=(20, 10)), rng.normal(size=(20, 12)))
    with pytest.raises(ValueError, match="fad: y has 1 samples, need at least 2"):
        fad(rng.normal(size=(20, 10)), rng.normal(size=(1, 10)))
    with pytest.raises(ValueError, match=r"fad: x must be \[samples, dim\] embeddings, got shape \(20,\)"):
        fad(rng.normal(size=20), rng.normal(size=(20, 1)))
    with pytest.raises(ValueError, match="fad: x contains NaN"):
        fad(np.full((5, 3), np.nan), rng.normal(size=(5, 3)))
    with pytest.raises(ValueError, match="large imaginary part"):
        frechet_distance(np.zeros(3), np.eye(3), np.zeros(3), -np.eye(3))
