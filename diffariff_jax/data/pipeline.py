"""The tf.data stem-mixing pipeline: (context mix, target stem) pairs cut from multitrack songs.

Per example: a random time crop of `crop_seconds` of one song; a target stem drawn among the stems that
may be targets (layouts.py: groups and bleeding stems are context-only) and are not silent in that crop;
a context mixed from a random subset (possibly empty) of the other stems; one shared gain that brings the
pair's sum to `loudness_db`, capped at `max_gain_db` so a near-silent crop is never boosted into a noise
target. Every stem, the target included, gets a level drawn uniformly from `stem_gain_db`, so the
target-to-context balance is centred on the source mix's own balance (a target kept at 0 dB against
quieter context stems would teach the model stems louder than real mixes have). The target's level
before any gain is returned (`target_db`), so consumers drop crops that were silent to begin with.

A stem that correlates above `mix_corr_threshold` with the sum of the others in a crop is a mix filed
as a stem (a name the layout did not recognise): it is left out of that crop and logged once.

Order and randomness are a function of (seed, epoch, process_index) and the example's position only:
- songs are split over hosts by position in song-id order (host h gets songs h, h+P, h+2P, ...);
- each epoch visits every host song `examples_per_song` times, or `examples_per_minute` times per minute
  of audio when that is more, in an order drawn from (seed, epoch, host);
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
from diffariff_jax.data.stems import ProbedSong, mix_like_stems, probe_songs, read_window

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
        "examples_per_song": 8,        # crops per song per epoch (the minimum with examples_per_minute)
        "examples_per_minute": 0.0,    # > 0: long songs get ceil(minutes * this) crops per epoch
        "group_targets": False,        # MUSDB drums/other/vocals, MoisesDB other may be targets
        "bleed_targets": False,        # stems flagged as bleeding (MoisesDB, MedleyDB) may be targets
        "validate": "header",          # "header" (fast) | "full" (decodes every file: NaN, silence)
        "silence_db": -50.0,           # a stem is silent in a crop below this RMS level (dBFS)
        "max_crop_tries": 8,           # new offsets tried when every stem is silent in a crop
        "context_keep_prob": 0.5,      # each non-target stem joins the context with this probability
        "stem_gain_db": (-6.0, 6.0),   # every stem's level (target too): the source balance +- 6 dB
        "loudness_db": -20.0,          # RMS level of context + target after normalisation
        "loudness_jitter_db": 4.0,     # +- uniform jitter on loudness_db
        "max_gain_db": 20.0,           # cap on the shared loudness gain (quiet crops stay quiet)
        "mix_corr_threshold": 0.9,     # a stem correlating above this with the others' sum is a mix
        "skip_mix_like": True,         # False: only log such stems, keep them
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
    lo, hi = setting(cfg, "stem_gain_db")
    if lo > hi:
        problems.append(f"stem_gain_db must be (min, max), got {(lo, hi)}")
    if setting(cfg, "examples_per_minute") < 0 or setting(cfg, "max_gain_db") < 0:
        problems.append("examples_per_minute and max_gain_db must be >= 0")
    if cfg.examples_per_song < 1 or cfg.max_crop_tries < 1:
        problems.append("examples_per_song and max_crop_tries must be >= 1")
    if cfg.validate not in ("header", "full"):
        problems.append(f"validate must be 'header' or 'full', got {cfg.validate!r}")
    if problems:
        raise ValueError("data config: " + "; ".join(problems))


def setting(cfg: ml_collections.ConfigDict, key: str):
    """cfg[key], or its default_data_config value for configs written before the key existed."""
    return cfg[key] if key in cfg else default_data_config()[key]


def examples_per_song(songs: list[ProbedSong], cfg: ml_collections.ConfigDict) -> np.ndarray:
    """[num_songs] crops per song per epoch: examples_per_song, more for long songs (examples_per_minute)."""
    minutes = np.array([s.num_samples / cfg.sample_rate / 60.0 for s in songs])
    per_minute = np.ceil(minutes * float(setting(cfg, "examples_per_minute")) - 1e-9)
    return np.maximum(int(cfg.examples_per_song), per_minute).astype(np.int64)


def crop_samples(cfg: ml_collections.ConfigDict) -> int:
    return int(round(cfg.crop_seconds * cfg.sample_rate))


def host_songs(cfg: ml_collections.ConfigDict, process_index: int, process_count: int,
               skips: layouts.Skips | None = None) -> list[ProbedSong]:
    """Scans cfg.root, keeps cfg.split, takes this host's share and validates it (bad input skipped)."""
    _check_config(cfg)
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, process_count={process_count})")
    skips = layouts.Skips() if skips is None else skips
    scanned = layouts.scan(cfg.root, cfg.layout, skips, group_targets=setting(cfg, "group_targets"),
                           bleed_targets=setting(cfg, "bleed_targets"))
    songs = layouts.songs_in_split(scanned, cfg.split, tuple(cfg.split_fractions))
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


