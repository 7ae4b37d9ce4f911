"""EDM (Karras et al. 2022) for the latent diffusion model: preconditioning, noise levels, loss.

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(c_in(sigma) x; c_noise(sigma), conditioning)
    c_skip = sd^2 / (sigma^2 + sd^2)     c_out = sigma sd / sqrt(sigma^2 + sd^2)
    c_in   = 1 / sqrt(sigma^2 + sd^2)    c_noise = ln(sigma) / 4
    training: ln(sigma) ~ N(P_mean, P_std^2), loss weight lambda = (sigma^2 + sd^2) / (sigma sd)^2

The preconditioning wraps the backbone (as in NVlabs/edm): `Denoiser` holds a UNet1D and applies the
coefficients around it. Conditioning dropout (context -> zeros, CLAP -> learned null) happens in `edm_loss`;
`conditioning_losses` scores the same loss with each conditioning pattern fixed, on shared noise, so a
validation set tells whether the model uses its context and its CLAP embedding.
"""
from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections

from diffariff_jax.models.init_compile import jit_init
from diffariff_jax.models.unet1d import UNet1D

PyTree = Any


class Precond(NamedTuple):
    """EDM preconditioning coefficients, each shaped like sigma."""

    c_skip: jax.Array
    c_out: jax.Array
    c_in: jax.Array
    c_noise: jax.Array


def precond(sigma: jax.Array, sigma_data: float) -> Precond:
    """Coefficients for noise level(s) sigma (> 0)."""
    sigma = jnp.asarray(sigma, jnp.float32)
    total = sigma**2 + sigma_data**2
    return Precond(c_skip=sigma_data**2 / total, c_out=sigma * sigma_data / jnp.sqrt(total),
                   c_in=1.0 / jnp.sqrt(total), c_noise=jnp.log(sigma) / 4.0)


def loss_weight(sigma: jax.Array, sigma_data: float) -> jax.Array:
    """lambda(sigma) = (sigma^2 + sd^2) / (sigma sd)^2, which makes the effective F-target unit variance."""
    return (sigma**2 + sigma_data**2) / (sigma * sigma_data) ** 2


def sample_sigma(key: jax.Array, shape: tuple[int, ...], p_mean: float, p_std: float) -> jax.Array:
    """Training noise levels: ln(sigma) ~ N(p_mean, p_std^2)."""
    return jnp.exp(p_mean + p_std * jax.random.normal(key, shape, jnp.float32))


class Denoiser:
    """D(x; sigma | context, clap): the preconditioned UNet1D. Stateless; params are passed in.

    Identity-hashed on purpose: samplers use it as a static jit argument, so one Denoiser object
    means one compiled sampler per input shape.
    """

    def __init__(self, model: UNet1D, sigma_data: float):
        self.model = model
        self.sigma_data = float(sigma_data)

    @classmethod
    def from_config(cls, config: ml_collections.ConfigDict) -> "Denoiser":
        """From a full LDM config (model, diffusion, train.compute_dtype, train.remat)."""
        model = UNet1D.from_config(config.model, config.train.compute_dtype, config.train.get("remat", "none"))
        return cls(model, config.diffusion.sigma_data)

    @property
    def latent_dim(self) -> int:
        return self.model.latent_dim

    @property
    def clap_dim(self) -> int:
        return self.model.clap_dim

    def init(self, key: jax.Array, num_frames: int) -> PyTree:
        """Fresh float32 params for inputs of `num_frames` frames (any count works afterwards)."""
        x = jnp.zeros((1, num_frames, self.latent_dim), jnp.float32)
        clap = jnp.zeros((1, self.clap_dim), jnp.float32)
        # jit: one compiled init instead of compiling every initializer op eagerly (much faster on
        # CPU); inside a caller's jit (sharded init) this simply inlines.
        init = jit_init(lambda k: self.model.init(k, x, jnp.zeros((1,)), x, clap, jnp.zeros((1,), bool)))
        return init(key)["params"]

    def __call__(self, params: PyTree, x: jax.Array, sigma: jax.Array, *, context: jax.Array,
                 clap: jax.Array, clap_dropped: jax.Array, dropout_key: jax.Array | None = None) -> jax.Array:
        """x, context: [batch, frames, latent_dim]; sigma: [batch] or scalar; clap: [batch, clap_dim];
        clap_dropped: [batch] bool. Returns the denoised estimate [batch, frames, latent_dim] float32.
        Dropout is active only when `dropout_key` is given (training).
        """
        x = x.astype(jnp.float32)
        sigma = jnp.broadcast_to(jnp.asarray(sigma, jnp.float32), x.shape[:1])
        c = precond(sigma, self.sigma_data)
        expand = lambda a: a[:, None, None]  # noqa: E731
        rngs = None if dropout_key is None else {"dropout": dropout_key}
        f = self.model.apply({"params": params}, expand(c.c_in) * x, c.c_noise, context, clap,
                             jnp.asarray(clap_dropped, bool), train=dropout_key is not None, rngs=rngs)
        return expand(c.c_skip) * x + expand(c.c_out) * f


