"""Precision, recall, density and coverage with k nearest neighbours (Naeem et al. 2020).

Each real sample gets a ball whose radius is the distance to its k-th nearest other real sample (the
same for fake samples). With D[i, j] the distance from real i to fake j and r_i the real radii:
    precision = fraction of fakes inside at least one real ball
    recall    = fraction of reals inside at least one fake ball
    density   = mean over fakes of (number of real balls containing it) / k    (can exceed 1)
    coverage  = fraction of reals whose nearest fake lies inside their own ball   (in [0, 1])
"Inside" is a strict `<`, as in the authors' reference package `prdc`, so ties count the same way.
"""
from __future__ import annotations

import numpy as np

from diffariff_jax.metrics.checks import check_embeddings, check_same_dim
from diffariff_jax.metrics.mmd import squared_distances


def kth_neighbour_radii(x: np.ndarray, k: int) -> np.ndarray:
    """x: [n, dim] -> [n] distance from each row to its k-th nearest other row (needs n > k)."""
    d = np.sqrt(squared_distances(x, x))
    np.fill_diagonal(d, 0.0)  # exact zero self-distance, so the self match is always the 0-th neighbour
    return np.partition(d, k, axis=1)[:, k]


def prdc(real: np.ndarray, fake: np.ndarray, k: int = 5) -> dict[str, float]:
    """real: [n, dim], fake: [m, dim] -> {"precision", "recall", "density", "coverage"} as floats.

    Raises ValueError when k < 1 or either set has k or fewer samples (a k-th neighbour needs k others).
    """
    if k < 1:
        raise ValueError(f"prdc: k must be at least 1, got {k}")
    real = check_embeddings(real, "real", "prdc")
    fake = check_embeddings(fake, "fake", "prdc")
    check_same_dim("prdc", real=real, fake=fake)
    if min(real.shape[0], fake.shape[0]) <= k:
        raise ValueError(
            f"prdc: k={k} needs more than {k} samples in each set, got real {real.shape[0]}, fake {fake.shape[0]}"
        )
    real_radii = kth_neighbour_radii(real, k)
    fake_radii = kth_neighbour_radii(fake, k)
    d = np.sqrt(squared_distances(real, fake))  # [n_real, n_fake]
    inside_real = d < real_radii[:, None]
    return {
        "precision": float(inside_real.any(axis=0).mean()),
        "recall": float((d < fake_radii[None, :]).any(axis=1).mean()),
        "density": float(inside_real.sum(axis=0).mean() / k),
        "coverage": float((d.min(axis=1) < real_radii).mean()),
    }
