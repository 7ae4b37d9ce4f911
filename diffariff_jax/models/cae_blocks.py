"""Building blocks of the consistency autoencoder (SPEC 1): residual blocks, frequency attention,
frequency-only and 2-D resampling, the noise-level embedding.

Layouts: 2-D feature maps are [batch, freq, time, channels] (NHWC with H = frequency), 1-D ones are
[batch, time, channels]. GroupNorm uses min(channels // 4, max_groups) groups, as Music2Latent does, so
its checkpoints map onto these modules one to one (see diffariff_jax/export/music2latent.py).
"""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from diffariff_jax.models.conv2d import Conv2d

Dtype = Any


def norm_groups(channels: int, max_groups: int) -> int:
    """GroupNorm group count: one group per 4 channels, at most `max_groups`."""
    return max(1, min(channels // 4, max_groups))


def zeros_or(default, zero: bool):
    """The zero initialiser for layers that end a residual branch (so a fresh block is the identity)."""
    return nn.initializers.zeros if zero else default


class GroupNorm(nn.Module):
    """GroupNorm in float32 with Music2Latent's group rule; two-pass variance for exactness."""

    eps: float = 1e-5
    max_groups: int = 32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        groups = norm_groups(x.shape[-1], self.max_groups)
        y = nn.GroupNorm(num_groups=groups, epsilon=self.eps, use_fast_variance=False, name="gn")(
            x.astype(jnp.float32))
        return y.astype(x.dtype)


class FreqAttention(nn.Module):
    """Pre-norm multi-head self-attention along frequency, independently for every time frame, plus
    the input (residual). x: [batch, freq, time, channels]."""

    heads: int
    eps: float = 1e-5
    max_groups: int = 32
    zero_init: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        b, f, t, c = x.shape
        h = GroupNorm(self.eps, self.max_groups, name="norm")(x)
        h = jnp.transpose(h, (0, 2, 1, 3)).reshape(b * t, f, c)  # one sequence over freq per frame
        qkv = nn.Dense(3 * c, dtype=self.dtype, name="qkv")(h)
        q, k, v = jnp.split(qkv.reshape(b * t, f, 3, self.heads, c // self.heads), 3, axis=2)
        q, k, v = q[:, :, 0], k[:, :, 0], v[:, :, 0]  # [b*t, freq, heads, head_dim]
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / np.sqrt(c // self.heads).astype(np.float32)
        weights = jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(v.dtype)
        h = jnp.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b * t, f, c)
        h = nn.Dense(c, dtype=self.dtype, name="out",
                     kernel_init=zeros_or(nn.linear.default_kernel_init, self.zero_init))(h)
        return x + jnp.transpose(h.reshape(b, t, f, c), (0, 2, 1, 3))


class ResBlock(nn.Module):
    """GroupNorm-SiLU-conv twice with an optional noise-embedding bias between, a 1x1 shortcut when the
    width changes, then optional frequency attention. `dims` = 2 ([b, f, t, c]) or 1 ([b, t, c])."""

    channels: int
    dims: int = 2
    attention: bool = False
    heads: int = 4
    eps: float = 1e-5
    max_groups: int = 32
    zero_init: bool = True
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array, emb: Array | None = None) -> Array:
        kernel = (3,) * self.dims
        conv = Conv2d if self.dims == 2 else nn.Conv
        h = nn.silu(GroupNorm(self.eps, self.max_groups, name="norm1")(x))
        h = conv(self.channels, kernel, padding="SAME", dtype=self.dtype, name="conv1")(h)
        if emb is not None:  # emb: [batch, cond]
            bias = nn.Dense(self.channels, dtype=self.dtype, name="proj_emb",
                            kernel_init=zeros_or(nn.linear.default_kernel_init, self.zero_init))(emb)
            h = h + bias.reshape(bias.shape[:1] + (1,) * self.dims + bias.shape[1:])
        h = nn.silu(GroupNorm(self.eps, self.max_groups, name="norm2")(h))
        h = conv(self.channels, kernel, padding="SAME", dtype=self.dtype, name="conv2",
                    kernel_init=zeros_or(nn.linear.default_kernel_init, self.zero_init))(h)
        if x.shape[-1] != self.channels:
            x = conv(self.channels, (1,) * self.dims, dtype=self.dtype, name="res_conv")(x)
        x = x + h
        if self.attention:
            x = FreqAttention(self.heads, self.eps, self.max_groups, self.zero_init, self.dtype, name="att")(x)
        return x


class Downsample(nn.Module):
    """Strided conv: 4x in frequency only (kernel 5x1) or 2x in frequency and time (kernel 3x3),
    optionally GroupNorm first. x: [b, f, t, c] -> [b, f/4, t, c'] or [b, f/2, t/2, c']."""

    channels: int
    freq_only: bool
    normalize: bool = False
    eps: float = 1e-5
    max_groups: int = 32
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.normalize:
            x = GroupNorm(self.eps, self.max_groups, name="norm")(x)
        if self.freq_only:
            return Conv2d(self.channels, (5, 1), strides=(4, 1), padding=((2, 2), (0, 0)),
                           dtype=self.dtype, name="conv")(x)
        return Conv2d(self.channels, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1)),
                       dtype=self.dtype, name="conv")(x)


class Upsample(nn.Module):
    """Nearest-neighbour upsampling then conv: 4x in frequency (kernel 5x1) or 2x in both (3x3).
    x: [b, f, t, c] -> [b, 4f, t, c'] or [b, 2f, 2t, c']."""

    channels: int
    freq_only: bool
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if self.freq_only:
            x = jnp.repeat(x, 4, axis=1)
            return Conv2d(self.channels, (5, 1), padding="SAME", dtype=self.dtype, name="conv")(x)
        x = jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)
        return Conv2d(self.channels, (3, 3), padding="SAME", dtype=self.dtype, name="conv")(x)


def positional_embedding(x: Array, dim: int, max_positions: float) -> Array:
    """Sinusoidal embedding of a scalar per example. x: [batch] -> [batch, dim] (sin half, cos half)."""
    half = dim // 2
    freqs = (1.0 / max_positions) ** (jnp.arange(half, dtype=jnp.float32) / (half - 1))
    arg = x[:, None].astype(jnp.float32) * freqs[None, :]
    return jnp.concatenate([jnp.sin(arg), jnp.cos(arg)], axis=-1)


class MLP(nn.Module):
    """Dense-SiLU layers; the last one is linear (and zero-initialised) unless `final_silu`."""

    features: tuple[int, ...]
    final_silu: bool = True
    zero_last: bool = False
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        for i, width in enumerate(self.features):
            last = i == len(self.features) - 1
            init = zeros_or(nn.linear.default_kernel_init, self.zero_last and last)
            x = nn.Dense(width, dtype=self.dtype, kernel_init=init, name=f"dense_{i}")(x)
            if not last or self.final_silu:
                x = nn.silu(x)
        return x