def _index_stream(counts: np.ndarray, seed: int, process_index: int, process_count: int,
                  start_example: int, num_epochs: int | None) -> Iterator[tuple[np.int32, np.ndarray]]:
    """(song index, example seed [2]) for host examples start_example, start_example+1, ...

    counts: [num_songs] visits per song per epoch (examples_per_song).
    """
    song_of = np.repeat(np.arange(len(counts), dtype=np.int32), counts)
    per_epoch = song_of.size
    epoch, pos = divmod(start_example, per_epoch)
    while num_epochs is None or epoch < num_epochs:
        order = np.random.default_rng([seed, epoch, process_index]).permutation(per_epoch)
        for p in range(pos, per_epoch):
            example = (epoch * per_epoch + p) * process_count + process_index  # unique over hosts
            yield song_of[order[p]], np.array([seed, example], np.int64)
        epoch, pos = epoch + 1, 0


def _window_fn(songs: list[ProbedSong], cfg, skips: layouts.Skips | None):
    """numpy (song index, seed) -> (stems [S, L], offset): a crop where some possible target is not silent.

    Mix-like stems are zeroed in the crop (cfg.skip_mix_like) and logged once per stem. When every try
    is silent the loudest crop is returned; its target is then silent and consumers drop it (target_db).
    """
    length = crop_samples(cfg)
    threshold, skip_mix = float(setting(cfg, "mix_corr_threshold")), bool(setting(cfg, "skip_mix_like"))
    flagged: set[tuple[int, int]] = set()

    def window(idx, seed):
        song = songs[int(idx)]
        targets = np.array(song.targets())
        rng = np.random.default_rng(seed.tolist())
        best, best_db = None, -np.inf
        for _ in range(cfg.max_crop_tries):
            offset = int(rng.integers(0, max(song.num_samples - length, 0) + 1))
            stems = read_window(song, offset, length, cfg.sample_rate, skips)
            for k in np.flatnonzero(mix_like_stems(stems, threshold)):
                if (int(idx), int(k)) not in flagged:
                    flagged.add((int(idx), int(k)))
                    log.warning("%s: stem %r correlates above %.2f with the sum of the others: a mix filed as a "
                                "stem%s", song.paths[k][0], song.instruments[k], threshold,
                                "; left out of the crops where it does" if skip_mix else "")
                if skip_mix:
                    stems[k] = 0.0
            level = 10 * np.log10(np.einsum("ij,ij->i", stems[targets], stems[targets]).max() / length + 1e-10)
            if level >= cfg.silence_db:
                return stems, np.int64(offset)
            if level > best_db:
                best, best_db = (stems, np.int64(offset)), level
        log.info("%s: no crop with a possible target above %.0f dBFS in %d tries (loudest %.1f dBFS)",
                 song.song_id, cfg.silence_db, cfg.max_crop_tries, best_db)
        return best

    return window


def _read_stage(songs: list[ProbedSong], cfg, seed: int, process_index: int, process_count: int,
                start_example: int, num_epochs: int | None, skips: layouts.Skips | None) -> tf.data.Dataset:
    """Dataset of (song index, seed, stems [S, L], offset) in stream order."""
    length = crop_samples(cfg)
    window = _window_fn(songs, cfg, skips)
    counts = examples_per_song(songs, cfg)
    ds = tf.data.Dataset.from_generator(
        lambda: _index_stream(counts, seed, process_index, process_count, start_example, num_epochs),
        output_signature=(tf.TensorSpec([], tf.int32), tf.TensorSpec([2], tf.int64)))

    def read(idx, ex_seed):
        stems, offset = tf.numpy_function(window, [idx, ex_seed], (tf.float32, tf.int64), stateful=False)
        return idx, ex_seed, tf.ensure_shape(stems, [None, length]), tf.ensure_shape(offset, [])

    return ds.map(read, num_parallel_calls=_parallel(cfg), deterministic=True)


def _parallel(cfg) -> int:
    return tf.data.AUTOTUNE if cfg.num_parallel_calls < 0 else int(cfg.num_parallel_calls)


