"""Tiny LDM params for the export tests: every tensor random (the zero-initialised output layers too),
so a wrong name, transpose or skipped layer changes the output."""
import jax
import numpy as np

from configs.ldm import get_config
from diffariff_jax.diffusion.edm import Denoiser


def tiny_ldm(seed: int = 0, frames: int = 16):
    """(config, Denoiser, params) of the tiny LDM with random weights scaled like a trained network."""
    config = get_config("tiny")
    denoiser = Denoiser.from_config(config)
    template = jax.eval_shape(lambda key: denoiser.init(key, frames), jax.random.key(0))
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if name.endswith("['scale']"):
            return (1.0 + 0.1 * rng.standard_normal(leaf.shape)).astype(np.float32)
        if name.endswith("['bias']") or len(leaf.shape) == 1:
            return (0.1 * rng.standard_normal(leaf.shape)).astype(np.float32)
        fan_in = int(np.prod(leaf.shape[:-1]))
        return (rng.standard_normal(leaf.shape) / np.sqrt(fan_in)).astype(np.float32)

    return config, denoiser, jax.tree_util.tree_map_with_path(draw, template)
