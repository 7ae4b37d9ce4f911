"""Consistency models as the CAE decoder uses them (SPEC 1): preconditioning, the rho = 7 noise grid,
consistency training (Song & Dhariwal 2023, "improved consistency training", as Music2Latent applies
it) and few-step sampling.

Notation: a continuous grid index u in [0, 1] maps to sigma(u) = (s_min^(1/rho) + u (s_max^(1/rho) -
s_min^(1/rho)))^rho. Training discretises [0, 1] into N = round(1 / gap) intervals; the gap shrinks
geometrically from gap_start to gap_end over training. A level index i in 1..N is drawn with the
probability that a log-normal sigma (P_mean, P_std) falls in (sigma_{i-1}, sigma_i]; the student sees
x + sigma_i z, the target is the same network at x + sigma_{i-1} z (same noise z, stop-gradient), and
the distance is pseudo-Huber weighted by 1 / (sigma_i - sigma_{i-1}).
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

# f(x_noisy, sigma) -> denoised estimate; x: [batch, ...], sigma: [batch]
ConsistencyFn = Callable[[Array, Array], Array]


@dataclasses.dataclass(frozen=True)
class Consistency:
    """Hyperparameters (config.consistency)."""

    sigma_data: float = 0.5
    sigma_min: float = 0.002
    sigma_max: float = 80.0
    rho: float = 7.0
    p_mean: float = -1.1
    p_std: float = 2.0
    gap_start: float = 0.1
    gap_end: float = 0.001
    huber_c: float = 0.00054  # pseudo-Huber c = huber_c * sqrt(dimensions per example)

    @classmethod
    def from_config(cls, cfg) -> "Consistency":
        return cls(**{f.name: float(cfg[f.name]) for f in dataclasses.fields(cls)})

    # ---- preconditioning ------------------------------------------------------------------------

    def scalings(self, sigma: Array) -> tuple[Array, Array, Array]:
        """(c_skip, c_out, c_in) for sigma [batch]; c_skip(s_min) = 1, c_out(s_min) = 0 exactly."""
        sd2 = self.sigma_data**2
        c_skip = sd2 / ((sigma - self.sigma_min) ** 2 + sd2)
        c_out = self.sigma_data * (sigma - self.sigma_min) / jnp.sqrt(sd2 + sigma**2)
        c_in = 1.0 / jnp.sqrt(sigma**2 + sd2)
        return c_skip, c_out, c_in

    def precondition(self, network: Callable[[Array, Array], Array]) -> ConsistencyFn:
        """network(c_in x, sigma) -> F  becomes  f(x, sigma) = c_skip x + c_out F."""

        def f(x: Array, sigma: Array) -> Array:
            c_skip, c_out, c_in = (_expand(c, x.ndim) for c in self.scalings(sigma))
            return c_skip * x + c_out * network(c_in * x, sigma)

        return f

    # ---- noise grid ------------------------------------------------------------------------------

    def sigma_at(self, u: Array) -> Array:
        """Continuous grid index u in [0, 1] -> sigma (rho-spaced from sigma_min to sigma_max)."""
        lo, hi = self.sigma_min ** (1.0 / self.rho), self.sigma_max ** (1.0 / self.rho)
        return (lo + u * (hi - lo)) ** self.rho

    def sampling_sigmas(self, steps: int) -> np.ndarray:
        """The `steps` levels of a few-step decode, highest first (steps=1 -> [sigma_max])."""
        return np.asarray(self.sigma_at(np.linspace(1.0, 0.0, steps + 1)[:-1]), np.float32)

    def gap(self, step: Array, total_steps: int) -> Array:
        """Grid gap at training step `step`: geometric from gap_start to gap_end over total_steps."""
        frac = jnp.clip(jnp.asarray(step, jnp.float32) / max(total_steps, 1), 0.0, 1.0)
        return self.gap_start * (self.gap_end / self.gap_start) ** frac

    def max_intervals(self) -> int:
        return int(round(1.0 / self.gap_end))

    def sample_levels(self, key: Array, step: Array, total_steps: int, batch: int) -> tuple[Array, Array]:
        """(sigma_hi, sigma_lo), each [batch]: adjacent levels of the current grid, drawn log-normally."""
        intervals = jnp.maximum(jnp.round(1.0 / self.gap(step, total_steps)), 1.0)  # N, traced
        i = jnp.arange(self.max_intervals() + 1, dtype=jnp.float32)  # static size, masked to i <= N
        sigmas = self.sigma_at(jnp.minimum(i / intervals, 1.0))
        cdf = jax.scipy.stats.norm.cdf((jnp.log(sigmas) - self.p_mean) / self.p_std)
        prob = cdf[1:] - cdf[:-1]  # P(log-normal sigma in (sigma_{i-1}, sigma_i]) for i = 1..max
        valid = i[1:] <= intervals
        logits = jnp.where(valid, jnp.log(jnp.maximum(prob, 1e-30)), -jnp.inf)
        idx = jax.random.categorical(key, logits, shape=(batch,)) + 1
        return sigmas[idx], sigmas[idx - 1]

    # ---- training --------------------------------------------------------------------------------

    def pseudo_huber(self, x: Array, y: Array) -> Array:
        """sqrt(|x - y|^2 + c^2) - c per example, c = huber_c * sqrt(dim). x, y: [batch, ...] -> [batch]."""
        dim = int(np.prod(x.shape[1:]))
        c = self.huber_c * np.sqrt(dim)
        sq = jnp.sum(jnp.square((x - y).astype(jnp.float32)).reshape(x.shape[0], -1), axis=-1)
        return jnp.sqrt(sq + c**2) - c

    def student_and_target(self, f: ConsistencyFn, x: Array, key: Array, step: Array,
                           total_steps: int) -> tuple[Array, Array, Array, Array]:
        """(student, target, sigma_hi, sigma_lo) for clean data x [batch, ...]: f at adjacent grid levels
        with shared noise; the target carries no gradient."""
        level_key, noise_key = jax.random.split(key)
        sigma_hi, sigma_lo = self.sample_levels(level_key, step, total_steps, x.shape[0])
        z = jax.random.normal(noise_key, x.shape, x.dtype)
        student = f(x + _expand(sigma_hi, x.ndim) * z, sigma_hi)
        target = jax.lax.stop_gradient(f(x + _expand(sigma_lo, x.ndim) * z, sigma_lo))
        return student, target, sigma_hi, sigma_lo

    def loss_terms(self, student: Array, target: Array, sigma_hi: Array, sigma_lo: Array, step: Array,
                   total_steps: int) -> tuple[Array, dict[str, Array]]:
        """Pseudo-Huber distance weighted by 1 / (sigma_hi - sigma_lo), averaged over the batch."""
        weight = 1.0 / (sigma_hi - sigma_lo)
        distance = self.pseudo_huber(student, target)
        loss = jnp.mean(weight * distance)
        return loss, {"distance": jnp.mean(distance), "gap": self.gap(step, total_steps),
                      "sigma_hi_mean_log": jnp.mean(jnp.log(sigma_hi))}

    def loss(self, f: ConsistencyFn, x: Array, key: Array, step: Array,
             total_steps: int) -> tuple[Array, dict[str, Array]]:
        """Consistency-training loss of clean data x [batch, ...]; the target branch gets no gradient."""
        student, target, sigma_hi, sigma_lo = self.student_and_target(f, x, key, step, total_steps)
        return self.loss_terms(student, target, sigma_hi, sigma_lo, step, total_steps)

    # ---- sampling --------------------------------------------------------------------------------

    def sample(self, f: ConsistencyFn, key: Array, shape: tuple[int, ...], steps: int = 1) -> Array:
        """Few-step consistency sampling from N(0, sigma_max^2): denoise, re-noise to the next level of
        the rho grid, repeat; returns the last denoised estimate, shape `shape`."""
        sigmas = self.sampling_sigmas(steps)
        keys = jax.random.split(key, steps + 1)
        x = jax.random.normal(keys[0], shape) * sigmas[0]
        for k, sigma in enumerate(sigmas):
            pred = f(x, jnp.full((shape[0],), sigma, jnp.float32))
            if k + 1 < steps:
                renoise = np.sqrt(sigmas[k + 1] ** 2 - self.sigma_min**2)
                x = pred + renoise * jax.random.normal(keys[k + 1], shape)
        return pred


def _expand(v: Array, ndim: int) -> Array:
    """[batch] -> [batch, 1, ..., 1] with `ndim` axes."""
    return jnp.reshape(v, (-1,) + (1,) * (ndim - 1))
