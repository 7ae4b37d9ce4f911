"""All metrics in one call -> one JSON-serialisable dict with the settings, seeds and sample counts used.

Settings come from `metrics_config()`, an ml_collections ConfigDict that configs/eval.py can embed
(`config.metrics = metrics_config()`) and the command line can override
(`--config.metrics.mmd_subset_size=500`). The report records the resolved settings next to the values
so a number can always be traced back to how it was computed, and the embedder's description (from
`embed.embedder_info`) so it says which model produced the embeddings.
"""
from __future__ import annotations

import functools
from typing import Any, Mapping

import ml_collections
import numpy as np

from diffariff_jax.metrics.apa import apa
from diffariff_jax.metrics.checks import check_embeddings, check_same_dim
from diffariff_jax.metrics.clap_score import cosine_similarities
from diffariff_jax.metrics.fad import fad
from diffariff_jax.metrics.mmd import median_bandwidth, mmd2_subsets, polynomial_kernel, rbf_kernel
from diffariff_jax.metrics.prdc import prdc


def metrics_config(**overrides: Any) -> ml_collections.ConfigDict:
    """Metric settings. mmd_rbf_bandwidth 0.0 means 'median heuristic'; seed drives every random choice."""
    cfg = ml_collections.ConfigDict(
        {
            "seed": 0,
            "prdc_k": 5,
            "mmd_subset_size": 1000,
            "mmd_num_subsets": 100,
            "mmd_degree": 3,
            "mmd_coef0": 1.0,
            "mmd_rbf_bandwidth": 0.0,
            "mmd_median_max_points": 1000,
            "fad_imag_tol": 1e-3,
            "embed_batch_size": 16,
            "embed_hop_seconds": 10.0,
            "embed_min_seconds": 1.0,
        }
    )
    cfg.update(overrides)
    return cfg


def _mmd_summary(values: np.ndarray) -> dict[str, float]:
    return {"mean": float(values.mean()), "std": float(values.std())}


def metrics_report(
    real: np.ndarray,
    generated: np.ndarray,
    config: ml_collections.ConfigDict | None = None,
    apa_sets: Mapping[str, np.ndarray] | None = None,
    clap_prompts: np.ndarray | None = None,
    embedder: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Every metric on real [n, dim] vs generated [m, dim] audio embeddings -> a JSON-serialisable dict.

    apa_sets: {"candidate": C, "matching": R, "mismatched": R'} mix embeddings, or None to skip APA.
    clap_prompts: [m, dim] prompt embeddings, row i being generated stem i's prompt, or None to skip.
    embedder: `embed.embedder_info(...)` of the model that made the embeddings (recorded as given).
    """
    cfg = metrics_config() if config is None else config
    real = check_embeddings(real, "real", "metrics_report", min_samples=2)
    generated = check_embeddings(generated, "generated", "metrics_report", min_samples=2)
    check_same_dim("metrics_report", real=real, generated=generated)
    seed = int(cfg.seed)
    s, num = int(cfg.mmd_subset_size), int(cfg.mmd_num_subsets)
    if min(real.shape[0], generated.shape[0]) < s:
        raise ValueError(
            f"metrics_report: mmd_subset_size {s} is larger than the sets (real has {real.shape[0]} samples, "
            f"generated has {generated.shape[0]}); lower it or embed more samples"
        )
    bandwidth = float(cfg.mmd_rbf_bandwidth)
    if not bandwidth >= 0.0:
        raise ValueError(f"metrics_report: mmd_rbf_bandwidth must be >= 0 (0 = median heuristic), got {bandwidth}")
    bandwidth = bandwidth or median_bandwidth(real, generated, int(cfg.mmd_median_max_points), seed)
    poly = mmd2_subsets(
        real,
        generated,
        functools.partial(polynomial_kernel, degree=int(cfg.mmd_degree), coef0=float(cfg.mmd_coef0)),
        s,
        num,
        seed,
        "mmd2_polynomial",
    )
    rbf = mmd2_subsets(real, generated, functools.partial(rbf_kernel, bandwidth=bandwidth), s, num, seed, "mmd2_rbf")
    report: dict[str, Any] = {
        "num_real": int(real.shape[0]),
        "num_generated": int(generated.shape[0]),
        "dim": int(real.shape[1]),
        "seed": seed,
        "settings": cfg.to_dict(),
        "embedder": dict(embedder) if embedder is not None else None,
        "fad": fad(real, generated, float(cfg.fad_imag_tol)),
        "mmd2_polynomial": {**_mmd_summary(poly), "subset_size": s, "num_subsets": num},
        "mmd2_rbf": {**_mmd_summary(rbf), "subset_size": s, "num_subsets": num, "bandwidth": bandwidth},
        "prdc": {**prdc(real, generated, int(cfg.prdc_k)), "k": int(cfg.prdc_k)},
    }
    if apa_sets is not None:
        missing = {"candidate", "matching", "mismatched"} - set(apa_sets)
        if missing:
            raise ValueError(f"metrics_report: apa_sets lacks {', '.join(sorted(missing))}")
        report["apa"] = {
            **apa(apa_sets["candidate"], apa_sets["matching"], apa_sets["mismatched"], float(cfg.fad_imag_tol)),
            **{f"num_{name}": int(np.shape(apa_sets[name])[0]) for name in ("candidate", "matching", "mismatched")},
        }
    if clap_prompts is not None:
        sims = cosine_similarities(generated, clap_prompts)
        report["clap_score"] = {"mean": float(sims.mean()), "std": float(sims.std()), "num": int(sims.shape[0])}
    return report
