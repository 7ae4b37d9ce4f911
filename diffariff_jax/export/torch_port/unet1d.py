"""DDPM++ 1-D UNet (the `SongUNet` of NVlabs/edm over latent frames) in PyTorch: the twin of
`diffariff_jax/models/unet1d.py` and `layers.py`, parameter for parameter.

Module and parameter names follow the Flax tree (`enc0_block0.conv0.weight` is Flax
`enc0_block0/conv0/Conv_0/kernel`), so the name table in `diffariff_jax/export/names.py` is a handful of
rules. Public tensors are channels-last like the JAX API (`[batch, frames, channels]`); inside, the
network runs channels-first, the layout torch's convolutions want. This file imports only torch.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def positional_embedding(c_noise: torch.Tensor, num_channels: int, max_positions: int) -> torch.Tensor:
    """Sinusoidal embedding of the noise label (EDM, endpoint=True). c_noise: [batch] -> [batch, num_channels]."""
    half = num_channels // 2
    freqs = torch.arange(half, dtype=torch.float32, device=c_noise.device) / max(half - 1, 1)
    freqs = (1.0 / max_positions) ** freqs
    angles = c_noise.float()[:, None] * freqs[None, :]
    return torch.cat([torch.cos(angles), torch.sin(angles)], dim=-1)


def num_groups(channels: int, max_groups: int) -> int:
    """GroupNorm group count: at most `max_groups`, at least 4 channels per group (EDM's rule)."""
    return max(1, min(max_groups, channels // 4))


class Conv1d(nn.Conv1d):
    """Same-padded convolution over frames with optional 2x up (repeat) / down (average) sampling first."""

    def __init__(self, in_channels: int, out_channels: int, kernel: int = 3, resample: str = "none"):
        super().__init__(in_channels, out_channels, kernel, padding=kernel // 2)
        self.resample = resample

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, channels, frames]
        if self.resample == "up":
            x = x.repeat_interleave(2, dim=-1)
        elif self.resample == "down":
            x = F.avg_pool1d(x, 2)
        return super().forward(x)


class Attention1d(nn.Module):
    """Multi-head self-attention over frames (GroupNorm, 1x1 qkv, softmax(q k / sqrt(d)) v, 1x1 proj)."""

    def __init__(self, channels: int, head_channels: int, max_groups: int, eps: float):
        super().__init__()
        self.heads = max(1, channels // head_channels)
        self.norm = nn.GroupNorm(num_groups(channels, max_groups), channels, eps=eps)
        self.qkv = Conv1d(channels, 3 * channels, kernel=1)
        self.proj = Conv1d(channels, channels, kernel=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # x: [batch, channels, frames]
        b, c, t = x.shape
        # Flax splits the qkv channels as [3, heads, head_dim]; the same order here.
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, t).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return self.proj(out.transpose(-1, -2).reshape(b, c, t))


class UNetBlock(nn.Module):
    """DDPM++ residual block: GN-SiLU-conv, + per-channel bias from the embedding, GN-SiLU-dropout-conv,
    a 1x1 skip where the shape changes, optional attention after the residual sum."""

    def __init__(self, in_channels: int, out_channels: int, emb_channels: int, *, resample: str = "none",
                 attention: bool = False, dropout: float = 0.0, skip_scale: float = 0.5 ** 0.5,
                 head_channels: int = 64, max_groups: int = 32, eps: float = 1e-6):
        super().__init__()
        self.skip_scale = skip_scale
        self.norm0 = nn.GroupNorm(num_groups(in_channels, max_groups), in_channels, eps=eps)
        self.conv0 = Conv1d(in_channels, out_channels, resample=resample)
        self.affine = nn.Linear(emb_channels, out_channels)
        self.norm1 = nn.GroupNorm(num_groups(out_channels, max_groups), out_channels, eps=eps)
        self.dropout = nn.Dropout(dropout)
        self.conv1 = Conv1d(out_channels, out_channels)
        if out_channels != in_channels or resample != "none":
            self.skip = Conv1d(in_channels, out_channels, kernel=1, resample=resample)
        else:
            self.skip = None
        self.attn = Attention1d(out_channels, head_channels, max_groups, eps) if attention else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """x: [batch, in_channels, frames], emb: [batch, emb_channels] -> [batch, out_channels, frames']."""
        h = self.conv0(F.silu(self.norm0(x)))
        h = F.silu(self.norm1(h + self.affine(emb)[:, :, None]))
        h = self.conv1(self.dropout(h))
        if self.skip is not None:
            x = self.skip(x)
        x = (h + x) * self.skip_scale
        if self.attn is not None:
            x = (x + self.attn(x)) * self.skip_scale
        return x


class UNet1D(nn.Module):
    """The backbone F: noisy latents + context latents + (noise label, CLAP) -> F(x), any frame count.

    Built from the `model` section of the exported config.json (the same keys as configs/ldm.py).
    """

    def __init__(self, latent_dim: int = 64, clap_dim: int = 512, channels: int = 512,
                 channel_mult: tuple[int, ...] = (1, 2, 2, 4), num_res_blocks: int = 2,
                 attn_levels: tuple[int, ...] = (2, 3), attn_head_channels: int = 64, emb_mult: int = 4,
                 noise_channels_mult: int = 1, max_positions: int = 10000, skip_scale: float = 0.5 ** 0.5,
                 norm_eps: float = 1e-6, max_norm_groups: int = 32, dropout: float = 0.0):
        super().__init__()
        self.latent_dim, self.clap_dim = latent_dim, clap_dim
        self.noise_channels = noise_channels_mult * channels
        self.max_positions = max_positions
        self.frame_multiple = 2 ** (len(channel_mult) - 1)
        emb_ch = emb_mult * channels
        self.map_clap0 = nn.Linear(clap_dim, self.noise_channels)
        self.map_clap1 = nn.Linear(self.noise_channels, self.noise_channels)
        self.null_clap = nn.Parameter(torch.zeros(self.noise_channels))
        self.map_layer0 = nn.Linear(self.noise_channels, emb_ch)
        self.map_layer1 = nn.Linear(emb_ch, emb_ch)

        def block(name: str, c_in: int, c_out: int, **kw) -> None:
            self.add_module(name, UNetBlock(c_in, c_out, emb_ch, dropout=dropout, skip_scale=skip_scale,
                                            head_channels=attn_head_channels, max_groups=max_norm_groups,
                                            eps=norm_eps, **kw))
            self.order.append(name)

        # The same construction order and names as the Flax module; `order` drives forward().
        self.order: list[str] = []
        skips, c = [], channels * channel_mult[0]
        self.enc_in = Conv1d(2 * latent_dim, c)
        for level, mult in enumerate(channel_mult):
            if level > 0:
                block(f"enc{level}_down", c, c, resample="down")
            skips.append(c)
            for i in range(num_res_blocks):
                block(f"enc{level}_block{i}", c, channels * mult, attention=level in attn_levels)
                c = channels * mult
                skips.append(c)
        last = len(channel_mult) - 1
        for level in reversed(range(len(channel_mult))):
            if level == last:
                block("mid0", c, c, attention=True)
                block("mid1", c, c)
            else:
                block(f"dec{level}_up", c, c, resample="up")
            for i in range(num_res_blocks + 1):
                c_in = c + skips.pop()
                c = channels * channel_mult[level]
                block(f"dec{level}_block{i}", c_in, c, attention=i == num_res_blocks and level in attn_levels)
        self.out_norm = nn.GroupNorm(num_groups(c, max_norm_groups), c, eps=norm_eps)
        self.out_conv = Conv1d(c, latent_dim)

    def embedding(self, c_noise: torch.Tensor, clap: torch.Tensor, clap_dropped: torch.Tensor) -> torch.Tensor:
        """[batch] noise labels + [batch, clap_dim] CLAP (learned null where dropped) -> [batch, emb]."""
        emb = positional_embedding(c_noise, self.noise_channels, self.max_positions)
        clap_emb = self.map_clap1(F.silu(self.map_clap0(clap.float())))
        emb = emb + torch.where(clap_dropped.bool()[:, None], self.null_clap[None, :], clap_emb)
        return F.silu(self.map_layer1(F.silu(self.map_layer0(emb))))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, context: torch.Tensor, clap: torch.Tensor,
                clap_dropped: torch.Tensor) -> torch.Tensor:
        """x, context: [batch, frames, latent_dim]; c_noise, clap_dropped: [batch]; clap: [batch, clap_dim].

        Returns F(x): [batch, frames, latent_dim] float32.
        """
        if x.ndim != 3 or x.shape[-1] != self.latent_dim or context.shape != x.shape:
            raise ValueError(f"x and context must be [batch, frames, {self.latent_dim}], "
                             f"got {tuple(x.shape)} and {tuple(context.shape)}")
        if tuple(clap.shape) != (x.shape[0], self.clap_dim):
            raise ValueError(f"clap must be [batch={x.shape[0]}, {self.clap_dim}], got {tuple(clap.shape)}")
        frames = x.shape[1]
        pad = (-frames) % self.frame_multiple
        h = F.pad(torch.cat([x, context], dim=-1).transpose(1, 2).float(), (0, pad))
        emb = self.embedding(c_noise, clap, clap_dropped)
        h = self.enc_in(h)
        skips = [h]
        for name in self.order:
            if name.startswith("dec") and "_block" in name:
                h = torch.cat([h, skips.pop()], dim=1)
            h = getattr(self, name)(h, emb)
            if name.startswith("enc"):
                skips.append(h)
        h = self.out_conv(F.silu(self.out_norm(h)))
        return h[:, :, :frames].transpose(1, 2)
