"""Compressed complex STFT and its exact inverse in PyTorch: the twin of `diffariff_jax/audio/stft.py`.

Forward: frames of `window` samples every `hop` (no centring), periodic Hann window, real FFT, the
Nyquist bin dropped, X' = beta |X|^alpha exp(i angle X), real and imaginary parts as two channels.
Inverse: undo the compression, inverse FFT, window, overlap-add, divide by the overlap-added squared
window; the dropped Nyquist bin is restored by `nyquist_iters` fixed-point steps.
Layout: waveforms [batch, samples]; spectrograms [batch, 2, freq, frames]. Imports only torch.
"""
from __future__ import annotations

import math

import torch


class Stft:
    """`cfg` is the config's `stft` section: hop, window, alpha, beta, nyquist_iters."""

    def __init__(self, cfg: dict):
        self.hop, self.window = int(cfg["hop"]), int(cfg["window"])
        self.alpha, self.beta, self.nyquist_iters = float(cfg["alpha"]), float(cfg["beta"]), int(cfg["nyquist_iters"])
        self.bins, self.overlap = self.window // 2, self.window // self.hop

    def hann(self, device: torch.device) -> torch.Tensor:
        n = torch.arange(self.window, dtype=torch.float64, device=device)
        return (0.5 - 0.5 * torch.cos(2.0 * math.pi * n / self.window)).float()

    def _stft(self, wav: torch.Tensor) -> torch.Tensor:
        """[batch, samples] -> complex [batch, frames, bins + 1]."""
        return torch.fft.rfft(wav.unfold(-1, self.window, self.hop) * self.hann(wav.device), dim=-1)

    def _istft(self, z: torch.Tensor) -> torch.Tensor:
        """complex [batch, frames, bins + 1] -> least-squares inverse [batch, window + hop (frames - 1)]."""
        batch, frames, _ = z.shape
        framed = torch.fft.irfft(z, n=self.window, dim=-1) * self.hann(z.device)
        parts = framed.reshape(batch, frames, self.overlap, self.hop)
        out = torch.zeros((batch, frames + self.overlap - 1, self.hop), dtype=framed.dtype, device=z.device)
        env = torch.zeros((frames + self.overlap - 1, self.hop), dtype=torch.float64, device=z.device)
        hann2 = (self.hann(z.device).double() ** 2).reshape(self.overlap, self.hop)
        for k in range(self.overlap):
            out[:, k:k + frames] += parts[:, :, k]
            env[k:k + frames] += hann2[k]
        out, env = out.reshape(batch, -1), env.reshape(-1).float()
        return torch.where(env > 1e-6, out / torch.where(env > 1e-6, env, torch.ones_like(env)), torch.zeros_like(out))

    def compress(self, z: torch.Tensor) -> torch.Tensor:
        mag = z.abs()
        safe = torch.where(mag > 0, mag, torch.ones_like(mag))
        return z * torch.where(mag > 0, self.beta * safe ** (self.alpha - 1.0), torch.zeros_like(mag))

    def decompress(self, z: torch.Tensor) -> torch.Tensor:
        mag = z.abs()
        safe = torch.where(mag > 0, mag, torch.ones_like(mag))
        return z * torch.where(mag > 0, (safe / self.beta) ** (1.0 / self.alpha) / safe, torch.zeros_like(mag))

    def spectrogram(self, wav: torch.Tensor) -> torch.Tensor:
        """[batch, samples] -> [batch, 2, bins, frames]."""
        spec = self.compress(self._stft(wav.float())[..., :self.bins])  # [batch, frames, bins]
        return torch.stack([spec.real, spec.imag], dim=1).transpose(2, 3).contiguous()

    def inverse_spectrogram(self, spec: torch.Tensor) -> torch.Tensor:
        """[batch, 2, bins, frames] -> [batch, window + hop (frames - 1)]."""
        z = self.decompress(torch.complex(spec[:, 0], spec[:, 1]).transpose(1, 2))  # [batch, frames, bins]
        nyquist = torch.zeros_like(z[..., :1])
        for _ in range(self.nyquist_iters):
            nyquist = self._stft(self._istft(torch.cat([z, nyquist], dim=-1)))[..., self.bins:]
        return self._istft(torch.cat([z, nyquist], dim=-1))

    def left_pad(self) -> int:
        return (self.window - self.hop) // 2

    def wave_to_spec(self, wav: torch.Tensor, frames_per_block: int) -> torch.Tensor:
        """[batch, samples] -> [batch, 2, bins, blocks * frames_per_block], blocks = ceil(samples / block)."""
        n, block = wav.shape[-1], self.hop * frames_per_block
        total = max(1, math.ceil(n / block)) * block + self.window - self.hop
        wav = torch.nn.functional.pad(wav, (self.left_pad(), total - n - self.left_pad()))
        return self.spectrogram(wav)

    def spec_to_wave(self, spec: torch.Tensor, num_samples: int) -> torch.Tensor:
        """[batch, 2, bins, frames] -> [batch, num_samples] (at most frames * hop)."""
        return self.inverse_spectrogram(spec)[:, self.left_pad():self.left_pad() + num_samples]
