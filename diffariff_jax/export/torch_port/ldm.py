"""`LatentDiffusion`: the exported Diff-A-Riff latent diffusion model as one PyTorch module.

    model = LatentDiffusion.from_pretrained("exported/")          # config.json + model.safetensors
    latents = model.sample(num_frames=117, context=ctx, clap=clap)  # [batch, frames, 64]
    model.save_pretrained("finetuned/")                              # the way back to JAX reads this

The folder's config.json is the JAX run's resolved config; its `model` section builds the UNet, its
`diffusion.sigma_data` the preconditioning and its `sampler` section gives the sampling defaults.
This file imports only torch (and the package's folder and sampling helpers).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from . import sampling
from .edm import Denoiser
from .folder import read_folder, write_folder
from .unet1d import UNet1D
UNET_KEYS = ("latent_dim", "clap_dim", "channels", "channel_mult", "num_res_blocks", "attn_levels",
             "attn_head_channels", "emb_mult", "noise_channels_mult", "max_positions", "skip_scale",
             "norm_eps", "max_norm_groups", "dropout")


class LatentDiffusion(nn.Module):
    """The preconditioned DDPM++ UNet plus the sampler defaults of the run it was exported from."""

    def __init__(self, config: dict):
        super().__init__()
        model = config["model"]
        kwargs = {k: tuple(model[k]) if isinstance(model[k], list) else model[k] for k in UNET_KEYS}
        self.config = config
        self.denoiser = Denoiser(UNet1D(**kwargs), config["diffusion"]["sigma_data"])
        self.sampler_defaults = {k: v for k, v in config.get("sampler", {}).items() if k in sampling.DEFAULTS}

    @classmethod
    def from_pretrained(cls, folder: str | Path, device: str | torch.device = "cpu") -> "LatentDiffusion":
        """Loads an exported folder (strict: every tensor must match the config's architecture)."""
        config, state = read_folder(folder)
        model = cls(config)
        model.denoiser.model.load_state_dict(state, strict=True)
        return model.to(device).eval()

    def save_pretrained(self, folder: str | Path) -> None:
        """Writes config.json and model.safetensors (plus this code) into `folder`, which
        `python -m diffariff_jax.export --from torch --checkpoint FOLDER` converts back to a JAX release."""
        write_folder(folder, self.config, self.denoiser.model.state_dict())

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, context: torch.Tensor, clap: torch.Tensor,
                clap_dropped: torch.Tensor) -> torch.Tensor:
        """One denoiser evaluation D(x; sigma); shapes as `Denoiser.forward`."""
        return self.denoiser(x, sigma, context, clap, clap_dropped)

    def sample(self, *, num_frames: int, **kwargs) -> torch.Tensor:
        """`sampling.sample` with this run's sampler defaults (steps, solver, CFG, ...); kwargs override."""
        return sampling.sample(self.denoiser, num_frames=num_frames, **{**self.sampler_defaults, **kwargs})
