"""CLAP score: how close generated stems are to the prompts they were generated from, in CLAP space.

For each generated stem i, the cosine similarity between its CLAP audio embedding and the embedding of
its own prompt (a text embedding for text prompts, an audio embedding for audio prompts); the score is
the mean over stems. Rows are normalised here, so unnormalised embeddings give the same result.
"""
from __future__ import annotations

import numpy as np

from diffariff_jax.metrics.checks import check_embeddings, check_same_dim


def cosine_similarities(audio: np.ndarray, prompts: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity: audio [n, dim], prompts [n, dim] -> [n] in [-1, 1]."""
    audio = check_embeddings(audio, "audio", "clap_score")
    prompts = check_embeddings(prompts, "prompts", "clap_score")
    check_same_dim("clap_score", audio=audio, prompts=prompts)
    if audio.shape[0] != prompts.shape[0]:
        raise ValueError(
            f"clap_score: {audio.shape[0]} audio embeddings but {prompts.shape[0]} prompt embeddings; "
            "each generated stem needs its own prompt"
        )
    norms_a, norms_p = np.linalg.norm(audio, axis=1), np.linalg.norm(prompts, axis=1)
    zero = np.flatnonzero((norms_a == 0) | (norms_p == 0))
    if zero.size:
        raise ValueError(f"clap_score: zero-length embedding at row {int(zero[0])}; cosine similarity is undefined")
    return np.clip((audio * prompts).sum(axis=1) / (norms_a * norms_p), -1.0, 1.0)


def clap_score(audio: np.ndarray, prompts: np.ndarray) -> float:
    """Mean cosine similarity between generated audio embeddings [n, dim] and their prompts' [n, dim]."""
    return float(cosine_similarities(audio, prompts).mean())
