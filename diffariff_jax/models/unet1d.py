"""DDPM++ 1-D UNet over latent frames: the backbone F of the EDM denoiser (SPEC.md section 2).

Input: the (c_in-scaled) noisy target latents and the context latents, concatenated as channels;
conditioning: the sinusoidal embedding of c_noise plus an MLP of the CLAP embedding (or a learned null
embedding where CLAP is dropped), mapped to one vector that reaches every residual block. Any frame
count works: frames are zero-padded to a multiple of 2^(scales-1) inside and the output is cropped.
The EDM preconditioning (c_skip, c_out, c_in, c_noise) lives outside, in diffusion/edm.py.

Rematerialisation (`remat`, from config.train.remat; the parameters are the same in every mode):
  "none"   the backward pass reads every activation the forward pass stored;
  "block"  each residual block keeps only its input and is recomputed in the backward pass;
  "full"   the whole network keeps only its inputs (one more forward pass, the least memory).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections

from diffariff_jax.models.layers import Conv1d, Dtype, UNetBlock, num_groups, positional_embedding

REMAT_MODES = ("none", "block", "full")


class UNet1D(nn.Module):
    """SongUNet-style encoder/decoder with "standard" skips, 1-D convolutions over frames."""

    latent_dim: int = 64
    clap_dim: int = 512
    channels: int = 512
    channel_mult: tuple[int, ...] = (1, 2, 2, 4)
    num_res_blocks: int = 2
    attn_levels: tuple[int, ...] = (2, 3)
    attn_head_channels: int = 64
    emb_mult: int = 4
    noise_channels_mult: int = 1
    max_positions: int = 10000
    skip_scale: float = 0.5 ** 0.5
    norm_eps: float = 1e-6
    max_norm_groups: int = 32
    dropout: float = 0.0
    dtype: Dtype = jnp.float32
    remat: str = "none"

    @classmethod
    def from_config(cls, model_cfg: ml_collections.ConfigDict, compute_dtype: str = "float32",
                    remat: str = "none") -> "UNet1D":
        """Builds the UNet from `config.model`; `compute_dtype` and `remat` usually come from `config.train`."""
        if remat not in REMAT_MODES:
            raise ValueError(f"train.remat={remat!r}; choose one of {', '.join(REMAT_MODES)}")
        return cls(latent_dim=model_cfg.latent_dim, clap_dim=model_cfg.clap_dim, channels=model_cfg.channels,
                   channel_mult=tuple(model_cfg.channel_mult), num_res_blocks=model_cfg.num_res_blocks,
                   attn_levels=tuple(model_cfg.attn_levels), attn_head_channels=model_cfg.attn_head_channels,
                   emb_mult=model_cfg.emb_mult, noise_channels_mult=model_cfg.noise_channels_mult,
                   max_positions=model_cfg.max_positions, skip_scale=model_cfg.skip_scale,
                   norm_eps=model_cfg.norm_eps, max_norm_groups=model_cfg.max_norm_groups,
                   dropout=model_cfg.dropout, dtype=jnp.dtype(compute_dtype), remat=remat)

    @property
    def frame_multiple(self) -> int:
        """Frame counts are padded up to a multiple of this (one halving per extra scale)."""
        return 2 ** (len(self.channel_mult) - 1)

    def check_inputs(self, x, c_noise, context, clap, clap_dropped) -> None:
        """Raises a one-line ValueError naming the first input whose shape does not fit."""
        if x.ndim != 3 or x.shape[-1] != self.latent_dim:
            raise ValueError(f"noisy latents must be [batch, frames, {self.latent_dim}], "
                             f"got {tuple(x.shape)}")
        b = x.shape[0]
        if tuple(context.shape) != tuple(x.shape):
            raise ValueError(f"context latents must match the target's shape {tuple(x.shape)}, "
                             f"got {tuple(context.shape)}")
        if tuple(clap.shape) != (b, self.clap_dim):
            raise ValueError(f"clap must be [batch={b}, {self.clap_dim}], got {tuple(clap.shape)}")
        for name, arr in (("noise level", c_noise), ("clap_dropped", clap_dropped)):
            if tuple(arr.shape) != (b,):
                raise ValueError(f"{name} must be [batch={b}], got {tuple(arr.shape)}")

    def _embedding(self, c_noise, clap, clap_dropped) -> jax.Array:
        """[batch] noise labels + [batch, clap_dim] CLAP -> [batch, emb_mult*channels] conditioning."""
        noise_ch = self.noise_channels_mult * self.channels
        emb_ch = self.emb_mult * self.channels
        def dense(features: int, name: str) -> nn.Dense:
            return nn.Dense(features, dtype=jnp.float32, param_dtype=jnp.float32, name=name)

        emb = positional_embedding(c_noise, noise_ch, self.max_positions)
        clap_emb = dense(noise_ch, "map_clap0")(clap.astype(jnp.float32))
        clap_emb = dense(noise_ch, "map_clap1")(nn.silu(clap_emb))
        # Dropped CLAP -> a learned null embedding (see docs/diffusion.md for why not zeros).
        null = self.param("null_clap", nn.initializers.zeros, (noise_ch,), jnp.float32)
        dropped = clap_dropped.astype(bool)[:, None]
        emb = emb + jnp.where(dropped, null[None, :], clap_emb)
        emb = nn.silu(dense(emb_ch, "map_layer0")(emb))
        return nn.silu(dense(emb_ch, "map_layer1")(emb)).astype(self.dtype)

    @nn.compact
    def __call__(self, x: jax.Array, c_noise: jax.Array, context: jax.Array, clap: jax.Array,
                 clap_dropped: jax.Array, *, train: bool = False) -> jax.Array:
        """x, context: [batch, frames, latent_dim]; c_noise, clap_dropped: [batch]; clap: [batch, clap_dim].

        Returns F(x): [batch, frames, latent_dim] float32.
        """
        self.check_inputs(x, c_noise, context, clap, clap_dropped)
        frames = x.shape[1]
        pad = (-frames) % self.frame_multiple
        h = jnp.concatenate([x, context], axis=-1).astype(self.dtype)
        h = jnp.pad(h, ((0, 0), (0, pad), (0, 0)))
        emb = self._embedding(c_noise, clap, clap_dropped)
        network = nn.remat(UNet1D._network, static_argnums=(3,)) if self.remat == "full" else UNet1D._network
        return network(self, h, emb, train)[:, :frames].astype(jnp.float32)

    def _network(self, h: jax.Array, emb: jax.Array, train: bool) -> jax.Array:
        """Encoder, middle and decoder: h [batch, padded frames, 2*latent_dim] -> [batch, padded frames, latent_dim]."""
        block_cls = nn.remat(UNetBlock, static_argnums=(3,)) if self.remat == "block" else UNetBlock
        block = lambda c, name, **kw: block_cls(  # noqa: E731
            c, dropout=self.dropout, skip_scale=self.skip_scale, head_channels=self.attn_head_channels,
            max_groups=self.max_norm_groups, eps=self.norm_eps, dtype=self.dtype, name=name, **kw)

        # Encoder: every block's output is kept for the decoder's skip connections.
        skips = []
        for level, mult in enumerate(self.channel_mult):
            c = self.channels * mult
            if level == 0:
                h = Conv1d(c, dtype=self.dtype, name="enc_in")(h)
            else:
                h = block(h.shape[-1], f"enc{level}_down", resample="down")(h, emb, train)
            skips.append(h)
            for i in range(self.num_res_blocks):
                h = block(c, f"enc{level}_block{i}", attention=level in self.attn_levels)(h, emb, train)
                skips.append(h)

        # Decoder: a middle pair at the lowest resolution, then num_res_blocks+1 blocks per level.
        last = len(self.channel_mult) - 1
        for level in reversed(range(len(self.channel_mult))):
            c = self.channels * self.channel_mult[level]
            if level == last:
                h = block(h.shape[-1], "mid0", attention=True)(h, emb, train)
                h = block(h.shape[-1], "mid1")(h, emb, train)
            else:
                h = block(h.shape[-1], f"dec{level}_up", resample="up")(h, emb, train)
            for i in range(self.num_res_blocks + 1):
                h = jnp.concatenate([h, skips.pop()], axis=-1)
                attn = i == self.num_res_blocks and level in self.attn_levels
                h = block(c, f"dec{level}_block{i}", attention=attn)(h, emb, train)

        h = nn.silu(nn.GroupNorm(num_groups(h.shape[-1], self.max_norm_groups), epsilon=self.norm_eps,
                                 dtype=self.dtype, param_dtype=jnp.float32, name="out_norm")(h))
        return Conv1d(self.latent_dim, zero_init=True, dtype=self.dtype, name="out_conv")(h)
