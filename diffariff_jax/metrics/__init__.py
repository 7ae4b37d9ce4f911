"""Evaluation metrics on embeddings (SPEC section 5): numpy arrays in, floats or small dicts out.

fad (Frechet distance), mmd (unbiased MMD^2, polynomial and RBF kernels), prdc (precision, recall,
density, coverage), apa (accompaniment prompt adherence and its reference mixes), clap_score,
embed (waveforms -> embeddings through a CLAP-like embedder), report (all of them in one dict).
Nothing here imports torch or TensorFlow; the embedder is passed in.
"""
from diffariff_jax.metrics.apa import apa, mismatch_permutation, reference_mixes
from diffariff_jax.metrics.clap_score import clap_score, cosine_similarities
from diffariff_jax.metrics.embed import check_embedder, embed_waveforms, embedder_info, split_windows
from diffariff_jax.metrics.fad import fad, frechet_distance, gaussian_fit, trace_sqrt_product
from diffariff_jax.metrics.mmd import (
    median_bandwidth,
    mmd2_polynomial,
    mmd2_rbf,
    mmd2_subsets,
    mmd2_unbiased,
    polynomial_kernel,
    rbf_kernel,
)
from diffariff_jax.metrics.prdc import prdc
from diffariff_jax.metrics.report import metrics_config, metrics_report

__all__ = [
    "apa",
    "check_embedder",
    "clap_score",
    "cosine_similarities",
    "embed_waveforms",
    "embedder_info",
    "fad",
    "frechet_distance",
    "gaussian_fit",
    "median_bandwidth",
    "metrics_config",
    "metrics_report",
    "mismatch_permutation",
    "mmd2_polynomial",
    "mmd2_rbf",
    "mmd2_subsets",
    "mmd2_unbiased",
    "polynomial_kernel",
    "prdc",
    "rbf_kernel",
    "reference_mixes",
    "split_windows",
    "trace_sqrt_product",
]
