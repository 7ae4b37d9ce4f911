"""The tf.data stem-mixing pipeline: (context mix, target stem) pairs cut from multitrack songs.

Per example: a random time crop of `crop_seconds` of one song; a target stem drawn among the stems
that are not silent in that crop; a context mixed from a random subset (possibly empty) of the other
stems with random gains; one shared gain that brings the pair's sum to `loudness_db`.

Order and randomness are a function of (seed, epoch, process_index) and the example's position only:
- songs are split over hosts by position in song-id order (host h gets songs h, h+P, h+2P, ...);
- each epoch visits every host song `examples_per_song` times in an order drawn from (seed, epoch, host);
- the crop offset comes from numpy seeded by the example's seed, every other draw from stateless TF ops
  seeded by it, so parallel map workers cannot change the result;
- `start_step` skips cheap index records (not audio), so a resumed run sees exactly the batches it
  would have seen.
"""
from __future__ import annotations

import logging
from typing import Iterator

import ml_collections
import numpy as np
import tensorflow as tf

from diffariff_jax.data import layouts, ops
from diffariff_jax.data.stems import ProbedSong, probe_songs, read_window

log = logging.getLogger(__name__)


def default_data_config() -> ml_collections.ConfigDict:
    """Every setting the pipelines read (embed as config.data and override per model/variant)."""
    return ml_collections.ConfigDict({
        "root": "",                    # dataset folder
        "layout": "demo",              # generic | musdb18hq | slakh2100 | moisesdb | demo
        "split": "train",
        "split_fractions": (0.9, 0.05, 0.05),  # train/validation/test for songs without an official split
        "sample_rate": 48000,
        "crop_seconds": 10.0,          # LDM: 10 s segments; CAE: e.g. 32768 / 48000
        "examples_per_song": 8,        # crops per song per epoch
        "validate": "header",          # "header" (fast) | "full" (decodes every file: NaN, silence)
        "silence_db": -50.0,           # a stem is silent in a crop below this RMS level (dBFS)
        "max_crop_tries": 8,           # new offsets tried when every stem is silent in a crop
        "context_keep_prob": 0.5,      # each non-target stem joins the context with this probability
        "context_gain_db": (-12.0, 0.0),
        "loudness_db": -20.0,          # RMS level of context + target after normalisation
        "loudness_jitter_db": 4.0,     # +- uniform jitter on loudness_db
        "peak_limit": 0.99,
        "cae_mix_prob": 0.5,           # CAE crops: full mix with this probability, else a single stem
        "num_parallel_calls": -1,      # -1 = tf.data.AUTOTUNE
        "prefetch": 2,                 # batches
    })


def _check_config(cfg: ml_collections.ConfigDict) -> None:
    problems = []
    if cfg.crop_seconds <= 0:
        problems.append(f"crop_seconds must be > 0, got {cfg.crop_seconds}")
    if not 0.0 <= cfg.context_keep_prob <= 1.0:
        problems.append(f"context_keep_prob must be in [0, 1], got {cfg.context_keep_prob}")
    if not 0.0 <= cfg.cae_mix_prob <= 1.0:
        problems.append(f"cae_mix_prob must be in [0, 1], got {cfg.cae_mix_prob}")
    if cfg.context_gain_db[0] > cfg.context_gain_db[1]:
        problems.append(f"context_gain_db must be (min, max), got {tuple(cfg.context_gain_db)}")
    if cfg.examples_per_song < 1 or cfg.max_crop_tries < 1:
        problems.append("examples_per_song and max_crop_tries must be >= 1")
    if cfg.validate not in ("header", "full"):
        problems.append(f"validate must be 'header' or 'full', got {cfg.validate!r}")
    if problems:
        raise ValueError("data config: " + "; ".join(problems))


def crop_samples(cfg: ml_collections.ConfigDict) -> int:
    return int(round(cfg.crop_seconds * cfg.sample_rate))


