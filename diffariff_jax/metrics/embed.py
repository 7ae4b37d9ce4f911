"""Waveforms -> one embedding per clip, through any embedder with the CLAP interface of clap.py.

The embedder is duck-typed (so the metrics never import torch): it needs `name`, `dim`, `sample_rate`,
`window_seconds` and `embed_audio(wavs: [batch, samples]) -> [batch, dim]`; an optional `checkpoint`
attribute (path or hub revision) is recorded too, else the name stands for it. Each clip is downmixed
to mono, resampled to the embedder's rate and cut into windows of `window_seconds`, evenly spaced at
most `hop_seconds` apart from the clip's start to its end (no audio dropped, no silence padded in;
with the default hop of one window, the layout clap.py uses for long audio). A clip shorter than one
window is repeated and zero-padded to one window, as CLAP's own feature extractor does. Windows of
all clips are embedded in batches of `batch_size`, streamed so memory holds one batch of audio, and
each clip's embedding is the mean of its windows' embeddings, L2-normalised again when `normalize`.
"""
from __future__ import annotations

from typing import Any, Iterator, Sequence

import numpy as np

from diffariff_jax.audio.io import check_waveform, resample, to_mono

_EMBEDDER_ATTRIBUTES = ("name", "dim", "sample_rate", "window_seconds", "embed_audio")


def check_embedder(embedder: Any) -> None:
    """Raises TypeError naming the missing attributes when `embedder` lacks the CLAP interface."""
    missing = [attr for attr in _EMBEDDER_ATTRIBUTES if not hasattr(embedder, attr)]
    if missing:
        raise TypeError(f"embed: {type(embedder).__name__} is not an embedder, it lacks {', '.join(missing)}")


def embedder_info(embedder: Any, hop_seconds: float | None = None) -> dict[str, Any]:
    """JSON-serialisable description of the embedder and windowing, for reports."""
    check_embedder(embedder)
    return {
        "name": str(embedder.name),
        "checkpoint": str(getattr(embedder, "checkpoint", None) or embedder.name),
        "dim": int(embedder.dim),
        "sample_rate": int(embedder.sample_rate),
        "window_seconds": float(embedder.window_seconds),
        "hop_seconds": float(embedder.window_seconds if hop_seconds is None else hop_seconds),
    }


def split_windows(wav: np.ndarray, window: int, hop: int) -> np.ndarray:
    """wav: [samples] -> [num_windows, window], evenly spaced from the start to the end of the clip.

    ceil((samples - window) / hop) + 1 windows, so neighbours are at most `hop` apart, the last one ends
    at the clip's end, and with hop == window the layout equals the one clap.py uses for long audio.
    A clip shorter than `window` is repeated whole as often as it fits, then zero-padded: CLAP's
    "repeatpad", so a short clip embeds as it would when given to the CLAP feature extractor directly.
    """
    n = wav.shape[0]
    if n < window:
        repeated = np.tile(wav, window // n)
        return np.pad(repeated, (0, window - repeated.shape[0]))[None]
    count = -(-(n - window) // hop) + 1
    starts = np.round(np.linspace(0, n - window, count)).astype(np.int64)
    return np.stack([wav[s : s + window] for s in starts])


def _windows(
    wavs: Sequence[np.ndarray], sample_rate: int, target_rate: int, window: int, hop: int, min_samples: int
) -> Iterator[tuple[int, np.ndarray]]:
    """Yields (clip index, window [window]) for every window of every clip."""
    for i, wav in enumerate(wavs):
        wav = check_waveform(wav, name=f"embed: clip {i}", min_samples=min_samples)
        mono = resample(to_mono(wav), sample_rate, target_rate)[0]
        for w in split_windows(mono, window, hop):
            yield i, w


def embed_waveforms(
    embedder: Any,
    wavs: Sequence[np.ndarray],
    sample_rate: int,
    batch_size: int = 16,
    hop_seconds: float | None = None,
    min_seconds: float = 1.0,
    normalize: bool = True,
) -> np.ndarray:
    """wavs: clips [samples] or [channels, samples] at `sample_rate` -> embeddings [num_clips, embedder.dim].

    Raises AudioError for an unusable clip (NaN, empty, shorter than `min_seconds`) naming its index,
    and ValueError when the embedder returns the wrong shape or non-finite values.
    """
    check_embedder(embedder)
    if batch_size < 1:
        raise ValueError(f"embed: batch_size must be at least 1, got {batch_size}")
    num_clips = len(wavs)
    if num_clips == 0:
        raise ValueError("embed: no clips to embed")
    window = int(round(embedder.window_seconds * embedder.sample_rate))
    hop = window if hop_seconds is None else int(round(hop_seconds * embedder.sample_rate))
    if hop < 1:
        raise ValueError(f"embed: hop_seconds must be positive, got {hop_seconds}")
    min_samples = max(1, int(round(min_seconds * sample_rate)))
    # Check every clip before embedding any, so a bad clip at the end does not waste a long run.
    for i, wav in enumerate(wavs):
        check_waveform(wav, name=f"embed: clip {i}", min_samples=min_samples)
    sums = np.zeros((num_clips, int(embedder.dim)))
    counts = np.zeros(num_clips, dtype=np.int64)

    def flush(owners: list[int], batch: list[np.ndarray]) -> None:
        out = np.asarray(embedder.embed_audio(np.stack(batch).astype(np.float32)), dtype=np.float64)
        if out.shape != (len(batch), embedder.dim) or not np.all(np.isfinite(out)):
            raise ValueError(
                f"embed: {embedder.name} returned shape {out.shape} (finite: {bool(np.all(np.isfinite(out)))}) "
                f"for {len(batch)} windows; expected finite [{len(batch)}, {embedder.dim}]"
            )
        np.add.at(sums, owners, out)
        np.add.at(counts, owners, 1)

    owners: list[int] = []
    batch: list[np.ndarray] = []
    for owner, w in _windows(wavs, sample_rate, int(embedder.sample_rate), window, hop, min_samples):
        owners.append(owner)
        batch.append(w)
        if len(batch) == batch_size:
            flush(owners, batch)
            owners, batch = [], []
    if batch:
        flush(owners, batch)
    emb = sums / counts[:, None]
    if normalize:
        norms = np.linalg.norm(emb, axis=1, keepdims=True)
        if np.any(norms == 0):
            raise ValueError(f"embed: clip {int(np.flatnonzero(norms[:, 0] == 0)[0])} has a zero mean embedding")
        emb = emb / norms
    return emb.astype(np.float32)
