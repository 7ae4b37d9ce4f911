"""The consistency autoencoder's networks in PyTorch: the twin of `diffariff_jax/models/cae.py` and
`cae_blocks.py` (encoder, latent up-sampling path, consistency 2-D UNet), parameter for parameter.

Layouts: 2-D maps are [batch, channels, freq, time] (torch's NCHW with H = frequency), 1-D ones
[batch, channels, time]; the Flax modules are channels-last, and every flattening between 2-D and 1-D
keeps the Flax feature order (encoder: channel * freq + bin; up-path: bin * channels + channel).
`shape` is the config's `model` section (the keys of CAEShape). This file imports only torch.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def norm_groups(channels: int, max_groups: int) -> int:
    return max(1, min(channels // 4, max_groups))


class GroupNorm(nn.Module):
    """GroupNorm in float32 (the Flax wrapper holds it as `gn`)."""

    def __init__(self, channels: int, eps: float, max_groups: int):
        super().__init__()
        self.gn = nn.GroupNorm(norm_groups(channels, max_groups), channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.gn(x.float())


class FreqAttention(nn.Module):
    """Pre-norm multi-head self-attention along frequency for every time frame, plus the input."""

    def __init__(self, channels: int, heads: int, eps: float, max_groups: int):
        super().__init__()
        self.heads = heads
        self.norm = GroupNorm(channels, eps, max_groups)
        self.qkv = nn.Linear(channels, 3 * channels)
        self.out = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # [b, c, f, t]
        b, c, f, t = x.shape
        h = self.norm(x).permute(0, 3, 2, 1).reshape(b * t, f, c)
        q, k, v = self.qkv(h).reshape(b * t, f, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4).unbind(0)
        h = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b * t, f, c)
        return x + self.out(h).reshape(b, t, f, c).permute(0, 3, 2, 1)


class ResBlock(nn.Module):
    """GN-SiLU-conv, optional noise-embedding bias, GN-SiLU-conv, 1x1 shortcut on a width change,
    optional frequency attention. dims = 2 ([b, c, f, t]) or 1 ([b, c, t])."""

    def __init__(self, c_in: int, channels: int, s: dict, *, dims: int = 2, attention: bool = False,
                 cond: bool = False):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv1d
        eps, groups = s["norm_eps"], s["max_norm_groups"]
        self.norm1 = GroupNorm(c_in, eps, groups)
        self.conv1 = conv(c_in, channels, 3, padding=1)
        self.proj_emb = nn.Linear(s["cond_channels"], channels) if cond else None
        self.norm2 = GroupNorm(channels, eps, groups)
        self.conv2 = conv(channels, channels, 3, padding=1)
        self.res_conv = conv(c_in, channels, 1) if c_in != channels else None
        self.att = FreqAttention(channels, s["heads"], eps, groups) if attention else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        if self.proj_emb is not None:
            bias = self.proj_emb(emb)
            h = h + bias.reshape(bias.shape + (1,) * (h.ndim - 2))
        h = self.conv2(F.silu(self.norm2(h)))
        x = (x if self.res_conv is None else self.res_conv(x)) + h
        return x if self.att is None else self.att(x)


class Downsample(nn.Module):
    """Strided conv: 4x in frequency only (5x1) or 2x in both (3x3), optionally GroupNorm first."""

    def __init__(self, c_in: int, channels: int, freq_only: bool, s: dict, normalize: bool):
        super().__init__()
        self.norm = GroupNorm(c_in, s["norm_eps"], s["max_norm_groups"]) if normalize else None
        self.conv = (nn.Conv2d(c_in, channels, (5, 1), stride=(4, 1), padding=(2, 0)) if freq_only
                     else nn.Conv2d(c_in, channels, 3, stride=2, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x if self.norm is None else self.norm(x))


class Upsample(nn.Module):
    """Nearest-neighbour upsampling then conv: 4x in frequency (5x1) or 2x in both (3x3)."""

    def __init__(self, c_in: int, channels: int, freq_only: bool):
        super().__init__()
        self.factors = (4, 1) if freq_only else (2, 2)
        self.conv = (nn.Conv2d(c_in, channels, (5, 1), padding=(2, 0)) if freq_only
                     else nn.Conv2d(c_in, channels, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.repeat_interleave(self.factors[0], dim=2).repeat_interleave(self.factors[1], dim=3)
        return self.conv(x)


def positional_embedding(x: torch.Tensor, dim: int, max_positions: float) -> torch.Tensor:
    """[batch] -> [batch, dim]: sines then cosines (the CAE's order)."""
    half = dim // 2
    freqs = (1.0 / max_positions) ** (torch.arange(half, dtype=torch.float32, device=x.device) / (half - 1))
    arg = x.float()[:, None] * freqs[None, :]
    return torch.cat([torch.sin(arg), torch.cos(arg)], dim=-1)


class MLP(nn.Module):
    """Linear-SiLU layers named dense_0.., the last one linear unless final_silu."""

    def __init__(self, c_in: int, features: tuple[int, ...], final_silu: bool = True):
        super().__init__()
        self.final_silu, self.count = final_silu, len(features)
        for i, width in enumerate(features):
            self.add_module(f"dense_{i}", nn.Linear(c_in, width))
            c_in = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i in range(self.count):
            x = getattr(self, f"dense_{i}")(x)
            if i < self.count - 1 or self.final_silu:
                x = F.silu(x)
        return x


def time_reduction(s: dict) -> int:
    """STFT frames per latent frame (CAEShape.time_reduction)."""
    return 2 ** sum(1 for f in s["freq_downsample"] if not f)


def _hz_to_mel(hz: torch.Tensor) -> torch.Tensor:
    """Slaney's mel scale (librosa's default): linear to 1 kHz, logarithmic above."""
    linear = hz / (200.0 / 3.0)
    return torch.where(hz >= 1000.0, 15.0 + torch.log(hz.clamp(min=1e-9) / 1000.0) / (math.log(6.4) / 27.0), linear)


def _mel_to_hz(mel: torch.Tensor) -> torch.Tensor:
    return torch.where(mel >= 15.0, 1000.0 * torch.exp((math.log(6.4) / 27.0) * (mel - 15.0)), mel * (200.0 / 3.0))


def band_matrix(s: dict) -> torch.Tensor:
    """[bands, freq_bins]: triangular mel bands over the kept STFT bins, each row summing to 1, so that a
    band's energy is the mean over its bins (the band-energy shortcut of models/cae.py)."""
    bins, bands, rate = s["freq_bins"], s["band_shortcut"], s.get("sample_rate", 48000)  # CAEShape default
    freqs = torch.arange(bins, dtype=torch.float64) * (rate / 2.0) / bins
    edges = _mel_to_hz(torch.linspace(0.0, float(_hz_to_mel(torch.tensor(rate / 2.0, dtype=torch.float64))),
                                      bands + 2, dtype=torch.float64))
    lower = (freqs[None] - edges[:-2, None]) / (edges[1:-1] - edges[:-2])[:, None]
    upper = (edges[2:, None] - freqs[None]) / (edges[2:] - edges[1:-1])[:, None]
    weights = torch.clamp(torch.minimum(lower, upper), min=0.0)
    return (weights / weights.sum(dim=1, keepdim=True).clamp(min=1e-12)).float()


def band_energies(s: dict, matrix: torch.Tensor, spec: torch.Tensor) -> torch.Tensor:
    """spec [batch, 2, freq, frames] -> normalised log band energies [batch, frames / time_reduction, bands]."""
    power = spec.float().square().sum(dim=1)  # [b, f, t]
    b_, f, t = power.shape
    power = power.reshape(b_, f, t // time_reduction(s), time_reduction(s)).mean(dim=-1)
    bands = torch.einsum("nf,bft->btn", matrix, power)
    return (torch.log10(bands + 1e-6) + 2.0) / 2.0


def match_band_energies(s: dict, matrix: torch.Tensor, spec: torch.Tensor, target: torch.Tensor,
                        max_gain_db: float = 60.0) -> torch.Tensor:
    """spec [batch, 2, freq, frames] with target bands [batch, frames / time_reduction, bands] -> spec with
    every bin scaled by its bands' mean log gain (each band's in [-60 dB, max_gain_db]), linear in time
    between latent-frame centres (models/cae.py)."""
    log_gain = target - band_energies(s, matrix, spec)  # log10 magnitude gain: SPREAD / 2 = 1
    log_gain = log_gain.clamp(-3.0, max_gain_db / 20.0)
    log_gain = F.interpolate(log_gain.transpose(1, 2), size=spec.shape[-1], mode="linear", align_corners=False)
    spread = matrix / matrix.sum(dim=0, keepdim=True).clamp(min=1e-12)  # each bin's share of its bands
    per_bin = torch.einsum("bnt,nf->bft", log_gain, spread)
    return spec * torch.pow(10.0, per_bin)[:, None]


class BandReadout(nn.Module):
    """raw latents [batch, frames, latent_dim] -> predicted band energies [batch, frames, bands]."""

    def __init__(self, s: dict):
        super().__init__()
        self.dense = nn.Linear(s["latent_dim"], s["band_shortcut"])

    def forward(self, latents: torch.Tensor) -> torch.Tensor:
        return self.dense(latents.clamp(-1.0, 1.0))


def channels(s: dict, level: int) -> int:
    return s["base_channels"] * s["multipliers"][level]


def bottom_freq(s: dict) -> int:
    return s["freq_bins"] // math.prod(4 if f else 2 for f in s["freq_downsample"])


class Encoder(nn.Module):
    """spec [batch, 2, freq, frames] -> raw latents [batch, frames / time_reduction, latent_dim] in (-1, 1)."""

    def __init__(self, s: dict):
        super().__init__()
        self.s, levels = s, len(s["multipliers"])
        self.conv_inp = nn.Conv2d(s["data_channels"], channels(s, 0), 3, padding=1)
        if s["freq_scaling"]:
            self.freq_gain = nn.Parameter(torch.ones(s["freq_bins"], 1, 1))
        c = channels(s, 0)
        for level in range(levels):
            for b in range(s["encoder_blocks"]):
                self.add_module(f"down_{level}_{b}", ResBlock(c, channels(s, level), s,
                                                              attention=bool(s["attention"][level])))
                c = channels(s, level)
            if level < levels - 1:
                self.add_module(f"downsample_{level}", Downsample(c, c, bool(s["freq_downsample"][level]), s, True))
        self.prenorm_2d_to_1d = GroupNorm(c, s["norm_eps"], s["max_norm_groups"])
        self.conv_to_1d = nn.Linear(c * bottom_freq(s), s["bottleneck_channels"])
        for i in range(s["bottleneck_blocks"]):
            self.add_module(f"bottleneck_{i}", ResBlock(s["bottleneck_channels"], s["bottleneck_channels"], s, dims=1))
        self.norm_out = GroupNorm(s["bottleneck_channels"], s["norm_eps"], s["max_norm_groups"])
        self.conv_out = nn.Linear(s["bottleneck_channels"], s["latent_dim"])
        if s.get("band_shortcut", 0):
            self.band_shortcut = nn.Linear(s["band_shortcut"], s["latent_dim"], bias=False)
            self.register_buffer("bands", band_matrix(s), persistent=False)

    def forward(self, spec: torch.Tensor) -> torch.Tensor:
        s, levels = self.s, len(self.s["multipliers"])
        x = self.conv_inp(spec)
        if s["freq_scaling"]:
            x = x * self.freq_gain[:, 0, 0][None, None, :, None]
        for level in range(levels):
            for b in range(s["encoder_blocks"]):
                x = getattr(self, f"down_{level}_{b}")(x)
            if level < levels - 1:
                x = getattr(self, f"downsample_{level}")(x)
        x = self.prenorm_2d_to_1d(x)
        b_, c, f, t = x.shape
        x = self.conv_to_1d(x.permute(0, 3, 1, 2).reshape(b_, t, c * f)).transpose(1, 2)
        for i in range(s["bottleneck_blocks"]):
            x = getattr(self, f"bottleneck_{i}")(x)
        x = self.conv_out(F.silu(self.norm_out(x)).transpose(1, 2))
        if s.get("band_shortcut", 0):
            x = x + self.band_shortcut(band_energies(s, self.bands, spec))
        return torch.tanh(x)


class LatentUpPath(nn.Module):
    """raw latents [batch, latent_frames, latent_dim] -> one map per UNet level, finest first."""

    def __init__(self, s: dict):
        super().__init__()
        self.s, levels = s, len(s["multipliers"])
        bott = s["bottleneck_channels"]
        self.conv_inp = nn.Linear(s["latent_dim"], bott)
        for i in range(s["bottleneck_blocks"]):
            self.add_module(f"bottleneck_{i}", ResBlock(bott, bott, s, dims=1))
        self.conv_to_2d = nn.Linear(bott, channels(s, levels - 1) * bottom_freq(s))
        c = channels(s, levels - 1)
        for level in reversed(range(levels)):
            for b in range(s["encoder_blocks"]):
                self.add_module(f"up_{level}_{b}", ResBlock(c, channels(s, level), s,
                                                            attention=bool(s["attention"][level])))
                c = channels(s, level)
            if level > 0:
                self.add_module(f"upsample_{level}", Upsample(c, channels(s, level - 1),
                                                              bool(s["freq_downsample"][level - 1])))
                c = channels(s, level - 1)
        if s.get("band_shortcut", 0):
            self.band_gain = nn.Linear(s["latent_dim"], s["freq_bins"])

    def forward(self, latents: torch.Tensor) -> list[torch.Tensor]:
        """Then, with the band-energy shortcut, the decoder's log gain [batch, 1, freq, frames]."""
        s, levels = self.s, len(self.s["multipliers"])
        x = self.conv_inp(latents).transpose(1, 2)
        for i in range(s["bottleneck_blocks"]):
            x = getattr(self, f"bottleneck_{i}")(x)
        x = self.conv_to_2d(x.transpose(1, 2))
        b_, t, _ = x.shape
        x = x.reshape(b_, t, bottom_freq(s), channels(s, levels - 1)).permute(0, 3, 2, 1)
        pyramid = []
        for level in reversed(range(levels)):
            for b in range(s["encoder_blocks"]):
                x = getattr(self, f"up_{level}_{b}")(x)
            pyramid.append(x)
            if level > 0:
                x = getattr(self, f"upsample_{level}")(x)
        maps = pyramid[::-1]
        if s.get("band_shortcut", 0):
            gain = self.band_gain(latents).transpose(1, 2)[:, None]  # [b, 1, freq, latent frames]
            maps.append(torch.repeat_interleave(gain, time_reduction(s), dim=3))
        return maps


class ConsistencyUNet(nn.Module):
    """The raw consistency backbone F(c_in x, sigma, pyramid): [batch, 2, freq, frames] -> same shape."""

    def __init__(self, s: dict):
        super().__init__()
        self.s, levels, cond = s, len(s["multipliers"]), s["cond_channels"]
        self.emb_proj = MLP(cond, (cond, cond))
        if s["freq_scaling"]:
            self.scale_inp = MLP(cond, (cond, cond, s["freq_bins"]), final_silu=False)
            self.scale_out = MLP(cond, (cond, cond, s["freq_bins"]), final_silu=False)
        self.conv_inp = nn.Conv2d(s["data_channels"], channels(s, 0), 3, padding=1)
        c = channels(s, 0)
        for level in range(levels):
            for b in range(s["decoder_blocks"]):
                self.add_module(f"down_latent_{level}_{b}", nn.Conv2d(channels(s, level), channels(s, level), 1))
                self.add_module(f"down_{level}_{b}", ResBlock(c, channels(s, level), s, cond=True,
                                                              attention=bool(s["attention"][level])))
                c = channels(s, level)
            if level < levels - 1:
                self.add_module(f"downsample_{level}", Downsample(c, channels(s, level + 1),
                                                                  bool(s["freq_downsample"][level]), s, False))
                c = channels(s, level + 1)
        for level in reversed(range(levels)):
            for b in range(s["decoder_blocks"]):
                self.add_module(f"up_latent_{level}_{b}", nn.Conv2d(channels(s, level), channels(s, level), 1))
                self.add_module(f"up_{level}_{b}", ResBlock(c, channels(s, level), s, cond=True,
                                                            attention=bool(s["attention"][level])))
                c = channels(s, level)
            if level > 0:
                self.add_module(f"upsample_{level}", Upsample(c, channels(s, level - 1),
                                                              bool(s["freq_downsample"][level - 1])))
                c = channels(s, level - 1)
        self.conv_decoded = nn.Conv2d(channels(s, 0), channels(s, 0), 1)
        self.norm_out = GroupNorm(c, s["norm_eps"], s["max_norm_groups"])
        self.conv_out = nn.Conv2d(c, s["data_channels"], 3, padding=1)

    def forward(self, x_in: torch.Tensor, sigma: torch.Tensor, pyramid: list[torch.Tensor]) -> torch.Tensor:
        s, levels = self.s, len(self.s["multipliers"])
        emb = positional_embedding(torch.log(sigma) / 4.0, s["cond_channels"], s["max_positions"])
        temb = self.emb_proj(emb)
        x = self.conv_inp(x_in)
        if s["freq_scaling"]:
            x = x * (1.0 + self.scale_inp(emb))[:, None, :, None]
        skips = []
        for level in range(levels):
            for b in range(s["decoder_blocks"]):
                x = (x + getattr(self, f"down_latent_{level}_{b}")(pyramid[level])) / math.sqrt(2.0)
                x = getattr(self, f"down_{level}_{b}")(x, temb)
                skips.append(x)
            if level < levels - 1:
                x = getattr(self, f"downsample_{level}")(x)
        for level in reversed(range(levels)):
            for b in range(s["decoder_blocks"]):
                d = getattr(self, f"up_latent_{level}_{b}")(pyramid[level])
                x = getattr(self, f"up_{level}_{b}")((x + skips.pop() + d) / math.sqrt(3.0), temb)
            if level > 0:
                x = getattr(self, f"upsample_{level}")(x)
        x = (x + self.conv_decoded(pyramid[0])) / math.sqrt(2.0)
        x = F.silu(self.norm_out(x))
        if s["freq_scaling"]:
            x = x * (1.0 + self.scale_out(emb))[:, None, :, None]
        x = self.conv_out(x)
        if s.get("band_shortcut", 0):
            x = x * torch.exp(pyramid[-1].clamp(-12.0, 6.0))
        return x
