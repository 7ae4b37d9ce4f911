"""Unbiased squared maximum mean discrepancy (MMD^2) between two embedding sets.

    MMD^2_u = sum_{i != j} k(x_i, x_j) / (s (s-1)) + sum_{i != j} k(y_i, y_j) / (s (s-1))
              - 2 sum_{i, j} k(x_i, y_j) / s^2

computed on `num_subsets` random subsets of `subset_size` rows drawn without replacement from each set
(seeded), then averaged, the way KID is computed. The estimate is unbiased, so it can be slightly
negative when the two sets come from one distribution. Kernels: the polynomial kernel
(x.y/dim + 1)^3 of SPEC section 5 and a Gaussian RBF exp(-|x-y|^2 / (2 h^2)) whose bandwidth h is
given or set by the median heuristic (the median pairwise distance of the pooled sets).
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from diffariff_jax.metrics.checks import check_embeddings, check_same_dim

Kernel = Callable[[np.ndarray, np.ndarray], np.ndarray]


def polynomial_kernel(x: np.ndarray, y: np.ndarray, degree: int = 3, coef0: float = 1.0) -> np.ndarray:
    """(x.y / dim + coef0) ** degree for x: [n, dim], y: [m, dim] -> [n, m]."""
    return (x @ y.T / x.shape[1] + coef0) ** degree


def squared_distances(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """|x_i - y_j|^2 for x: [n, dim], y: [m, dim] -> [n, m], clipped at 0 against cancellation."""
    d2 = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    return np.maximum(d2, 0.0)


def rbf_kernel(x: np.ndarray, y: np.ndarray, bandwidth: float) -> np.ndarray:
    """exp(-|x - y|^2 / (2 bandwidth^2)) for x: [n, dim], y: [m, dim] -> [n, m]."""
    return np.exp(-squared_distances(x, y) / (2.0 * bandwidth**2))


def median_bandwidth(x: np.ndarray, y: np.ndarray, max_points: int = 1000, seed: int = 0) -> float:
    """Median pairwise Euclidean distance among the pooled rows of x and y (distinct pairs only).

    At most `max_points` pooled rows (a seeded random choice) are used, which bounds the cost at
    max_points^2 distances; the median of a thousand points is a stable enough bandwidth.
    """
    x = check_embeddings(x, "x", "mmd2_rbf", min_samples=1)
    y = check_embeddings(y, "y", "mmd2_rbf", min_samples=1)
    check_same_dim("mmd2_rbf", x=x, y=y)
    pooled = np.concatenate([x, y])
    if pooled.shape[0] > max_points:
        pooled = pooled[np.random.default_rng(seed).choice(pooled.shape[0], max_points, replace=False)]
    d2 = squared_distances(pooled, pooled)[np.triu_indices(pooled.shape[0], k=1)]
    h = float(np.sqrt(np.median(d2)))
    if h <= 0.0:
        raise ValueError("mmd2_rbf: median pairwise distance is 0 (most embeddings are identical); give a bandwidth")
    return h


def mmd2_unbiased(k_xx: np.ndarray, k_yy: np.ndarray, k_xy: np.ndarray) -> float:
    """Unbiased MMD^2 from kernel matrices k_xx: [s, s], k_yy: [t, t], k_xy: [s, t] (s, t >= 2)."""
    s, t = k_xx.shape[0], k_yy.shape[0]
    xx = (k_xx.sum() - np.trace(k_xx)) / (s * (s - 1))
    yy = (k_yy.sum() - np.trace(k_yy)) / (t * (t - 1))
    return float(xx + yy - 2.0 * k_xy.mean())


def mmd2_subsets(
    x: np.ndarray, y: np.ndarray, kernel: Kernel, subset_size: int, num_subsets: int, seed: int, metric: str = "mmd2"
) -> np.ndarray:
    """Unbiased MMD^2 on each of `num_subsets` seeded random subsets: x: [n, dim], y: [m, dim] -> [num_subsets].

    Raises ValueError when either set has fewer than `subset_size` rows or subset_size < 2.
    """
    x = check_embeddings(x, "x", metric)
    y = check_embeddings(y, "y", metric)
    check_same_dim(metric, x=x, y=y)
    if subset_size < 2:
        raise ValueError(f"{metric}: subset_size must be at least 2, got {subset_size}")
    if num_subsets < 1:
        raise ValueError(f"{metric}: num_subsets must be at least 1, got {num_subsets}")
    if min(x.shape[0], y.shape[0]) < subset_size:
        raise ValueError(
            f"{metric}: subset_size {subset_size} is larger than the sets (x has {x.shape[0]} samples, "
            f"y has {y.shape[0]}); lower subset_size or embed more samples"
        )
    rng = np.random.default_rng(seed)
    draws = [
        (rng.choice(x.shape[0], subset_size, replace=False), rng.choice(y.shape[0], subset_size, replace=False))
        for _ in range(num_subsets)
    ]
    n, m = x.shape[0], y.shape[0]
    # Both routes give the same numbers up to rounding; take the one with fewer kernel evaluations:
    # whole-set kernel matrices cost (n^2 + m^2 + nm) once, per-subset ones 3 s^2 per subset.
    if n * n + m * m + n * m > 3 * subset_size**2 * num_subsets:
        return np.array([mmd2_unbiased(kernel(x[i], x[i]), kernel(y[j], y[j]), kernel(x[i], y[j])) for i, j in draws])
    # With 0/1 membership columns w, the sum of a subset's kernel block is w^T K w, so every
    # subset's sums come from one matrix product per kernel matrix instead of gathering blocks.
    w_x, w_y = np.zeros((n, num_subsets)), np.zeros((m, num_subsets))
    for col, (i, j) in enumerate(draws):
        w_x[i, col], w_y[j, col] = 1.0, 1.0
    k_xx, k_yy, k_xy = kernel(x, x), kernel(y, y), kernel(x, y)
    xx = ((k_xx @ w_x) * w_x).sum(0) - np.diag(k_xx) @ w_x
    yy = ((k_yy @ w_y) * w_y).sum(0) - np.diag(k_yy) @ w_y
    xy = ((k_xy @ w_y) * w_x).sum(0)
    s = subset_size
    values = xx / (s * (s - 1)) + yy / (s * (s - 1)) - 2.0 * xy / (s * s)
    return values


def mmd2_polynomial(
    x: np.ndarray,
    y: np.ndarray,
    subset_size: int = 1000,
    num_subsets: int = 100,
    seed: int = 0,
    degree: int = 3,
    coef0: float = 1.0,
) -> float:
    """Mean unbiased MMD^2 with the kernel (x.y/dim + coef0)^degree over seeded random subsets."""
    kernel = functools.partial(polynomial_kernel, degree=degree, coef0=coef0)
    return float(mmd2_subsets(x, y, kernel, subset_size, num_subsets, seed, "mmd2_polynomial").mean())


def mmd2_rbf(
    x: np.ndarray,
    y: np.ndarray,
    subset_size: int = 1000,
    num_subsets: int = 100,
    seed: int = 0,
    bandwidth: float | None = None,
    median_max_points: int = 1000,
) -> tuple[float, float]:
    """Mean unbiased MMD^2 with a Gaussian RBF kernel over seeded random subsets -> (mmd2, bandwidth used).

    bandwidth None -> median heuristic over at most `median_max_points` pooled rows.
    """
    if bandwidth is None:
        bandwidth = median_bandwidth(x, y, median_max_points, seed)
    elif not bandwidth > 0:
        raise ValueError(f"mmd2_rbf: bandwidth must be positive, got {bandwidth}")
    kernel = functools.partial(rbf_kernel, bandwidth=bandwidth)
    return float(mmd2_subsets(x, y, kernel, subset_size, num_subsets, seed, "mmd2_rbf").mean()), float(bandwidth)
