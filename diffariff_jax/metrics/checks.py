"""Input checks shared by the metrics: embedding sets are finite 2-D float arrays of agreeing width.

Every metric calls these first so that a bad input fails with one line naming the metric, the set and
the sizes, instead of a NaN or a broadcasting error deep inside numpy.
"""
from __future__ import annotations

import numpy as np


def check_embeddings(x: np.ndarray, name: str, metric: str, min_samples: int = 1) -> np.ndarray:
    """Returns `x` as float64 [n, dim]; raises ValueError if it is not 2-D, too small, or not finite."""
    x = np.asarray(x)
    if x.ndim != 2:
        raise ValueError(f"{metric}: {name} must be [samples, dim] embeddings, got shape {x.shape}")
    if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
        raise ValueError(f"{metric}: {name} must hold numbers, got dtype {x.dtype}")
    if x.shape[0] < min_samples:
        raise ValueError(f"{metric}: {name} has {x.shape[0]} samples, need at least {min_samples}")
    if x.shape[1] < 1:
        raise ValueError(f"{metric}: {name} has embedding dim 0")
    x = x.astype(np.float64, copy=False)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{metric}: {name} contains NaN or inf values")
    return x


def check_same_dim(metric: str, **sets: np.ndarray) -> None:
    """Raises ValueError naming every set's dim when the sets' embedding dims differ."""
    dims = {name: x.shape[1] for name, x in sets.items()}
    if len(set(dims.values())) > 1:
        listing = ", ".join(f"{name} has {dim}" for name, dim in dims.items())
        raise ValueError(f"{metric}: embedding dims differ ({listing})")