def drop_conditioning(key: jax.Array, context: jax.Array, batch: int, context_dropout: float,
                      clap_dropout: float) -> tuple[jax.Array, jax.Array]:
    """Independent per-example dropout: context -> zeros with prob context_dropout; returns
    (context, clap_dropped [batch] bool) with clap dropped with prob clap_dropout."""
    k_ctx, k_clap = jax.random.split(key)
    keep_ctx = jax.random.uniform(k_ctx, (batch,)) >= context_dropout
    clap_dropped = jax.random.uniform(k_clap, (batch,)) < clap_dropout
    return context * keep_ctx[:, None, None].astype(context.dtype), clap_dropped


def edm_loss(denoiser: Denoiser, params: PyTree, key: jax.Array, target: jax.Array, context: jax.Array,
             clap: jax.Array, diffusion_cfg: ml_collections.ConfigDict) -> tuple[jax.Array, dict]:
    """Weighted denoising loss of EDM with conditioning dropout.

    target, context: [batch, frames, latent_dim]; clap: [batch, clap_dim]. Returns (scalar loss, metrics).
    """
    k_sigma, k_noise, k_drop, k_dropout = jax.random.split(key, 4)
    batch = target.shape[0]
    sd = diffusion_cfg.sigma_data
    sigma = sample_sigma(k_sigma, (batch,), diffusion_cfg.p_mean, diffusion_cfg.p_std)
    noisy = target + sigma[:, None, None] * jax.random.normal(k_noise, target.shape, jnp.float32)
    context, clap_dropped = drop_conditioning(k_drop, context, batch, diffusion_cfg.context_dropout,
                                              diffusion_cfg.clap_dropout)
    denoised = denoiser(params, noisy, sigma, context=context, clap=clap, clap_dropped=clap_dropped,
                        dropout_key=k_dropout)
    per_example = jnp.mean((denoised - target) ** 2, axis=(1, 2))
    loss = jnp.mean(loss_weight(sigma, sd) * per_example)
    return loss, {"denoise_mse": jnp.mean(per_example)}


# Conditioning patterns of `conditioning_losses`: (keep the context, keep the CLAP embedding).
CONDITIONING_PATTERNS = {"context_clap": (True, True), "context_only": (True, False),
                         "clap_only": (False, True), "unconditional": (False, False)}


def conditioning_losses(denoiser: Denoiser, params: PyTree, key: jax.Array, target: jax.Array, context: jax.Array,
                        clap: jax.Array, diffusion_cfg: ml_collections.ConfigDict) -> dict[str, jax.Array]:
    """The weighted denoising loss of `edm_loss` under each of CONDITIONING_PATTERNS, without dropout.

    target, context: [batch, frames, latent_dim]; clap: [batch, clap_dim]. Every pattern sees the same
    sigmas and noise (drawn from `key` as edm_loss draws them), so the differences between patterns are
    paired: loss["clap_only"] - loss["context_clap"] > 0 means the context lowers the error. Returns
    {pattern: [batch] per-example weighted loss}.
    """
    k_sigma, k_noise, _, _ = jax.random.split(key, 4)
    batch = target.shape[0]
    sigma = sample_sigma(k_sigma, (batch,), diffusion_cfg.p_mean, diffusion_cfg.p_std)
    noisy = target + sigma[:, None, None] * jax.random.normal(k_noise, target.shape, jnp.float32)
    weight = loss_weight(sigma, diffusion_cfg.sigma_data)
    out = {}
    for name, (keep_context, keep_clap) in CONDITIONING_PATTERNS.items():
        denoised = denoiser(params, noisy, sigma, context=context if keep_context else jnp.zeros_like(context),
                            clap=clap, clap_dropped=jnp.full((batch,), not keep_clap))
        out[name] = weight * jnp.mean((denoised - target) ** 2, axis=(1, 2))
    return out
