"""The metrics of one scored system (a condition or a baseline) with bootstrap 95% intervals.

Embeddings (CLAP audio, one row per example): real targets A, the system's stems G, mixes of the
system's stems with their contexts C, real matching mixes R and mismatched mixes R' (APA's references;
R' pools K re-pairings of the examples, a better estimate of the mismatched distribution than one),
the text embedding of the instrument each stem is scored against P, and the instrument vocabulary V.
    fad, mmd2        Frechet distance / unbiased polynomial MMD^2 between A and G
    density,         Naeem et al.'s k-NN density and coverage of G against A
    coverage
    apa              APA of C against R and R'
    clap_score       mean cosine(G_i, P_i): does the stem sound like the instrument it was asked for
    instrument_acc   fraction of stems whose nearest text embedding in V is their instrument's
Intervals: percentiles of the metric over `num_resamples` bootstrap draws of the examples (one index
draw shared by every set, so pairs stay pairs). Density and coverage average per-item terms over the
resample, with the k-NN balls of the whole real set (prdc_terms; balls rebuilt around duplicated rows
would have radius 0). MMD^2 on a resample leaves out pairs of copies of one example (mmd2_resampled).
"""
from __future__ import annotations

from typing import Any, Callable

import ml_collections
import numpy as np

from diffariff_jax import metrics
from diffariff_jax.evaluation import sample_fd  # metrics.fad / apa from n x m Gram matrices when n < dim

METRICS = ("fad", "mmd2", "density", "coverage", "apa", "clap_score", "instrument_acc")


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=1, keepdims=True).clip(1e-12)


def per_example(stems: np.ndarray, prompts: np.ndarray, vocab: np.ndarray, labels: np.ndarray,
                real: np.ndarray | None) -> dict[str, np.ndarray]:
    """Per-example scores: clap_score [n], instrument_correct [n] (0/1), cos_to_real [n] (if real is given)."""
    g = unit(stems)
    out = {"clap_score": metrics.cosine_similarities(stems, prompts),
           "instrument_correct": (np.argmax(g @ unit(vocab).T, axis=1) == labels).astype(np.float64)}
    if real is not None:
        out["cos_to_real"] = np.sum(g * unit(real), axis=1)
    return out


def _mmd2(cfg: ml_collections.ConfigDict) -> Callable[[np.ndarray, np.ndarray, int], float]:
    def mmd2(a: np.ndarray, g: np.ndarray, seed: int) -> float:
        n = a.shape[0]
        size = min(int(cfg.mmd_subset_size), n)
        subsets = 1 if size == n else int(cfg.mmd_num_subsets)  # every subset of size n is the whole set
        return metrics.mmd2_polynomial(a, g, subset_size=size, num_subsets=subsets, seed=seed,
                                       degree=int(cfg.mmd_degree), coef0=float(cfg.mmd_coef0))
    return mmd2


def _kernels(real: np.ndarray, stems: np.ndarray, cfg: ml_collections.ConfigDict) -> tuple[np.ndarray, ...]:
    """MMD^2's kernel matrices K(A, A), K(G, G), K(A, G): [n, n] each, computed once for every resample."""
    k = lambda x, y: metrics.polynomial_kernel(x, y, degree=int(cfg.mmd_degree), coef0=float(cfg.mmd_coef0))
    return k(real, real), k(stems, stems), k(real, stems)


def mmd2_resampled(kernels: tuple[np.ndarray, ...], rows: np.ndarray) -> float:
    """Unbiased MMD^2 of a bootstrap resample given by row indices, from the full kernel matrices.

    With multiplicities w, the within-set sums leave out every pair of copies of one example (not only
    i = j), as the unbiased estimate leaves out self-pairs: duplicates would otherwise inflate them.
    """
    k_aa, k_gg, k_ag = kernels
    n = k_aa.shape[0]
    w = np.bincount(rows, minlength=n).astype(np.float64)
    pairs = n * n - w @ w
    aa = (w @ k_aa @ w - (w * w) @ np.diag(k_aa)) / pairs
    gg = (w @ k_gg @ w - (w * w) @ np.diag(k_gg)) / pairs
    return float(aa + gg - 2.0 * (w @ k_ag @ w) / (n * n))