def _normalize_pair(cfg, context: tf.Tensor, target: tf.Tensor, seed: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
    return ops.normalize_loudness_pair(context, target, _loudness(cfg, seed), cfg.peak_limit,
                                       float(setting(cfg, "max_gain_db")))


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
                      songs: list[ProbedSong] | None = None, num_epochs: int | None = None,
                      skips: layouts.Skips | None = None) -> tf.data.Dataset:
    """Per-host batches of (context, target) pairs for the LDM's precompute (endless by default).

    Yields dicts: context, target: [batch, L] float32 (L = crop_seconds * sample_rate);
    song_id, instrument (of the target): [batch] string; offset: [batch] int64 (samples at sample_rate);
    target_db: [batch] float32, the target stem's RMS level (dBFS) before any gain: below
    cfg.silence_db the crop had no audible target and the pair should be dropped.
    start_step: batches already consumed (resume). songs: pre-probed songs (default: from cfg.root).
    num_epochs: stop after this many epochs (the last batch may then be smaller).
    skips: counts stems that failed to decode in a crop, with their paths.
    """
    _check_config(cfg)
    songs = songs if songs is not None else host_songs(cfg, process_index, process_count, skips)
    ids = tf.constant([s.song_id for s in songs])
    flat_instruments = tf.constant([i for s in songs for i in s.instruments])
    flat_targets = tf.constant([t for s in songs for t in s.targets()])
    first = tf.constant(np.cumsum([0] + [len(s.instruments) for s in songs[:-1]]), tf.int32)
    lo, hi = setting(cfg, "stem_gain_db")

    def pair(idx, ex_seed, stems, offset):
        n = tf.shape(stems)[0]
        targets = tf.gather(flat_targets, tf.gather(first, idx) + tf.range(n))
        audible = tf.logical_and(ops.nonsilent_mask(stems, cfg.silence_db), targets)
        target_idx = ops.choose_masked(audible, ops.fold_seed(ex_seed, 1), fallback=targets)
        others = tf.not_equal(tf.range(n), target_idx)
        keep = ops.random_subset(others, cfg.context_keep_prob, ops.fold_seed(ex_seed, 2))
        gains = ops.random_gains(n, lo, hi, ops.fold_seed(ex_seed, 3))
        context = ops.mix(stems, tf.where(keep, gains, 0.0))
        context, target = _normalize_pair(cfg, context, stems[target_idx] * gains[target_idx],
                                          ops.fold_seed(ex_seed, 4))
        return {"context": context, "target": target, "song_id": tf.gather(ids, idx),
                "instrument": tf.gather(flat_instruments, tf.gather(first, idx) + target_idx), "offset": offset,
                "target_db": ops.rms_db(stems[target_idx])}

    ds = _read_stage(songs, cfg, seed, process_index, process_count, start_step * batch_size, num_epochs, skips)
    return _finish(ds.map(pair, num_parallel_calls=_parallel(cfg), deterministic=True), cfg, batch_size,
                   num_epochs)


def cae_dataset(cfg: ml_collections.ConfigDict, batch_size: int, seed: int = 0, process_index: int = 0,
                process_count: int = 1, start_step: int = 0,
                songs: list[ProbedSong] | None = None, skips: layouts.Skips | None = None) -> tf.data.Dataset:
    """Infinite per-host batches {"audio": [batch, L] float32} of mono crops for CAE training.

    With probability cae_mix_prob a crop is the mix of all stems (random gains), else one stem that
    is not silent there; each is normalised to loudness_db (+- jitter, gain capped at max_gain_db) and
    peak-limited. Context-only stems are fine here: the autoencoder must code any audio.
    """
    _check_config(cfg)
    songs = songs if songs is not None else host_songs(cfg, process_index, process_count, skips)
    lo, hi = setting(cfg, "stem_gain_db")

    def crop(idx, ex_seed, stems, offset):
        del idx, offset
        n = tf.shape(stems)[0]
        one = ops.choose_masked(ops.nonsilent_mask(stems, cfg.silence_db), ops.fold_seed(ex_seed, 1))
        use_mix = tf.random.stateless_uniform([], ops.fold_seed(ex_seed, 2)) < cfg.cae_mix_prob
        weights = tf.where(use_mix, ops.random_gains(n, lo, hi, ops.fold_seed(ex_seed, 3)),
                           tf.one_hot(one, n, dtype=tf.float32))
        audio = _normalize_pair(cfg, ops.mix(stems, weights), tf.zeros_like(stems[0]), ops.fold_seed(ex_seed, 4))[0]
        return {"audio": audio}

    ds = _read_stage(songs, cfg, seed, process_index, process_count, start_step * batch_size, None, skips)
    return _finish(ds.map(crop, num_parallel_calls=_parallel(cfg), deterministic=True), cfg, batch_size, None)
