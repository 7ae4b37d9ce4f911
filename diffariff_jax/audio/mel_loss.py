"""A log-mel reconstruction loss on compressed complex spectrograms, in JAX (the CAE demo recipe).

    loss(S_hat, S) = mean over (band, frame) of | log10(max(M(P(S_hat)), eps)) - log10(max(M(S), eps)) |

S: [batch, bins, frames, 2] compressed complex STFT (audio/stft.py); M: mel power of the decompressed
spectrogram (a fixed [n_mels, bins] filterbank); eps = peak power of the reference x 10^(-range_db / 10),
per example, so bins far below the music do not dominate. P is the *consistency projection*: inverse
STFT, then STFT again. A spectrogram predicted bin by bin need not be the STFT of any waveform; only
what survives P is heard, so the loss measures the audio the decoder will actually produce, and its
gradient asks for phases that agree across overlapping frames (what Griffin-Lim iterates towards).
"""
from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np
from jax import Array

from diffariff_jax.audio.stft import Stft


def mel_filterbank(sample_rate: int, window: int, n_mels: int) -> np.ndarray:
    """Slaney-style mel filterbank restricted to the STFT's kept bins: [n_mels, window // 2]."""
    import librosa  # numpy-side constant; imported here so audio/ stays light to import

    return librosa.filters.mel(sr=sample_rate, n_fft=window, n_mels=n_mels)[:, : window // 2].astype(np.float32)


def project(stft: Stft, spec: Array) -> Array:
    """spec [batch, bins, frames, 2] -> the compressed STFT of its inverse STFT (same shape)."""
    plain = dataclasses.replace(stft, nyquist_iters=0)  # the Nyquist bin carries ~1/2048 of the energy
    return plain.spectrogram(plain.inverse_spectrogram(spec))


def mel_power(stft: Stft, spec: Array, filterbank: Array) -> Array:
    """spec [batch, bins, frames, 2] -> mel power [batch, n_mels, frames]."""
    compressed_mag = jnp.sqrt(jnp.sum(jnp.square(spec), axis=-1) + 1e-12)  # [batch, bins, frames]
    power = jnp.square((compressed_mag / stft.beta) ** (1.0 / stft.alpha))
    return jnp.einsum("mk,bkt->bmt", filterbank, power)


def log_mel_l1(stft: Stft, estimate: Array, reference: Array, filterbank: Array,
               range_db: float = 80.0) -> Array:
    """Per-example loss [batch] of a predicted spectrogram against the clean one (see module doc)."""
    est = mel_power(stft, project(stft, estimate), filterbank)
    ref = mel_power(stft, reference, filterbank)
    eps = jnp.max(ref, axis=(1, 2), keepdims=True) * 10.0 ** (-range_db / 10.0) + 1e-12
    diff = jnp.log10(jnp.maximum(est, eps)) - jnp.log10(jnp.maximum(ref, eps))
    return jnp.mean(jnp.abs(diff), axis=(1, 2))
