"""Compressed complex STFT of the consistency autoencoder (SPEC 1) and its exact inverse, in JAX.

Forward: frames of `window` samples every `hop` samples (no centring), periodic Hann window, real FFT,
the Nyquist bin dropped (1024 bins for window 2048), amplitude compression
X' = beta * |X|^alpha * exp(i angle X), real and imaginary parts as two channels.
Layout: waveforms [batch, samples]; spectrograms [batch, freq, frames, 2] (channels last, so the 2-D
convolutions of the CAE read it as NHWC with H = frequency, W = time).

Inverse: undo the compression, inverse FFT, window, overlap-add and divide by the overlap-added squared
window (the least-squares inverse; in the interior it equals the tf.signal-style inverse window that
Music2Latent uses). Dropping the Nyquist bin loses ~1/2048 of white noise's energy (35 dB SNR with a
zero bin, Music2Latent's choice); the inverse restores it by a few fixed-point steps, which makes the
round trip exact to float precision (> 90 dB on white noise).

Any length: `pad_for_blocks` pads a waveform so that the STFT has a multiple of `frames_per_block`
frames and every input sample is covered; `spec_to_wave(..., num_samples)` crops back, so a round trip
returns the input's length. Frame arithmetic (hop h, window w = 4h, block = frames_per_block * h):
  blocks  = max(1, ceil(num_samples / block))
  padded  = blocks * block + (w - h)        (left pad (w - h) / 2, the rest on the right)
  frames  = blocks * frames_per_block
so STFT frame group b is centred on input samples [b * block, (b + 1) * block).
"""
from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array


