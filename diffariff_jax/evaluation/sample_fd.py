"""Frechet distance and APA of few embeddings in many dimensions, from the samples' Gram matrices.

The report's sets hold n examples of a d-dimensional CLAP (n = 6..256, d = 512), and the bootstrap
computes four Frechet distances per resample and system. metrics.fad decomposes d x d covariances
(two eigendecompositions of 512 x 512 each); with n < d the covariances have rank < n, and the same
number comes from an n x m matrix. With centred samples X [n, d], Y [m, d] and S_x = X^T X / (n - 1):
    tr(S_x) = ||X||_F^2 / (n - 1)
    tr((S_x S_y)^(1/2)) = sum of the singular values of X Y^T / sqrt((n - 1)(m - 1))
since the nonzero eigenvalues of X^T X Y^T Y are those of (X Y^T)(X Y^T)^T. This is exact, not an
approximation; with n + m > d the dense route (metrics.fad) is cheaper and is used instead.
    FD(x, y) = ||mu_x - mu_y||^2 + tr(S_x) + tr(S_y) - 2 tr((S_x S_y)^(1/2))
    APA = 1/2 + (FD(C, R') - FD(C, R)) / (2 FD(R, R')), clipped to [0, 1]   (metrics/apa.py)
"""
from __future__ import annotations

import numpy as np

from diffariff_jax import metrics


def fad(x: np.ndarray, y: np.ndarray, imag_tol: float = 1e-3) -> float:
    """Frechet distance between Gaussian fits of x: [n, dim] and y: [m, dim] (n, m >= 2)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    n, m, dim = x.shape[0], y.shape[0], x.shape[1]
    if n + m > dim or n < 2 or m < 2 or y.shape[1] != dim or not (np.isfinite(x).all() and np.isfinite(y).all()):
        return metrics.fad(x, y, imag_tol)  # also its one-line errors for bad input
    mu_x, mu_y = x.mean(axis=0), y.mean(axis=0)
    xc, yc = x - mu_x, y - mu_y
    trace_sqrt = np.linalg.svd(xc @ yc.T, compute_uv=False).sum() / np.sqrt((n - 1) * (m - 1))
    diff = mu_x - mu_y
    fd = diff @ diff + np.sum(xc * xc) / (n - 1) + np.sum(yc * yc) / (m - 1) - 2.0 * trace_sqrt
    return max(float(fd), 0.0)  # the exact value is >= 0; below it is cancellation error


def apa(candidate: np.ndarray, matching: np.ndarray, mismatched: np.ndarray, imag_tol: float = 1e-3) -> float:
    """APA of candidate mixes C against matching R and mismatched R' ([n_*, dim] each), as metrics.apa."""
    fd_r_rp = fad(matching, mismatched, imag_tol)
    if fd_r_rp <= 0.0:
        return metrics.apa(candidate, matching, mismatched, imag_tol)["apa"]  # its error for this case
    score = 0.5 + (fad(candidate, mismatched, imag_tol) - fad(candidate, matching, imag_tol)) / (2.0 * fd_r_rp)
    return float(np.clip(score, 0.0, 1.0))
