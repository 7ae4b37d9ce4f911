"""PyTorch twins of diffariff-jax's models, for users without JAX: needs only torch, safetensors, numpy.

The export (`python -m diffariff_jax.export --to torch`) copies this package into the exported folder
next to `model.safetensors` and `config.json`, so the folder works without diffariff-jax installed.
"""
from .autoencoder import ConsistencyAutoencoder
from .edm import Denoiser
from .ldm import LatentDiffusion
from .sampling import sample
from .stft import Stft
from .unet1d import UNet1D

__all__ = ["ConsistencyAutoencoder", "Denoiser", "LatentDiffusion", "Stft", "UNet1D", "sample"]
