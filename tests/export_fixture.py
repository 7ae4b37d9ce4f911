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
    return config, denoiser, randomised(template, seed)


def randomised(template, seed: int):
    """numpy params shaped like `template` (ShapeDtypeStructs): every tensor random, none zero."""
    rng = np.random.default_rng(seed)

    def draw(path, leaf):
        name = jax.tree_util.keystr(path)
        if name.endswith("['scale']") or name.endswith("['freq_gain']"):
            return (1.0 + 0.1 * rng.standard_normal(leaf.shape)).astype(np.float32)
        if name.endswith("['bias']") or len(leaf.shape) == 1:
            return (0.1 * rng.standard_normal(leaf.shape)).astype(np.float32)
        fan_in = int(np.prod(leaf.shape[:-1]))
        return (rng.standard_normal(leaf.shape) / np.sqrt(fan_in)).astype(np.float32)

    return jax.tree_util.tree_map_with_path(draw, template)


def tiny_cae(seed: int = 0, variant: str = "tiny"):
    """(config, params) of configs/cae.py:tiny (frequency attention in its last level) or :demo (tiny's
    network with the band-energy shortcut), random weights."""
    from configs.cae import get_config
    from diffariff_jax.training.cae_task import CAETask

    config = get_config(variant)
    return config, randomised(jax.eval_shape(CAETask(config).init_params, jax.random.key(0)), seed)
