"""Accompaniment prompt adherence (APA; Grachten & Nistal, arXiv 2503.06346) and its reference sets.

All three sets are embeddings of *mixes* of a context with a stem:
    R  = real matching pairs (each stem mixed with its own song's context),
    R' = mismatched pairs (each stem mixed with another song's context),
    C  = candidate pairs (each generated stem mixed with the context it was generated for).
    APA = 1/2 + (FD(C, R') - FD(C, R)) / (2 FD(R, R')), clipped to [0, 1].
C distributed like R gives 1; C distributed like R' gives 0; C as far from R as from R' gives 0.5,
e.g. when half of the candidates adhere and half are random pairings.
R' re-pairs stems with contexts by a permutation, so R and R' hold the same contexts and the same
stems and differ only in who is paired with whom.
"""
from __future__ import annotations

from typing import Hashable, Sequence

import numpy as np

from diffariff_jax.metrics.checks import check_embeddings, check_same_dim
from diffariff_jax.metrics.fad import frechet_distance, gaussian_fit


def apa(
    candidate: np.ndarray, matching: np.ndarray, mismatched: np.ndarray, imag_tol: float = 1e-3
) -> dict[str, float]:
    """candidate C, matching R, mismatched R': [n_*, dim] mix embeddings -> {"apa", "fd_c_r", "fd_c_rp", "fd_r_rp"}.

    imag_tol: see fad.trace_sqrt_product.

    Raises ValueError when FD(R, R') is 0: the pairing then leaves no trace in the embeddings and
    adherence is undefined.
    """
    sets = {
        name: check_embeddings(x, name, "apa", min_samples=2)
        for name, x in (("candidate", candidate), ("matching", matching), ("mismatched", mismatched))
    }
    check_same_dim("apa", **sets)
    # Fit each set's Gaussian once; every set takes part in two of the three distances.
    c, r, rp = (gaussian_fit(x, name) for name, x in sets.items())
    fd_c_r, fd_c_rp, fd_r_rp = (frechet_distance(*a, *b, imag_tol=imag_tol) for a, b in ((c, r), (c, rp), (r, rp)))
    if fd_r_rp <= 0.0:
        raise ValueError(
            "apa: FD(matching, mismatched) is 0, so the reference pairs carry no pairing signal; "
            "use more pairs or a different embedder"
        )
    score = 0.5 + (fd_c_rp - fd_c_r) / (2.0 * fd_r_rp)
    return {"apa": float(np.clip(score, 0.0, 1.0)), "fd_c_r": fd_c_r, "fd_c_rp": fd_c_rp, "fd_r_rp": fd_r_rp}


def mismatch_permutation(song_ids: Sequence[Hashable], seed: int) -> np.ndarray:
    """A permutation p with song_ids[p[i]] != song_ids[i] for every i, deterministic for a seed -> [n].

    Stem i is re-paired with context p[i]. Songs and the order inside each song are shuffled with the
    seed, the indices are laid out song by song, and each index is mapped to the one g places further
    (cyclically), g being the largest song's size: two positions g apart can only share a song if that
    song had more than g entries. Such a permutation exists only if no song holds more than half of the
    pairs; otherwise this raises ValueError naming the song.
    """
    n = len(song_ids)
    if n < 2:
        raise ValueError(f"apa: need at least 2 (context, stem) pairs to mismatch, got {n}")
    groups: dict[Hashable, list[int]] = {}
    for i, song in enumerate(song_ids):
        groups.setdefault(song, []).append(i)
    largest_song, largest = max(groups.items(), key=lambda item: len(item[1]))
    if 2 * len(largest) > n:
        raise ValueError(
            f"apa: song {largest_song!r} holds {len(largest)} of {n} pairs; re-pairing every stem with another "
            "song's context needs each song to hold at most half of the pairs"
        )
    rng = np.random.default_rng(seed)
    members = list(groups.values())
    order = np.concatenate([rng.permutation(members[g]) for g in rng.permutation(len(members))])
    perm = np.empty(n, dtype=np.int64)
    perm[order] = np.roll(order, -len(largest))
    return perm


def _mix(context: np.ndarray, stem: np.ndarray, index: int) -> np.ndarray:
    """Sum of a context and a stem, both [samples] or [channels, samples], cut to the shorter length."""
    context, stem = np.asarray(context, np.float32), np.asarray(stem, np.float32)
    if context.ndim != stem.ndim:
        raise ValueError(f"apa: pair {index}: context has shape {context.shape} but stem has {stem.shape}")
    length = min(context.shape[-1], stem.shape[-1])
    if length == 0:
        raise ValueError(f"apa: pair {index}: empty context or stem")
    return context[..., :length] + stem[..., :length]


def reference_mixes(
    pairs: Sequence[tuple[np.ndarray, np.ndarray]], song_ids: Sequence[Hashable] | None = None, seed: int = 0
) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray]:
    """(context, stem) waveform pairs -> (R mixes, R' mixes, permutation used for R').

    R[i] = context_i + stem_i; R'[i] = context_p[i] + stem_i with p = mismatch_permutation(song_ids, seed),
    so no stem meets its own song's context. song_ids None: every pair is its own song. Mixes are plain
    sums cut to the shorter of the two clips; both must be at the same sample rate.
    """
    if song_ids is None:
        song_ids = list(range(len(pairs)))
    if len(song_ids) != len(pairs):
        raise ValueError(f"apa: {len(pairs)} pairs but {len(song_ids)} song ids")
    perm = mismatch_permutation(song_ids, seed)
    matching = [_mix(context, stem, i) for i, (context, stem) in enumerate(pairs)]
    mismatched = [_mix(pairs[perm[i]][0], stem, i) for i, (_, stem) in enumerate(pairs)]
    return matching, mismatched, perm
