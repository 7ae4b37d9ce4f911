"""`ConsistencyAutoencoder`: the exported CAE as one PyTorch module (twin of `diffariff_jax/autoencoder.py`).

    cae = ConsistencyAutoencoder.from_pretrained("exported_cae/")
    z = cae.encode(wav)                       # [batch, samples] -> [batch, frames, 64], frames = ceil(n / 4096)
    y = cae.decode(z, steps=1)                # -> [batch, frames * 4096] in [-1, 1]

Consistency decoding (sigma_data sd, sigma_min s0): f(x, s) = c_skip x + c_out F(c_in x, s) with
    c_skip = sd^2 / ((s - s0)^2 + sd^2),  c_out = sd (s - s0) / sqrt(sd^2 + s^2),  c_in = 1 / sqrt(s^2 + sd^2);
start from N(0, s_max^2), denoise, re-noise to the next level of the rho grid with std sqrt(s^2 - s0^2), repeat.
With `inference.band_renorm`, the decoded spectrogram's bands are then matched to the band readout's.
Long clips are cut into windows of `inference.chunk_frames` latent frames, as the JAX Autoencoder does.
This file imports only torch and numpy (and the package's own modules).
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .cae import BandReadout, ConsistencyUNet, Encoder, LatentUpPath, band_matrix, match_band_energies, time_reduction
from .folder import read_folder, write_folder
from .sampling import NoiseFn, generator_noise
from .stft import Stft


class ConsistencyAutoencoder(nn.Module):
    """Encoder + latent up-path + consistency UNet, with the STFT and the consistency schedule."""

    def __init__(self, config: dict):
        super().__init__()
        self.config = config
        shape = dict(config["model"])
        self.encoder, self.up_path, self.unet = Encoder(shape), LatentUpPath(shape), ConsistencyUNet(shape)
        if shape.get("band_shortcut", 0):
            self.band_readout = BandReadout(shape)
            self.register_buffer("bands", band_matrix(shape), persistent=False)
        inference = config["inference"]  # band_renorm: the most dB a band is raised by, or None: no matching
        self.band_renorm = (float(inference.get("band_renorm_max_gain_db", 12.0))
                            if inference.get("band_renorm", False) else None)
        self.shape = shape
        self.stft = Stft(config["stft"])
        self.consistency = config["consistency"]
        self.time_reduction = time_reduction(shape)
        self.hop_samples = self.stft.hop * self.time_reduction
        self.latent_dim, self.freq_bins = shape["latent_dim"], shape["freq_bins"]
        self.latent_scale = float(config["inference"]["latent_scale"])
        self.chunk_frames = int(config["inference"]["chunk_frames"])
        self.sample_rate = int(config["data"]["sample_rate"])

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu") -> "ConsistencyAutoencoder":
        config, state = read_folder(folder)
        model = cls(config)
        model.load_state_dict(state, strict=True)
        return model.to(device).eval()

    def save_pretrained(self, folder: str | Path) -> None:
        """config.json + model.safetensors, which `python -m diffariff_jax.export --from torch` reads back."""
        write_folder(folder, self.config, self.state_dict())

    def frames_for(self, num_samples: int) -> int:
        return max(1, math.ceil(num_samples / self.hop_samples))

    def sigmas(self, steps: int) -> np.ndarray:
        """The `steps` decode levels, highest first (rho grid from sigma_max down)."""
        c = self.consistency
        lo, hi = c["sigma_min"] ** (1.0 / c["rho"]), c["sigma_max"] ** (1.0 / c["rho"])
        return ((lo + np.linspace(1.0, 0.0, steps + 1)[:-1] * (hi - lo)) ** c["rho"]).astype(np.float32)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor, pyramid: list[torch.Tensor]) -> torch.Tensor:
        """f(x, sigma): x [batch, 2, freq, frames], sigma [batch]."""
        sd, s0 = self.consistency["sigma_data"], self.consistency["sigma_min"]
        c_skip = sd**2 / ((sigma - s0) ** 2 + sd**2)
        c_out = sd * (sigma - s0) / torch.sqrt(sd**2 + sigma**2)
        c_in = 1.0 / torch.sqrt(sigma**2 + sd**2)
        e = lambda c: c[:, None, None, None]  # noqa: E731
        return e(c_skip) * x + e(c_out) * self.unet(e(c_in) * x, sigma, pyramid)

    @torch.no_grad()
    def encode(self, wav: torch.Tensor) -> torch.Tensor:
        """wav [batch, samples] at `sample_rate` -> latents [batch, frames, latent_dim] (scaled 1 / latent_scale)."""
        wav = torch.as_tensor(wav, dtype=torch.float32, device=self.encoder.conv_inp.weight.device)
        frames = self.frames_for(wav.shape[-1])
        wav = torch.nn.functional.pad(wav, (0, frames * self.hop_samples - wav.shape[-1]))
        chunks = []
        for start in range(0, frames, self.chunk_frames):
            window = wav[:, start * self.hop_samples:min(start + self.chunk_frames, frames) * self.hop_samples]
            chunks.append(self.encoder(self.stft.wave_to_spec(window, self.time_reduction)))
        return torch.cat(chunks, dim=1) / self.latent_scale

    @torch.no_grad()
    def decode(self, latents: torch.Tensor, steps: int = 1, num_samples: int | None = None,
               noise: NoiseFn | None = None) -> torch.Tensor:
        """latents [batch, frames, latent_dim] -> waveform [batch, num_samples or frames * 4096] in [-1, 1].
        `noise(kind="decode", shape, chunk, step)` gives the start noise (step 0) and the re-noising."""
        device = self.encoder.conv_inp.weight.device
        latents = torch.as_tensor(latents, dtype=torch.float32, device=device) * self.latent_scale
        noise = noise or generator_noise(device=device)
        sigmas, s0 = self.sigmas(steps), self.consistency["sigma_min"]
        waves = []
        for chunk, start in enumerate(range(0, latents.shape[1], self.chunk_frames)):
            window = latents[:, start:start + self.chunk_frames]
            pyramid = self.up_path(window)
            shape = (window.shape[0], 2, self.freq_bins, window.shape[1] * self.time_reduction)
            x = noise("decode", shape, chunk, 0).to(device) * float(sigmas[0])
            for k, sigma in enumerate(sigmas):
                pred = self.denoise(x, torch.full((shape[0],), float(sigma), device=device), pyramid)
                if k + 1 < steps:
                    std = math.sqrt(float(sigmas[k + 1]) ** 2 - s0**2)
                    x = pred + std * noise("decode", shape, chunk, k + 1).to(device)
            if self.band_renorm is not None:
                pred = match_band_energies(self.shape, self.bands, pred, self.band_readout(window), self.band_renorm)
            waves.append(self.stft.spec_to_wave(pred, shape[-1] * self.stft.hop))
        wav = torch.cat(waves, dim=1)[:, :num_samples or latents.shape[1] * self.hop_samples]
        return wav.clamp(-1.0, 1.0)
