"""EDM preconditioning (Karras et al. 2022) around the UNet: the twin of `diffariff_jax/diffusion/edm.py`.

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma), conditioning)
    c_skip = sd^2 / (sigma^2 + sd^2)     c_out = sigma sd / sqrt(sigma^2 + sd^2)
    c_in   = 1 / sqrt(sigma^2 + sd^2)    c_noise = ln(sigma) / 4

This file imports only torch.
"""
from __future__ import annotations

import torch
from torch import nn

from .unet1d import UNet1D


def precond(sigma: torch.Tensor, sigma_data: float) -> tuple[torch.Tensor, ...]:
    """(c_skip, c_out, c_in, c_noise) for noise level(s) sigma > 0, each shaped like sigma."""
    total = sigma**2 + sigma_data**2
    return sigma_data**2 / total, sigma * sigma_data / total.sqrt(), 1.0 / total.sqrt(), sigma.log() / 4.0


class Denoiser(nn.Module):
    """D(x; sigma | context, clap): the preconditioned UNet1D."""

    def __init__(self, model: UNet1D, sigma_data: float):
        super().__init__()
        self.model = model
        self.sigma_data = float(sigma_data)

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @property
    def clap_dim(self) -> int:
        return self.model.clap_dim

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, context: torch.Tensor, clap: torch.Tensor,
                clap_dropped: torch.Tensor) -> torch.Tensor:
        """x, context: [batch, frames, latent_dim]; sigma: [batch] or scalar; clap: [batch, clap_dim];
        clap_dropped: [batch] bool. Returns the denoised estimate [batch, frames, latent_dim] float32."""
        x = x.float()
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).expand(x.shape[0])
        c_skip, c_out, c_in, c_noise = (c[:, None, None] for c in precond(sigma, self.sigma_data))
        f = self.model(c_in * x, c_noise[:, 0, 0], context, clap, clap_dropped)
        return c_skip * x + c_out * f