@dataclasses.dataclass(frozen=True)
class Stft:
    """Hyperparameters of the compressed complex STFT (config.stft)."""

    hop: int = 512
    window: int = 2048
    alpha: float = 0.65  # magnitude exponent
    beta: float = 0.34  # magnitude scale
    nyquist_iters: int = 16  # fixed-point steps that restore the dropped Nyquist bin in the inverse

    def __post_init__(self):
        if self.window % self.hop:
            raise ValueError(f"stft: window {self.window} must be a multiple of hop {self.hop}")

    @classmethod
    def from_config(cls, cfg) -> "Stft":
        return cls(hop=int(cfg.hop), window=int(cfg.window), alpha=float(cfg.alpha), beta=float(cfg.beta),
                   nyquist_iters=int(cfg.nyquist_iters))

    @property
    def bins(self) -> int:
        """Frequency bins kept (the Nyquist bin is dropped)."""
        return self.window // 2

    @property
    def overlap(self) -> int:
        """Number of frames covering one interior sample."""
        return self.window // self.hop

    def hann(self) -> np.ndarray:
        """Periodic Hann window (the torch.hann_window default)."""
        n = np.arange(self.window)
        return (0.5 - 0.5 * np.cos(2.0 * np.pi * n / self.window)).astype(np.float32)

    def num_frames(self, num_samples: int) -> int:
        """Frames of an unpadded signal: floor((samples - window) / hop) + 1 (0 if too short)."""
        return max(0, (num_samples - self.window) // self.hop + 1)

    # ---- compressed complex STFT of an unpadded signal -------------------------------------------

    def spectrogram(self, wav: Array) -> Array:
        """wav: [batch, samples] -> spec: [batch, bins, frames, 2] (compressed real/imag)."""
        spec = self.compress(self._stft(wav)[..., : self.bins])  # [batch, frames, bins]
        spec = jnp.stack([spec.real, spec.imag], axis=-1)  # [batch, frames, bins, 2]
        return jnp.transpose(spec, (0, 2, 1, 3)).astype(jnp.float32)

    def inverse_spectrogram(self, spec: Array) -> Array:
        """spec: [batch, bins, frames, 2] -> wav: [batch, window + hop * (frames - 1)].

        The dropped Nyquist bin is restored by `nyquist_iters` fixed-point steps (set it from each
        reconstruction's own STFT): the Hann window leaks Nyquist content into the kept top bins, so the
        overlapping frames determine it; each step gains about 3.7 dB of SNR on white noise.
        """
        z = self.decompress(jnp.transpose(spec[..., 0] + 1j * spec[..., 1], (0, 2, 1)))  # [batch, frames, bins]

        def with_nyquist(nyquist):
            return self._istft(jnp.concatenate([z, nyquist], axis=-1))

        def step(_, nyquist):
            return self._stft(with_nyquist(nyquist))[..., self.bins :]

        nyquist = jax.lax.fori_loop(0, self.nyquist_iters, step, jnp.zeros_like(z[..., :1]))
        return with_nyquist(nyquist).astype(jnp.float32)

    def _stft(self, wav: Array) -> Array:
        """wav: [batch, samples] -> complex [batch, frames, bins + 1] (uncompressed, with Nyquist)."""
        frames = self.num_frames(wav.shape[-1])
        if frames < 1:
            raise ValueError(f"stft: {wav.shape[-1]} samples, need at least one window of {self.window}")
        idx = np.arange(frames)[:, None] * self.hop + np.arange(self.window)[None, :]
        return jnp.fft.rfft(wav[:, idx] * self.hann(), axis=-1)

    def _istft(self, z: Array) -> Array:
        """complex [batch, frames, bins + 1] -> least-squares inverse [batch, window + hop * (frames - 1)]."""
        framed = jnp.fft.irfft(z, n=self.window, axis=-1) * self.hann()  # [batch, frames, window]
        denom = self.window_envelope(z.shape[1])
        # Samples that no window weighs (the very first one) carry no information; they are padding.
        safe = np.where(denom > 1e-6, denom, 1.0)
        return jnp.where(denom > 1e-6, self._overlap_add(framed) / safe, 0.0)

    def compress(self, z: Array) -> Array:
        """beta * |z|^alpha * exp(i angle z), with 0 -> 0."""
        mag = jnp.abs(z)
        safe = jnp.where(mag > 0, mag, 1.0)
        return z * jnp.where(mag > 0, self.beta * safe ** (self.alpha - 1.0), 0.0)

    def decompress(self, z: Array) -> Array:
        """Inverse of compress: (|z| / beta)^(1/alpha) * exp(i angle z)."""
        mag = jnp.abs(z)
        safe = jnp.where(mag > 0, mag, 1.0)
        return z * jnp.where(mag > 0, (safe / self.beta) ** (1.0 / self.alpha) / safe, 0.0)

    def window_envelope(self, frames: int) -> np.ndarray:
        """Overlap-added squared window, [window + hop * (frames - 1)] (static, numpy)."""
        env = np.zeros((frames + self.overlap - 1) * self.hop, np.float64)
        for t in range(frames):
            env[t * self.hop : t * self.hop + self.window] += self.hann().astype(np.float64) ** 2
        return env.astype(np.float32)

    def _overlap_add(self, framed: Array) -> Array:
        """framed: [batch, frames, window] -> [batch, window + hop * (frames - 1)]."""
        batch, frames, _ = framed.shape
        parts = framed.reshape(batch, frames, self.overlap, self.hop)
        out = jnp.zeros((batch, frames + self.overlap - 1, self.hop), framed.dtype)
        for k in range(self.overlap):
            out = out.at[:, k : k + frames].add(parts[:, :, k])
        return out.reshape(batch, -1)

    # ---- any length: pad to whole blocks of frames, crop back --------------------------------------

    def blocks_for(self, num_samples: int, frames_per_block: int) -> int:
        """Blocks of `frames_per_block` frames that cover `num_samples` samples (at least 1)."""
        return max(1, math.ceil(num_samples / (self.hop * frames_per_block)))

    def left_pad(self) -> int:
        """Samples padded before the signal so frame groups are centred on their blocks."""
        return (self.window - self.hop) // 2

    def pad_for_blocks(self, wav: Array, frames_per_block: int) -> Array:
        """wav: [batch, samples] -> zero-padded [batch, blocks * block + window - hop]."""
        n = wav.shape[-1]
        total = self.blocks_for(n, frames_per_block) * self.hop * frames_per_block + self.window - self.hop
        return jnp.pad(wav, ((0, 0), (self.left_pad(), total - n - self.left_pad())))

    def wave_to_spec(self, wav: Array, frames_per_block: int = 1) -> Array:
        """wav: [batch, samples] -> spec: [batch, bins, blocks * frames_per_block, 2]."""
        return self.spectrogram(self.pad_for_blocks(wav, frames_per_block))

    def spec_to_wave(self, spec: Array, num_samples: int | None = None) -> Array:
        """spec: [batch, bins, frames, 2] -> wav: [batch, num_samples] (default frames * hop)."""
        wav = self.inverse_spectrogram(spec)
        n = spec.shape[2] * self.hop if num_samples is None else num_samples
        if n > spec.shape[2] * self.hop:
            raise ValueError(f"stft: {n} samples requested from {spec.shape[2]} frames (at most {spec.shape[2] * self.hop})")
        return wav[:, self.left_pad() : self.left_pad() + n]
