"""Frechet distance between Gaussian fits of two embedding sets (FAD when the embeddings are audio).

    FD = |mu_a - mu_b|^2 + tr(S_a) + tr(S_b) - 2 tr((S_a S_b)^(1/2))

The trace term is computed as tr(sqrt(M)) with the symmetric M = sqrt(S_a) S_b sqrt(S_a), which has the
same eigenvalues as S_a S_b. Both square roots come from `eigh` of symmetric positive semi-definite
matrices, so rank-deficient covariances (fewer samples than dimensions) are fine: their zero
eigenvalues stay zero instead of feeding a general `sqrtm` that can return NaN or complex junk.
Eigenvalues within rounding noise of zero (|w| <= dim * eps * max|w|) are set to exactly zero, since
sqrt(1e-16) = 1e-8 would otherwise add visible error. Eigenvalues of M clearly below zero would have
imaginary square roots (the "imaginary part" a complex `sqrtm` reports): we drop that part when it is
tiny relative to the real part and raise when it is not, so the result is always a finite real float.
"""
from __future__ import annotations

import numpy as np

from diffariff_jax.metrics.checks import check_embeddings, check_same_dim


def gaussian_fit(x: np.ndarray, name: str = "embeddings") -> tuple[np.ndarray, np.ndarray]:
    """x: [n, dim] -> (mean [dim], unbiased covariance [dim, dim]) in float64; needs n >= 2."""
    x = check_embeddings(x, name, "fad", min_samples=2)
    return x.mean(axis=0), np.cov(x, rowvar=False, ddof=1).reshape(x.shape[1], x.shape[1])


def _rounding_floor(eig: np.ndarray) -> float:
    """Eigenvalues with magnitude below this are rounding noise: exact zeros of a rank-deficient matrix.

    Their square roots (about 1e-8 for noise of 1e-16) would otherwise add up to visible error.
    """
    return float(eig.shape[0] * np.finfo(np.float64).eps * np.abs(eig).max(initial=0.0))


def _psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric PSD matrix; negative rounding eigenvalues are set to 0."""
    w, v = np.linalg.eigh((sigma + sigma.T) / 2)
    w[w <= _rounding_floor(w)] = 0.0
    return (v * np.sqrt(w)) @ v.T


def trace_sqrt_product(sigma_a: np.ndarray, sigma_b: np.ndarray, imag_tol: float = 1e-3) -> float:
    """tr((S_a S_b)^(1/2)) for symmetric PSD S_a, S_b [dim, dim], as a real float.

    Raises ValueError when the eigenvalues of sqrt(S_a) S_b sqrt(S_a) are negative enough that the
    imaginary part of the square root exceeds `imag_tol` times its real part (the inputs are then not
    covariance matrices, or are numerically broken).
    """
    root_a = _psd_sqrt(sigma_a)
    m = root_a @ sigma_b @ root_a
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    floor = _rounding_floor(eig)
    real = float(np.sqrt(eig[eig > floor]).sum())
    imag = float(np.sqrt(-eig[eig < -floor]).sum())
    if imag > imag_tol * max(real, np.finfo(np.float64).tiny):
        raise ValueError(
            f"fad: matrix square root has a large imaginary part ({imag:.3g} vs real {real:.3g}); "
            "the covariances are not positive semi-definite"
        )
    return real


def frechet_distance(
    mu_a: np.ndarray, sigma_a: np.ndarray, mu_b: np.ndarray, sigma_b: np.ndarray, imag_tol: float = 1e-3
) -> float:
    """Frechet distance between N(mu_a, sigma_a) and N(mu_b, sigma_b); mu: [dim], sigma: [dim, dim]."""
    mu_a, mu_b = np.asarray(mu_a, np.float64), np.asarray(mu_b, np.float64)
    sigma_a, sigma_b = np.asarray(sigma_a, np.float64), np.asarray(sigma_b, np.float64)
    dim = mu_a.shape[0]
    if mu_a.shape != (dim,) or mu_b.shape != (dim,) or sigma_a.shape != (dim, dim) or sigma_b.shape != (dim, dim):
        raise ValueError(
            f"fad: shapes do not agree: mu_a {mu_a.shape}, sigma_a {sigma_a.shape}, "
            f"mu_b {mu_b.shape}, sigma_b {sigma_b.shape}"
        )
    for name, arr in (("mu_a", mu_a), ("sigma_a", sigma_a), ("mu_b", mu_b), ("sigma_b", sigma_b)):
        if not np.all(np.isfinite(arr)):
            raise ValueError(f"fad: {name} contains NaN or inf values")
    diff = mu_a - mu_b
    terms = float(diff @ diff + np.trace(sigma_a) + np.trace(sigma_b))
    fd = terms - 2.0 * trace_sqrt_product(sigma_a, sigma_b, imag_tol)
    # The exact value is >= 0. Anything within float64 rounding of the terms (negative, or about 1e-15 of
    # them for identical fits, depending on the BLAS) is cancellation error: report 0, so that callers
    # can tell identical distributions apart (apa refuses FD(R, R') = 0).
    return 0.0 if fd <= 1e-12 * terms else fd


def fad(x: np.ndarray, y: np.ndarray, imag_tol: float = 1e-3) -> float:
    """Frechet distance between Gaussian fits of x: [n, dim] and y: [m, dim] (n, m >= 2)."""
    x = check_embeddings(x, "x", "fad", min_samples=2)
    y = check_embeddings(y, "y", "fad", min_samples=2)
    check_same_dim("fad", x=x, y=y)
    return frechet_distance(*gaussian_fit(x, "x"), *gaussian_fit(y, "y"), imag_tol=imag_tol)
