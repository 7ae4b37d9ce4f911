"""The fixed test examples: (context mix, real target stem, instrument, audio-CLAP sub-segment) from test songs.

Songs come from the song-level split of data/layouts.py, the split training used (precompute reads the
"train" songs of the same hash split), so no example comes from a song the model was trained on.
Every song of the split is cut into non-overlapping spans of `length` samples. The spans are visited
round-robin over the songs (song order and each song's span order shuffled by the seed), so every song
contributes about equally, which APA's mismatched pairs need. Per span, as in training
(data/pipeline.py): a target drawn among the stems that may be targets and are not silent there, a
context mixed from a random subset of the other stems with random gains, one shared gain bringing
context + target to `loudness_db` (data/ops.py). Unlike training the context is never empty (one other
stem joins when the draw keeps none), since an empty context would make the context conditions
unconditional.
The first N usable spans are the examples; the next N are the real "other spans" reference set.
Everything depends on (data, split, seed, N, length) only, so two checkpoints meet the same examples.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Iterator

import ml_collections
import numpy as np

from diffariff_jax.data import layouts
from diffariff_jax.data.stems import ProbedSong, probe_songs, read_window
from diffariff_jax.precompute import clap_windows

log = logging.getLogger(__name__)


class ExamplesError(ValueError):
    """A one-line problem with the evaluation data (no test songs, too few usable spans)."""


@dataclass(frozen=True)
class Examples:
    """n examples at one sample rate."""

    context: np.ndarray        # [n, samples] float32
    target: np.ndarray         # [n, samples] float32
    clap_audio: np.ndarray     # [n, clap_samples] float32: the target's sub-segment for audio CLAP
    song_ids: tuple[str, ...]
    instruments: tuple[str, ...]
    offsets: np.ndarray        # [n] int64, samples from the song's start

    def __len__(self) -> int:
        return len(self.song_ids)


def test_songs(root: str, layout: str, fractions: tuple[float, float, float], sample_rate: int,
               min_seconds: float) -> list[ProbedSong]:
    """The usable songs of the test split (header-probed), in song-id order; ExamplesError if none."""
    skips = layouts.Skips()
    try:
        songs = layouts.songs_in_split(layouts.scan(root, layout, skips), "test", tuple(fractions))
    except FileNotFoundError as err:
        raise ExamplesError(str(err)) from None
    if not songs:
        raise ExamplesError(f"{root}: the test split holds no song (layout {layout!r}, split fractions "
                            f"{tuple(fractions)}); evaluation needs songs training never saw: add songs")
    probed = probe_songs(songs, sample_rate, min_seconds, skips)
    if not probed:
        raise ExamplesError(f"{root}: none of the {len(songs)} test songs is usable (skipped: {skips.summary()})")
    return probed


def span_order(songs: list[ProbedSong], length: int, seed: int) -> Iterator[tuple[int, int]]:
    """(song index, offset) of every non-overlapping span, round-robin over the seed-shuffled songs."""
    rng = np.random.default_rng([seed, 0])
    per_song = [list(rng.permutation(s.num_samples // length) * length) for s in songs]
    order = rng.permutation(len(songs))
    for r in range(max((len(p) for p in per_song), default=0)):
        for i in order:
            if r < len(per_song[i]):
                yield int(i), int(per_song[i][r])


def _normalize(context: np.ndarray, target: np.ndarray, cfg: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray]:
    """Training's shared loudness gain (data/ops.py), so examples sit where the model was trained."""
    import tensorflow as tf

    from diffariff_jax.data import ops

    c, t = ops.normalize_loudness_pair(tf.constant(context), tf.constant(target),
                                       tf.constant(cfg.loudness_db, tf.float32), cfg.peak_limit,
                                       max_gain_db=cfg.max_gain_db)
    return c.numpy(), t.numpy()