def host_songs(cfg: ml_collections.ConfigDict, process_index: int, process_count: int,
               skips: layouts.Skips | None = None) -> list[ProbedSong]:
    """Scans cfg.root, keeps cfg.split, takes this host's share and validates it (bad input skipped)."""
    _check_config(cfg)
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, process_count={process_count})")
    skips = layouts.Skips() if skips is None else skips
    songs = layouts.songs_in_split(layouts.scan(cfg.root, cfg.layout, skips), cfg.split, tuple(cfg.split_fractions))
    if len(songs) < process_count:
        raise ValueError(f"{cfg.root}: split {cfg.split!r} has {len(songs)} songs, fewer than the "
                         f"{process_count} hosts reading it")
    mine = songs[process_index::process_count]
    probed = probe_songs(mine, cfg.sample_rate, cfg.crop_seconds, skips, full=cfg.validate == "full",
                         silence_db=cfg.silence_db)
    log.info("host %d/%d: %d of %d %s songs usable; skipped: %s", process_index, process_count,
             len(probed), len(mine), cfg.split, skips.summary())
    if not probed:
        raise ValueError(f"{cfg.root}: no usable song for host {process_index} in split {cfg.split!r} "
                         f"(skipped: {skips.summary()})")
    return probed


def _index_stream(num_songs: int, cfg, seed: int, process_index: int, process_count: int,
                  start_example: int, num_epochs: int | None) -> Iterator[tuple[np.int32, np.ndarray]]:
    """(song index, example seed [2]) for host examples start_example, start_example+1, ..."""
    per_epoch = num_songs * cfg.examples_per_song
    epoch, pos = divmod(start_example, per_epoch)
    while num_epochs is None or epoch < num_epochs:
        order = np.random.default_rng([seed, epoch, process_index]).permutation(per_epoch)
        for p in range(pos, per_epoch):
            example = (epoch * per_epoch + p) * process_count + process_index  # unique over hosts
            yield np.int32(order[p] // cfg.examples_per_song), np.array([seed, example], np.int64)
        epoch, pos = epoch + 1, 0


def _window_fn(songs: list[ProbedSong], cfg):
    """numpy (song index, seed) -> (stems [S, L], offset): a crop where some stem is not silent."""
    length = crop_samples(cfg)

    def window(idx, seed):
        song = songs[int(idx)]
        rng = np.random.default_rng(seed.tolist())
        best, best_db = None, -np.inf
        for _ in range(cfg.max_crop_tries):
            offset = int(rng.integers(0, max(song.num_samples - length, 0) + 1))
            stems = read_window(song, offset, length, cfg.sample_rate)
            level = 10 * np.log10(np.einsum("ij,ij->i", stems, stems).max() / length + 1e-10)
            if level >= cfg.silence_db:
                return stems, np.int64(offset)
            if level > best_db:
                best, best_db = (stems, np.int64(offset)), level
        log.warning("%s: no crop with a stem above %.0f dBFS in %d tries; using the loudest (%.1f dBFS)",
                    song.song_id, cfg.silence_db, cfg.max_crop_tries, best_db)
        return best

    return window


def _read_stage(songs: list[ProbedSong], cfg, seed: int, process_index: int, process_count: int,
                start_example: int, num_epochs: int | None) -> tf.data.Dataset:
    """Dataset of (song index, seed, stems [S, L], offset) in stream order."""
    length = crop_samples(cfg)
    window = _window_fn(songs, cfg)
    ds = tf.data.Dataset.from_generator(
        lambda: _index_stream(len(songs), cfg, seed, process_index, process_count, start_example, num_epochs),
        output_signature=(tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.int64)))

    def read(idx, ex_seed):
        stems, offset = tf.numpy_function(window, [idx, ex_seed], (tf.float32, tf.int64), stateful=False)
        return idx, ex_seed, tf.ensure_shape(stems, [None, length]), tf.ensure_shape(offset, [])

    return ds.map(read, num_parallel_calls=_parallel(cfg), deterministic=True)


def _parallel(cfg) -> int:
    return tf.data.AUTOTUNE if cfg.num_parallel_calls < 0 else int(cfg.num_parallel_calls)


def _loudness(cfg, seed: tf.Tensor) -> tf.Tensor:
    return cfg.loudness_db + tf.random.stateless_uniform([], seed, -cfg.loudness_jitter_db, cfg.loudness_jitter_db)


def _finish(ds: tf.data.Dataset, cfg, batch_size: int, num_epochs: int | None) -> tf.data.Dataset:
    opts = tf.data.Options()
    opts.deterministic = True
    # An endless stream has fixed batch shapes (jit-friendly); a finite one keeps its last partial batch.
    ds = ds.batch(batch_size, drop_remainder=num_epochs is None)
    return ds.prefetch(cfg.prefetch).with_options(opts)