def prdc_terms(real: np.ndarray, stems: np.ndarray, k: int) -> dict[str, np.ndarray]:
    """Density and coverage as means of per-item terms -> {"density": [m] per stem, "coverage": [n] per real}.

    density_j = (number of real k-NN balls holding stem j) / k, coverage_i = [the nearest stem lies in
    real i's ball]; their means are Naeem et al.'s density and coverage (metrics.prdc). The balls come
    from the whole real set, so a resample averages these terms instead of rebuilding balls around copies.
    """
    from diffariff_jax.metrics.mmd import squared_distances
    from diffariff_jax.metrics.prdc import kth_neighbour_radii

    radii = kth_neighbour_radii(real, k)
    d = np.sqrt(squared_distances(real, stems))  # [n_real, n_stems]
    return {"density": (d < radii[:, None]).sum(axis=0) / k, "coverage": (d.min(axis=1) < radii).astype(np.float64)}


def _point(real, stems, mixes, apa_sets, per, cfg, seed, rows=None, kernels=None) -> dict[str, float | None]:
    """Every metric on all rows (rows None) or on the bootstrap resample given by `rows`."""
    pick = (lambda x: x) if rows is None else (lambda x: x[rows])
    n = real.shape[0]
    out: dict[str, float | None] = {
        "fad": sample_fd.fad(pick(real), pick(stems), float(cfg.fad_imag_tol)),
        "mmd2": _mmd2(cfg)(real, stems, seed) if rows is None else mmd2_resampled(kernels, rows),
        "density": float(pick(per["density"]).mean()),
        "coverage": float(pick(per["coverage"]).mean()),
    }
    out["apa"] = None
    if apa_sets is not None:
        mismatched = apa_sets[1]
        if rows is not None:  # R' holds K pairings of the n examples, block by block: draw the same examples
            blocks = mismatched.shape[0] // n
            mismatched = mismatched[(rows[None, :] + n * np.arange(blocks)[:, None]).ravel()]
        out["apa"] = sample_fd.apa(pick(mixes), pick(apa_sets[0]), mismatched, float(cfg.fad_imag_tol))
    out["clap_score"] = float(pick(per["clap_score"]).mean())
    out["instrument_acc"] = float(pick(per["instrument_correct"]).mean())
    return out


def score(real: np.ndarray, stems: np.ndarray, mixes: np.ndarray, apa_sets: tuple[np.ndarray, np.ndarray] | None,
          per: dict[str, np.ndarray], metric_cfg: ml_collections.ConfigDict,
          bootstrap: ml_collections.ConfigDict, seed: int) -> dict[str, Any]:
    """{metric: {"value", "low", "high"}} for one system (apa None when apa_sets is None).

    real, stems, mixes: [n, dim]; apa_sets: (R [n, dim], R' [K n, dim]: K mismatched pairings of the n
    examples, one block of n rows each); per: per_example(...).
    """
    n = real.shape[0]
    per = {**per, **prdc_terms(real, stems, int(metric_cfg.prdc_k))}
    value = _point(real, stems, mixes, apa_sets, per, metric_cfg, seed)
    rng = np.random.default_rng([seed, 2])
    kernels = _kernels(real, stems, metric_cfg)
    draws = []
    for _ in range(int(bootstrap.num_resamples)):
        rows = rng.integers(0, n, size=n)
        draws.append(_point(real, stems, mixes, apa_sets, per, metric_cfg, seed, rows=rows, kernels=kernels))
    alpha = (1.0 - float(bootstrap.confidence)) / 2.0
    out: dict[str, Any] = {}
    for name in METRICS:
        if value[name] is None:
            out[name] = None
            continue
        samples = np.array([d[name] for d in draws], np.float64)
        low, high = (np.quantile(samples, [alpha, 1.0 - alpha]) if samples.size else (np.nan, np.nan))
        out[name] = {"value": float(value[name]), "low": float(low), "high": float(high)}
    return out


def interval_settings(metric_cfg: ml_collections.ConfigDict, bootstrap: ml_collections.ConfigDict, n: int) -> dict:
    """How the numbers were computed, for the report."""
    size = min(int(metric_cfg.mmd_subset_size), n)
    return {"method": "percentile bootstrap over examples (density/coverage: per-item terms, whole-set k-NN balls)",
            "num_resamples": int(bootstrap.num_resamples), "confidence": float(bootstrap.confidence),
            "mmd2": {"kernel": f"(x.y/d + {metric_cfg.mmd_coef0})^{metric_cfg.mmd_degree}", "subset_size": size,
                     "num_subsets": 1 if size == n else int(metric_cfg.mmd_num_subsets)},
            "prdc_k": int(metric_cfg.prdc_k)}
