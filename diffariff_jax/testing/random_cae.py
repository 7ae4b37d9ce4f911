"""A CAE with random weights, built without running the (slow on CPU) Flax init: for tests and speed runs.

Params come from `jax.eval_shape` of the CAE task's init (tracing only), filled with scaled Gaussians
(weights), ones (norm scales) and zeros (biases). The latents are meaningless but have the real shapes,
dtypes and compute cost, so precompute and training plumbing can be exercised and timed.

    from diffariff_jax.testing.random_cae import random_cae, MICRO_CAE
    config, params = random_cae("tiny", overrides=MICRO_CAE)
"""
from __future__ import annotations

from typing import Any

import jax
import ml_collections
import numpy as np

# A 4-level, 2-channel CAE without attention: same 4096-sample latent frame and 64-d latents, tiny cost.
MICRO_CAE = {"base_channels": 2, "multipliers": (1, 1, 1, 1), "attention": (0, 0, 0, 0), "freq_downsample": (0, 0, 0),
             "bottleneck_channels": 8, "bottleneck_blocks": 1, "heads": 1, "cond_channels": 8, "max_norm_groups": 2}


def random_params_like(shapes: Any, seed: int = 0) -> Any:
    """numpy params shaped like `shapes` (a pytree of ShapeDtypeStruct): N(0, 1/fan_in) weights,
    ones for norm scales, zeros for biases and other vectors."""
    leaves, tree = jax.tree.flatten_with_path(shapes)
    rng = np.random.default_rng(seed)
    out = []
    for path, leaf in leaves:
        name = str(path[-1])
        if "scale" in name:
            out.append(np.ones(leaf.shape, np.float32))
        elif "bias" in name or len(leaf.shape) < 2:
            out.append(np.zeros(leaf.shape, np.float32))
        else:
            fan_in = int(np.prod(leaf.shape[:-1]))
            out.append((rng.standard_normal(leaf.shape) / np.sqrt(fan_in)).astype(np.float32))
    return jax.tree.unflatten(tree, out)


def random_cae(variant: str = "tiny", overrides: dict | None = None,
               seed: int = 0) -> tuple[ml_collections.ConfigDict, Any]:
    """(config, params) of configs/cae.py `variant` with config.model updated by `overrides`."""
    from configs.cae import get_config
    from diffariff_jax.training.cae_task import CAETask

    config = get_config(variant)
    if overrides:
        config.model.update(overrides)
    shapes = jax.eval_shape(CAETask(config).init_params, jax.random.PRNGKey(seed))
    return config, random_params_like(shapes, seed)