def _pair(stems: np.ndarray, targets: tuple[bool, ...], rng: np.random.Generator,
          cfg: ml_collections.ConfigDict) -> tuple[np.ndarray, np.ndarray, int] | None:
    """(target [samples], context [samples], target index) for one span's stems [num_stems, samples], or
    None when no stem that may be a target (ProbedSong.targets: groups and bleeding stems are context
    only) sounds there. Every stem, the target included, gets a level from stem_gain_db, as training's
    pairs do (data/pipeline.py), so the target-to-context balance is centred on the source mix's."""
    levels = 10.0 * np.log10(np.mean(np.square(stems, dtype=np.float64), axis=1) + 1e-10)
    candidates = np.flatnonzero((levels >= cfg.silence_db) & np.asarray(targets))
    if candidates.size == 0:
        return None
    target = int(rng.choice(candidates))
    others = np.array([k for k in range(len(stems)) if k != target])
    keep = others[rng.uniform(size=others.size) < cfg.context_keep_prob]
    audible = others[levels[others] >= cfg.silence_db]
    # A context of silent stems only would score a "context" condition on no context at all.
    if audible.size and not np.isin(keep, audible).any():
        keep = np.append(keep, audible[int(rng.integers(audible.size))])
    elif keep.size == 0:
        keep = others[[int(rng.integers(others.size))]]
    lo, hi = cfg.stem_gain_db
    gains = 10.0 ** (rng.uniform(lo, hi, size=keep.size) / 20.0)
    context = (gains[:, None] * stems[keep]).sum(axis=0).astype(np.float32)
    target_gain = 10.0 ** (rng.uniform(lo, hi) / 20.0)
    return (target_gain * stems[target]).astype(np.float32), context, target


def draw(songs: list[ProbedSong], num: int, length: int, sample_rate: int, clap_samples: int,
         cfg: ml_collections.ConfigDict, seed: int, min_examples: int) -> tuple[Examples, Examples, dict]:
    """(examples, other-spans reference, info): two disjoint sets of the same size from the test songs.

    Fewer than 2 * num usable spans: with cfg.allow_fewer both sets take half of what there is (info
    says so), else ExamplesError; fewer than min_examples each is always an ExamplesError.
    """
    rng = np.random.default_rng([seed, 1])
    rows: list[tuple] = []
    silent = read = 0
    for song_index, offset in span_order(songs, length, seed):
        if len(rows) == 2 * num:
            break
        song = songs[song_index]
        stems = read_window(song, offset, length, sample_rate)
        read += 1
        picked = _pair(stems, song.targets(), rng, cfg)
        if picked is None:
            silent += 1
            continue
        target, context, target_index = picked
        context, target = _normalize(context, target, cfg)
        window, _ = clap_windows(target, 1, clap_samples, cfg.clap_tries, rng)
        rows.append((context, target, window[0], song.song_id, song.instruments[target_index], offset))
    total = sum(s.num_samples // length for s in songs)
    info = {"num_test_songs": len(songs), "test_songs": [s.song_id for s in songs], "num_requested": num,
            "spans_available": total, "spans_read": read, "silent_spans_skipped": silent,
            "seconds_per_example": length / sample_rate}
    n = num
    if len(rows) < 2 * num:
        n = len(rows) // 2
        why = (f"the test split ({len(songs)} songs) has {len(rows)} usable non-overlapping spans of "
               f"{length / sample_rate:.2f} s, and N examples plus N reference spans need {2 * num}")
        if n < min_examples:
            raise ExamplesError(f"{why}; fewer than {min_examples} examples cannot be scored (add test songs "
                                "or shorten examples.segment_frames)")
        if not cfg.allow_fewer:
            raise ExamplesError(f"{why}; lower --config.num_examples to {n} or set --config.examples.allow_fewer=True")
        info["note"] = f"N lowered from {num} to {n}: {why}"
        log.warning("%s", info["note"])
    info["num_examples"] = n
    return _examples(rows[:n]), _examples(rows[n:2 * n]), info


def _examples(rows: list[tuple]) -> Examples:
    context, target, clap, songs, instruments, offsets = zip(*rows)
    return Examples(np.stack(context), np.stack(target), np.stack(clap), tuple(songs), tuple(instruments),
                    np.asarray(offsets, np.int64))
