"""1-D building blocks of the DDPM++ UNet (Song et al. 2021, as in the `SongUNet` of NVlabs/edm).

Everything works on channels-last sequences `[batch, frames, channels]`. Parameters are float32;
`dtype` is the compute dtype (bfloat16 on accelerators). Residual branches end in zero-initialised
layers so that a fresh network starts as (close to) the identity on its skip paths, as in EDM.
"""
from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp

Dtype = jnp.dtype


def positional_embedding(c_noise: jax.Array, num_channels: int, max_positions: int) -> jax.Array:
    """Transformer-style sinusoidal embedding of the noise level (EDM `PositionalEmbedding`, endpoint=True).

    c_noise: [batch] -> [batch, num_channels] float32 (cosines then sines).
    """
    half = num_channels // 2
    freqs = jnp.arange(half, dtype=jnp.float32) / max(half - 1, 1)
    freqs = (1.0 / max_positions) ** freqs
    angles = c_noise.astype(jnp.float32)[:, None] * freqs[None, :]
    return jnp.concatenate([jnp.cos(angles), jnp.sin(angles)], axis=-1)


def num_groups(channels: int, max_groups: int) -> int:
    """GroupNorm group count: at most `max_groups`, at least 4 channels per group (EDM's rule)."""
    return max(1, min(max_groups, channels // 4))


def downsample(x: jax.Array) -> jax.Array:
    """Average pairs of frames (the [1, 1] resample filter). x: [batch, frames(even), c]."""
    b, t, c = x.shape
    return x.reshape(b, t // 2, 2, c).mean(axis=2)


def upsample(x: jax.Array) -> jax.Array:
    """Repeat every frame twice (nearest neighbour, the transpose of [1, 1]). x: [batch, frames, c]."""
    return jnp.repeat(x, 2, axis=1)


class Conv1d(nn.Module):
    """Same-padded 1-D convolution over frames with optional 2x up/down-sampling before it."""

    features: int
    kernel: int = 3
    resample: str = "none"  # "none" | "up" | "down"
    zero_init: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if self.resample == "up":
            x = upsample(x)
        elif self.resample == "down":
            x = downsample(x)
        init = nn.initializers.zeros if self.zero_init else nn.initializers.xavier_uniform()
        return nn.Conv(self.features, (self.kernel,), padding="SAME", kernel_init=init,
                       dtype=self.dtype, param_dtype=jnp.float32)(x)


class Attention1d(nn.Module):
    """Multi-head self-attention over frames; logits and softmax in float32 for stability."""

    head_channels: int
    max_groups: int
    eps: float
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, t, c = x.shape
        heads = max(1, c // self.head_channels)
        h = nn.GroupNorm(num_groups(c, self.max_groups), epsilon=self.eps, dtype=self.dtype,
                         param_dtype=jnp.float32, name="norm")(x)
        qkv = Conv1d(3 * c, kernel=1, dtype=self.dtype, name="qkv")(h)
        q, k, v = jnp.split(qkv.reshape(b, t, 3, heads, c // heads), 3, axis=2)
        q, k, v = (a[:, :, 0] for a in (q, k, v))  # [b, t, heads, c/heads]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q.astype(jnp.float32), k.astype(jnp.float32))
        weights = jax.nn.softmax(logits / math.sqrt(c // heads), axis=-1).astype(self.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, t, c)
        return Conv1d(c, kernel=1, zero_init=True, dtype=self.dtype, name="proj")(out)


class UNetBlock(nn.Module):
    """DDPM++ residual block: GN-SiLU-conv, + per-channel bias from the embedding, GN-SiLU-dropout-conv.

    x: [batch, frames, in_channels], emb: [batch, emb_channels] -> [batch, frames', out_channels],
    frames' = 2*frames for "up", frames/2 for "down". Optional self-attention after the residual sum.
    """

    out_channels: int
    resample: str = "none"
    attention: bool = False
    dropout: float = 0.0
    skip_scale: float = 0.5 ** 0.5
    head_channels: int = 64
    max_groups: int = 32
    eps: float = 1e-6
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jax.Array, emb: jax.Array, train: bool = False) -> jax.Array:
        # `train` is positional so that nn.remat can treat it as static (UNet1D remat="block").
        c_in = x.shape[-1]
        norm = lambda c, name: nn.GroupNorm(num_groups(c, self.max_groups), epsilon=self.eps,  # noqa: E731
                                            dtype=self.dtype, param_dtype=jnp.float32, name=name)
        h = Conv1d(self.out_channels, resample=self.resample, dtype=self.dtype, name="conv0")(
            nn.silu(norm(c_in, "norm0")(x)))
        # Conditioning (noise level + CLAP) reaches every block as a per-channel bias.
        bias = nn.Dense(self.out_channels, dtype=self.dtype, param_dtype=jnp.float32, name="affine")(emb)
        h = nn.silu(norm(self.out_channels, "norm1")(h + bias[:, None, :]))
        h = nn.Dropout(self.dropout, deterministic=not train)(h)
        h = Conv1d(self.out_channels, zero_init=True, dtype=self.dtype, name="conv1")(h)
        if self.out_channels != c_in or self.resample != "none":
            x = Conv1d(self.out_channels, kernel=1, resample=self.resample, dtype=self.dtype, name="skip")(x)
        x = (h + x) * self.skip_scale
        if self.attention:
            a = Attention1d(self.head_channels, self.max_groups, self.eps, dtype=self.dtype, name="attn")(x)
            x = (x + a) * self.skip_scale
        return x
