"""Pure TensorFlow ops for stem mixing: silence tests, target choice, gains, loudness normalisation, mixing.

Every random op is stateless: it takes a `seed` tensor of shape [2] (int32/int64), so an example's
randomness depends only on its seed, whatever tf.data's parallelism. Loudness is RMS level in dBFS
(no K-weighting): cheap, and what matters here is the level of a pair relative to a fixed reference.
"""
from __future__ import annotations

import tensorflow as tf

# TF must never take an accelerator: JAX owns them (set before any TF op runs).
tf.config.set_visible_devices([], "GPU")

_EPS = 1e-10


def fold_seed(seed: tf.Tensor, k: int) -> tf.Tensor:
    """An independent seed [2] derived from `seed` [2] and the integer `k` (one per random decision)."""
    return tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), k)


def rms_db(x: tf.Tensor) -> tf.Tensor:
    """RMS level in dBFS over the last axis. x: [..., samples] -> [...]."""
    ms = tf.reduce_mean(tf.square(x), axis=-1)
    return 10.0 * tf.math.log(ms + _EPS) / tf.math.log(10.0)


def db_to_gain(db: tf.Tensor) -> tf.Tensor:
    return tf.pow(10.0, db / 20.0)


def nonsilent_mask(stems: tf.Tensor, threshold_db: float) -> tf.Tensor:
    """stems: [num_stems, samples] -> bool [num_stems], True where the RMS level reaches threshold_db."""
    return rms_db(stems) >= threshold_db


def choose_masked(mask: tf.Tensor, seed: tf.Tensor, fallback: tf.Tensor | None = None) -> tf.Tensor:
    """An index drawn uniformly among the True entries of mask [n] (int32 scalar).

    When no entry is True the draw is among the True entries of `fallback` [n] (default: all entries).
    """
    fallback = tf.ones_like(mask) if fallback is None else fallback
    mask = tf.cond(tf.reduce_any(mask), lambda: mask, lambda: fallback)
    scores = tf.random.stateless_uniform(tf.shape(mask), seed)
    return tf.cast(tf.argmax(tf.where(mask, scores, -1.0)), tf.int32)


def random_subset(candidates: tf.Tensor, keep_prob: float, seed: tf.Tensor) -> tf.Tensor:
    """Each True entry of candidates [n] kept independently with probability keep_prob. -> bool [n]."""
    return tf.logical_and(candidates, tf.random.stateless_uniform(tf.shape(candidates), seed) < keep_prob)


def random_gains(n: tf.Tensor, min_db: float, max_db: float, seed: tf.Tensor) -> tf.Tensor:
    """[n] linear gains with levels uniform in [min_db, max_db] dB."""
    return db_to_gain(tf.random.stateless_uniform(tf.reshape(n, [1]), seed, minval=min_db, maxval=max_db))


def mix(stems: tf.Tensor, weights: tf.Tensor) -> tf.Tensor:
    """stems: [num_stems, samples], weights: [num_stems] -> [samples] weighted sum (0 weight = left out)."""
    return tf.reduce_sum(stems * tf.cast(weights, stems.dtype)[:, None], axis=0)


def normalize_loudness(x: tf.Tensor, loudness_db: tf.Tensor, peak_limit: float) -> tf.Tensor:
    """Scales x [samples] to loudness_db dBFS RMS, then down (never up) so |x| <= peak_limit."""
    return normalize_loudness_pair(x, tf.zeros_like(x), loudness_db, peak_limit)[0]


def normalize_loudness_pair(context: tf.Tensor, target: tf.Tensor, loudness_db: tf.Tensor,
                            peak_limit: float, max_gain_db: float = float("inf")) -> tuple[tf.Tensor, tf.Tensor]:
    """One gain for both signals so their sum (the full mix) sits at loudness_db dBFS RMS.

    Sharing the gain keeps the balance between target and context, which the model must learn. The
    gain is at most max_gain_db (a -70 dBFS noise floor must not become a -20 dBFS target), and is
    lowered if the context, the target or their sum would peak above peak_limit.
    An all-zero pair stays zero. context, target: [samples].
    """
    full = context + target
    gain = db_to_gain(tf.minimum(loudness_db - rms_db(full), max_gain_db))
    peak = tf.reduce_max(tf.abs(tf.stack([context, target, full])))
    gain = tf.minimum(gain, peak_limit / (peak + _EPS))
    return context * gain, target * gain
