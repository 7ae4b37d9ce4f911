"""The LDM's denoising loss on the test examples under each conditioning pattern: does the model use its
context and its CLAP embedding on songs it never trained on?

    loss[pattern] = E_{sigma, noise} lambda(sigma) |D(target + sigma n; sigma | pattern) - target|^2
    patterns (diffusion/edm.CONDITIONING_PATTERNS): context_clap, context_only, clap_only, unconditional

Targets and contexts are the examples' real stems and context mixes through the CAE's encoder (the
latents training sees); the CLAP embedding is the audio embedding of the target's sub-segment (as in
training). Every pattern sees the same sigmas and noise (`draws` per example, training's log-normal
sigma law), so the context's effect is a paired difference: context_gain = loss[clap_only] -
loss[context_clap] > 0 when the context lowers the error, with a bootstrap interval over examples.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from diffariff_jax.diffusion.edm import CONDITIONING_PATTERNS, conditioning_losses


def per_example_losses(acc: Any, z_target: np.ndarray, z_context: np.ndarray, clap: np.ndarray, *, draws: int,
                       batch: int, seed: int) -> dict[str, np.ndarray]:
    """z_target, z_context: [n, frames, latent_dim] CAE latents; clap: [n, clap_dim] -> {pattern: [n] loss
    averaged over draws}, with acc's LDM (acc.denoiser, acc.params, acc.config)."""
    n = len(z_target)
    cfg = acc.config.diffusion
    fn = jax.jit(lambda p, k, t, c, e: conditioning_losses(acc.denoiser, p, k, t, c, e, cfg))
    sums = {name: np.zeros(n) for name in CONDITIONING_PATTERNS}
    for start in range(0, n, batch):
        rows = np.arange(start, start + batch)
        rows = np.where(rows < n, rows, start)  # pad the last batch: one compiled shape
        keep = min(batch, n - start)
        for d in range(draws):
            key = jax.random.fold_in(jax.random.PRNGKey(seed), d * 100_003 + start)
            out = fn(acc.params, key, jnp.asarray(z_target[rows]), jnp.asarray(z_context[rows]),
                     jnp.asarray(clap[rows], jnp.float32))
            for name, value in out.items():
                sums[name][start:start + keep] += np.asarray(value)[:keep]
    return {name: total / draws for name, total in sums.items()}


def summary(losses: dict[str, np.ndarray], *, resamples: int, confidence: float, seed: int) -> dict:
    """Mean loss per pattern, and the context's and the CLAP's paired gains with percentile intervals."""
    rng = np.random.default_rng(seed)
    n = len(next(iter(losses.values())))
    rows = rng.integers(0, n, size=(resamples, n))
    lo_q, hi_q = 50 * (1 - confidence), 50 * (1 + confidence)

    def interval(x: np.ndarray) -> dict[str, float]:
        means = x[rows].mean(axis=1)
        return {"value": float(x.mean()), "low": float(np.percentile(means, lo_q)),
                "high": float(np.percentile(means, hi_q))}

    gains = {"context_gain": losses["clap_only"] - losses["context_clap"],
             "clap_gain": losses["context_only"] - losses["context_clap"]}
    return {"losses": {name: interval(v) for name, v in losses.items()},
            **{name: {**interval(g), "improved_fraction": float(np.mean(g > 0))} for name, g in gains.items()},
            "num_examples": int(n)}