def stem_pair_dataset(cfg: ml_collections.ConfigDict, batch_size: int, seed: int = 0,
                      process_index: int = 0, process_count: int = 1, start_step: int = 0,
                      songs: list[ProbedSong] | None = None, num_epochs: int | None = None) -> tf.data.Dataset:
    """Per-host batches of (context, target) pairs for the LDM's precompute (endless by default).

    Yields dicts: context, target: [batch, L] float32 (L = crop_seconds * sample_rate);
    song_id, instrument (of the target): [batch] string; offset: [batch] int64 (samples at sample_rate).
    start_step: batches already consumed (resume). songs: pre-probed songs (default: from cfg.root).
    num_epochs: stop after this many epochs (each song seen examples_per_song times per epoch);
    the last batch may then be smaller.
    """
    _check_config(cfg)
    songs = songs if songs is not None else host_songs(cfg, process_index, process_count)
    ids = tf.constant([s.song_id for s in songs])
    flat_instruments = tf.constant([i for s in songs for i in s.instruments])
    first = tf.constant(np.cumsum([0] + [len(s.instruments) for s in songs[:-1]]), tf.int32)
    lo, hi = cfg.context_gain_db

    def pair(idx, ex_seed, stems, offset):
        target_idx = ops.choose_masked(ops.nonsilent_mask(stems, cfg.silence_db), ops.fold_seed(ex_seed, 1))
        n = tf.shape(stems)[0]
        others = tf.not_equal(tf.range(n), target_idx)
        keep = ops.random_subset(others, cfg.context_keep_prob, ops.fold_seed(ex_seed, 2))
        gains = ops.random_gains(n, lo, hi, ops.fold_seed(ex_seed, 3))
        context = ops.mix(stems, tf.where(keep, gains, 0.0))
        context, target = ops.normalize_loudness_pair(context, stems[target_idx],
                                                      _loudness(cfg, ops.fold_seed(ex_seed, 4)), cfg.peak_limit)
        return {"context": context, "target": target, "song_id": tf.gather(ids, idx),
                "instrument": tf.gather(flat_instruments, tf.gather(first, idx) + target_idx), "offset": offset}

    ds = _read_stage(songs, cfg, seed, process_index, process_count, start_step * batch_size, num_epochs)
    return _finish(ds.map(pair, num_parallel_calls=_parallel(cfg), deterministic=True), cfg, batch_size,
                   num_epochs)


def cae_dataset(cfg: ml_collections.ConfigDict, batch_size: int, seed: int = 0, process_index: int = 0,
                process_count: int = 1, start_step: int = 0,
                songs: list[ProbedSong] | None = None) -> tf.data.Dataset:
    """Infinite per-host batches {"audio": [batch, L] float32} of mono crops for CAE training.

    With probability cae_mix_prob a crop is the mix of all stems (random gains), else one stem that
    is not silent there; each is normalised to loudness_db (+- jitter) and peak-limited.
    """
    _check_config(cfg)
    songs = songs if songs is not None else host_songs(cfg, process_index, process_count)
    lo, hi = cfg.context_gain_db

    def crop(idx, ex_seed, stems, offset):
        del idx, offset
        n = tf.shape(stems)[0]
        one = ops.choose_masked(ops.nonsilent_mask(stems, cfg.silence_db), ops.fold_seed(ex_seed, 1))
        use_mix = tf.random.stateless_uniform([], ops.fold_seed(ex_seed, 2)) < cfg.cae_mix_prob
        weights = tf.where(use_mix, ops.random_gains(n, lo, hi, ops.fold_seed(ex_seed, 3)),
                           tf.one_hot(one, n, dtype=tf.float32))
        audio = ops.normalize_loudness(ops.mix(stems, weights), _loudness(cfg, ops.fold_seed(ex_seed, 4)),
                                       cfg.peak_limit)
        return {"audio": audio}

    ds = _read_stage(songs, cfg, seed, process_index, process_count, start_step * batch_size, None)
    return _finish(ds.map(crop, num_parallel_calls=_parallel(cfg), deterministic=True), cfg, batch_size, None)
