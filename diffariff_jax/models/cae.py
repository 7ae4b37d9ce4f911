"""The consistency autoencoder (SPEC 1): encoder, latent up-sampling path and consistency 2-D UNet.

Spectrograms are [batch, freq, frames, 2] (compressed complex STFT, see audio/stft.py); latents are
[batch, latent_frames, latent_dim] with latent_frames = frames / 2^(number of 2-D downsamplings).
The network here is the raw backbone F; the consistency preconditioning f = c_skip x + c_out F(c_in x)
lives in diffusion/consistency.py, as EDM keeps preconditioning outside its backbones.

Level structure (Music2Latent sizes in brackets): `multipliers` (1,2,4,4,4) give the channel width of each
level; between levels the resolution drops 4x in frequency only (`freq_downsample` = 1) or 2x in both
frequency and time (0): [1,0,0,0] takes 1024 bins x T frames to 32 bins x T/8 frames.

Band-energy shortcut (`band_shortcut` = n bands, 0 = off as in Music2Latent; the `demo` recipe, docs/demo.md):
the encoder adds a linear map of each latent frame's log mel-band energies, E = log10(mean of |S|^2 over the
band's bins and the frame's time_reduction STFT frames), to its pre-tanh output, and the decoder gets a
per-bin log gain g = Dense(latent) that scales its output, F = e^g * F_net. The band energies then reach
the latent, and the level of every bin reaches the output, through one linear map each, instead of
through the narrow 2-D levels (4 channels at full resolution in `tiny`); F_net is left the fine structure
and the phases. (An extra c_in x inside the gain, so that the untrained decode is coloured noise, trained
worse: docs/demo.md.)

Band readout and band matching (with the shortcut; `inference.band_renorm` turns the matching on): a
linear readout predicts each latent frame's band energies back from the latent, Ê = R z + c,
trained beside the codec on stop-gradient inputs and targets (training/cae_task.py), so its gradient
reaches no other weight. At decode, `match_band_energies` scales every bin of the decoded spectrogram by the log gain that
moves its bands' energies onto Ê, interpolated linearly between latent-frame centres. The one-step
decoder, uncertain of the phase, predicts a shrunken complex mean (9 to 12 dB quiet on the demo set, with
a duller envelope); the matched decode has the level and the envelope the latent records (docs/demo.md).
No band is raised by more than `inference.band_renorm_max_gain_db` (12 dB). On the demo set the 99th
percentile of the raise a band asks for is 13.5 dB for the encoder's latents and 20 dB for the LDM's,
some of whose values lie outside the encoder's range; uncapped, generated stems came out 5 dB louder than
real ones, and clipped.
"""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import Array

from diffariff_jax.audio.mel_loss import mel_filterbank
from diffariff_jax.models.cae_blocks import MLP, Downsample, GroupNorm, ResBlock, Upsample, positional_embedding
from diffariff_jax.models.conv2d import Conv2d


@dataclasses.dataclass(frozen=True)
class CAEShape:
    """Every architecture hyperparameter (config.model); hashable so modules stay plain dataclasses."""

    freq_bins: int = 1024
    data_channels: int = 2
    base_channels: int = 64
    multipliers: tuple[int, ...] = (1, 2, 4, 4, 4)
    attention: tuple[int, ...] = (0, 0, 1, 1, 1)
    freq_downsample: tuple[int, ...] = (1, 0, 0, 0)
    encoder_blocks: int = 1
    decoder_blocks: int = 2
    bottleneck_channels: int = 512
    bottleneck_blocks: int = 4
    latent_dim: int = 64
    heads: int = 4
    cond_channels: int = 256
    max_positions: float = 10000.0
    freq_scaling: bool = True
    norm_eps: float = 1e-5
    max_norm_groups: int = 32
    zero_init: bool = True
    band_shortcut: int = 0  # mel bands of the band-energy shortcut (0: off)
    sample_rate: int = 48000  # only places the shortcut's mel bands

    @classmethod
    def from_config(cls, model_cfg) -> "CAEShape":
        fields = {f.name for f in dataclasses.fields(cls)}
        values = {k: (tuple(v) if isinstance(v, (list, tuple)) else v) for k, v in model_cfg.items() if k in fields}
        return cls(**values)

    def __post_init__(self):
        if len(self.attention) != len(self.multipliers) or len(self.freq_downsample) != len(self.multipliers) - 1:
            raise ValueError("model: attention needs one entry per level and freq_downsample one per transition")
        if self.freq_bins % self.freq_reduction:
            raise ValueError(f"model: freq_bins {self.freq_bins} not divisible by {self.freq_reduction}")
        if not 0 <= self.band_shortcut <= self.latent_dim:
            raise ValueError(f"model: band_shortcut {self.band_shortcut} outside 0..latent_dim ({self.latent_dim})")

    def channels(self, level: int) -> int:
        return self.base_channels * self.multipliers[level]

    @property
    def levels(self) -> int:
        return len(self.multipliers)

    @property
    def time_reduction(self) -> int:
        """STFT frames per latent frame (8 for Music2Latent)."""
        return 2 ** sum(1 for f in self.freq_downsample if not f)

    @property
    def freq_reduction(self) -> int:
        return int(np.prod([4 if f else 2 for f in self.freq_downsample]))

    @property
    def bottom_freq(self) -> int:
        """Frequency rows at the lowest level (32 for Music2Latent)."""
        return self.freq_bins // self.freq_reduction


# Log10 band energies of compressed spectrograms span about -6 (the floor, |X| ~ 1e-4) to 2 for music at
# -20 dB RMS; this affine map brings them to about [-2, 2] before the shortcut's identity-initialised map.
_BAND_FLOOR, _BAND_CENTRE, _BAND_SPREAD = 1e-6, -2.0, 2.0


def _band_weights(s: CAEShape) -> np.ndarray:
    """[bands, freq] mel triangles, each row a mean over its bins (a numpy constant, built once per trace)."""
    weights = mel_filterbank(s.sample_rate, 2 * s.freq_bins, s.band_shortcut)
    return weights / np.maximum(weights.sum(axis=1, keepdims=True), 1e-12)


def band_energies(s: CAEShape, spec: Array) -> Array:
    """spec [batch, freq, frames, 2] -> normalised log mel-band energies [batch, frames / time_reduction,
    band_shortcut] of the compressed spectrogram (module docstring)."""
    weights = _band_weights(s)
    power = jnp.sum(jnp.square(spec.astype(jnp.float32)), axis=-1)  # [batch, freq, frames]
    b_, _, frames = power.shape
    power = power.reshape(b_, s.freq_bins, frames // s.time_reduction, s.time_reduction).mean(axis=-1)
    bands = jnp.einsum("nf,bft->btn", jnp.asarray(weights), power)
    return (jnp.log10(bands + _BAND_FLOOR) - _BAND_CENTRE) / _BAND_SPREAD


def _spread_to_bins(s: CAEShape) -> np.ndarray:
    """[bands, freq]: each bin's share of the bands that cover it (columns sum to 1; 0 where none does)."""
    weights = _band_weights(s)
    return weights / np.maximum(weights.sum(axis=0, keepdims=True), 1e-12)


def match_band_energies(s: CAEShape, spec: Array, target: Array, max_gain_db: float = 60.0) -> Array:
    """spec [batch, freq, frames, 2] with bands `target` [batch, frames / time_reduction, band_shortcut]
    (band_energies' units) -> spec with each bin scaled so that its bands' energies move onto the target.

    Per latent frame and band the magnitude gain is 10^(SPREAD (target - E(spec)) / 2) (E is log10 of a
    power), clipped to [-60 dB, max_gain_db]; bins take their bands' mean log gain, and the gain is linear
    in time between latent-frame centres (held at the edges), so no step appears at frame boundaries."""
    log_gain = (target - band_energies(s, spec)) * (_BAND_SPREAD / 2.0)  # [batch, latent_frames, bands]
    log_gain = jnp.clip(log_gain, -3.0, max_gain_db / 20.0)
    b_, _, frames, _ = spec.shape
    log_gain = jax.image.resize(log_gain, (b_, frames, s.band_shortcut), "linear")  # [batch, frames, bands]
    per_bin = jnp.einsum("btn,nf->bft", log_gain, jnp.asarray(_spread_to_bins(s), jnp.float32))
    return spec * jnp.power(10.0, per_bin)[..., None].astype(spec.dtype)


def _identity_init(scale: float):
    """Kernel [n_in, n_out] = scale x the first n_in columns of the identity: input i drives output i."""

    def init(key, shape, dtype=jnp.float32):
        del key
        return scale * jnp.eye(shape[0], shape[1], dtype=dtype)

    return init


def _norm_kwargs(s: CAEShape) -> dict[str, Any]:
    return {"eps": s.norm_eps, "max_groups": s.max_norm_groups}


def _block_kwargs(s: CAEShape, dtype: Any) -> dict[str, Any]:
    return {"heads": s.heads, "zero_init": s.zero_init, "dtype": dtype, **_norm_kwargs(s)}


class Encoder(nn.Module):
    """spec: [batch, freq, frames, 2] -> latents: [batch, frames / time_reduction, latent_dim] in (-1, 1)."""

    shape: CAEShape
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, spec: Array) -> Array:
        s = self.shape
        x = Conv2d(s.channels(0), (3, 3), padding="SAME", dtype=self.dtype, name="conv_inp")(spec)
        if s.freq_scaling:  # a learned gain per frequency bin
            x = x * self.param("freq_gain", nn.initializers.ones, (s.freq_bins, 1, 1))
        for level in range(s.levels):
            for b in range(s.encoder_blocks):
                x = ResBlock(s.channels(level), attention=bool(s.attention[level]), name=f"down_{level}_{b}",
                             **_block_kwargs(s, self.dtype))(x)
            if level < s.levels - 1:
                x = Downsample(s.channels(level), freq_only=bool(s.freq_downsample[level]), normalize=True,
                               dtype=self.dtype, name=f"downsample_{level}", **_norm_kwargs(s))(x)
        x = GroupNorm(name="prenorm_2d_to_1d", **_norm_kwargs(s))(x)
        b_, f, t, c = x.shape  # [batch, bottom_freq, latent_frames, channels]
        x = jnp.transpose(x, (0, 2, 3, 1)).reshape(b_, t, c * f)  # feature index = channel * freq + bin
        x = nn.Dense(s.bottleneck_channels, dtype=self.dtype, name="conv_to_1d")(x)
        for i in range(s.bottleneck_blocks):
            x = ResBlock(s.bottleneck_channels, dims=1, name=f"bottleneck_{i}", **_block_kwargs(s, self.dtype))(x)
        x = nn.silu(GroupNorm(name="norm_out", **_norm_kwargs(s))(x))
        x = nn.Dense(s.latent_dim, dtype=self.dtype, name="conv_out")(x).astype(jnp.float32)
        if s.band_shortcut:  # at init tanh(x + E / 2): the band energies, invertibly
            x = x + nn.Dense(s.latent_dim, use_bias=False, kernel_init=_identity_init(0.5),
                             name="band_shortcut")(band_energies(s, spec))
        return jnp.tanh(x)


class LatentUpPath(nn.Module):
    """latents: [batch, latent_frames, latent_dim] -> one feature map per UNet level, finest first:
    tuple of [batch, freq_l, frames_l, channels_l]; with band_shortcut, then the decoder's log gain
    [batch, freq, frames, 1] (constant over each latent frame's time_reduction STFT frames)."""

    shape: CAEShape
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, latents: Array) -> tuple[Array, ...]:
        s = self.shape
        x = nn.Dense(s.bottleneck_channels, dtype=self.dtype, name="conv_inp")(latents)
        for i in range(s.bottleneck_blocks):
            x = ResBlock(s.bottleneck_channels, dims=1, name=f"bottleneck_{i}", **_block_kwargs(s, self.dtype))(x)
        top = s.levels - 1
        x = nn.Dense(s.channels(top) * s.bottom_freq, dtype=self.dtype, name="conv_to_2d")(x)
        b_, t, _ = x.shape
        x = jnp.transpose(x.reshape(b_, t, s.bottom_freq, s.channels(top)), (0, 2, 1, 3))  # index = bin * ch + c
        pyramid = []
        for level in reversed(range(s.levels)):
            for b in range(s.encoder_blocks):
                x = ResBlock(s.channels(level), attention=bool(s.attention[level]), name=f"up_{level}_{b}",
                             **_block_kwargs(s, self.dtype))(x)
            pyramid.append(x)
            if level > 0:
                x = Upsample(s.channels(level - 1), freq_only=bool(s.freq_downsample[level - 1]),
                             dtype=self.dtype, name=f"upsample_{level}")(x)
        maps = tuple(reversed(pyramid))
        if s.band_shortcut:
            gain = nn.Dense(s.freq_bins, kernel_init=nn.initializers.zeros, name="band_gain")(latents)
            gain = jnp.repeat(jnp.transpose(gain, (0, 2, 1))[..., None], s.time_reduction, axis=2)
            maps = maps + (gain.astype(jnp.float32),)
        return maps


class BandReadout(nn.Module):
    """raw latents [batch, latent_frames, latent_dim] -> predicted band energies [batch, latent_frames,
    band_shortcut]: linear in the latent clipped to tanh's range. Linear, so that a generated latent outside
    the encoder's range (the LDM writes some) cannot ask for an absurd level: on the demo set an atanh
    feature read the encoder's latents to 0.4 dB instead of 1.1, but gave generated ones +-140 dB."""

    shape: CAEShape

    @nn.compact
    def __call__(self, latents: Array) -> Array:
        z = jnp.clip(latents.astype(jnp.float32), -1.0, 1.0)
        return nn.Dense(self.shape.band_shortcut, kernel_init=_readout_init, name="dense")(z)


def _readout_init(key, shape, dtype=jnp.float32):
    """Kernel [latent_dim, bands] reading E = 2 z, the linearisation of the untrained encoder's tanh(E / 2)
    (while its learned path is zero), a start that training corrects."""
    del key
    return 2.0 * jnp.eye(shape[0], shape[1], dtype=dtype)


class ConsistencyUNet(nn.Module):
    """The raw consistency backbone F. x_in = c_in * x_noisy: [batch, freq, frames, 2], sigma: [batch],
    pyramid from LatentUpPath -> [batch, freq, frames, 2]. Each level's latent map enters every block
    through a 1x1 conv, averaged in with 1/sqrt(n) so the sum keeps unit scale."""

    shape: CAEShape
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x_in: Array, sigma: Array, pyramid: tuple[Array, ...]) -> Array:
        s = self.shape
        emb = positional_embedding(jnp.log(sigma) / 4.0, s.cond_channels, s.max_positions)  # [batch, cond]
        temb = MLP((s.cond_channels, s.cond_channels), dtype=self.dtype, name="emb_proj")(emb)
        gains = {}
        if s.freq_scaling:  # noise-level-dependent gain per frequency bin at input and output
            for where in ("inp", "out"):
                g = MLP((s.cond_channels, s.cond_channels, s.freq_bins), final_silu=False, zero_last=s.zero_init,
                        dtype=self.dtype, name=f"scale_{where}")(emb)
                gains[where] = 1.0 + g[:, :, None, None]  # [batch, freq, 1, 1]
        x = Conv2d(s.channels(0), (3, 3), padding="SAME", dtype=self.dtype, name="conv_inp")(x_in)
        if s.freq_scaling:
            x = x * gains["inp"]
        skips = []
        for level in range(s.levels):
            for b in range(s.decoder_blocks):
                d = Conv2d(s.channels(level), (1, 1), dtype=self.dtype, name=f"down_latent_{level}_{b}")(pyramid[level])
                x = (x + d) / np.sqrt(2.0)
                x = ResBlock(s.channels(level), attention=bool(s.attention[level]), name=f"down_{level}_{b}",
                             **_block_kwargs(s, self.dtype))(x, temb)
                skips.append(x)
            if level < s.levels - 1:
                x = Downsample(s.channels(level + 1), freq_only=bool(s.freq_downsample[level]),
                               dtype=self.dtype, name=f"downsample_{level}", **_norm_kwargs(s))(x)
        for level in reversed(range(s.levels)):
            for b in range(s.decoder_blocks):
                d = Conv2d(s.channels(level), (1, 1), dtype=self.dtype, name=f"up_latent_{level}_{b}")(pyramid[level])
                x = (x + skips.pop() + d) / np.sqrt(3.0)
                x = ResBlock(s.channels(level), attention=bool(s.attention[level]), name=f"up_{level}_{b}",
                             **_block_kwargs(s, self.dtype))(x, temb)
            if level > 0:
                x = Upsample(s.channels(level - 1), freq_only=bool(s.freq_downsample[level - 1]),
                             dtype=self.dtype, name=f"upsample_{level}")(x)
        d = Conv2d(s.channels(0), (1, 1), dtype=self.dtype, name="conv_decoded")(pyramid[0])
        x = (x + d) / np.sqrt(2.0)
        x = nn.silu(GroupNorm(name="norm_out", **_norm_kwargs(s))(x))
        if s.freq_scaling:
            x = x * gains["out"]
        init = nn.initializers.zeros if s.zero_init else nn.linear.default_kernel_init
        x = Conv2d(s.data_channels, (3, 3), padding="SAME", dtype=self.dtype, kernel_init=init, name="conv_out")(x)
        x = x.astype(jnp.float32)
        if s.band_shortcut:  # clipped so that an untrained gain cannot overflow
            x = x * jnp.exp(jnp.clip(pyramid[-1], -12.0, 6.0))
        return x


class CAE(nn.Module):
    """Encoder + latent up-path + consistency UNet; use `method=` to call one part:
    encode(spec) -> raw latents, pyramid(raw latents) -> maps, network(x_in, sigma, maps) -> F."""

    shape: CAEShape
    dtype: Any = jnp.float32

    def setup(self):
        self.encoder = Encoder(self.shape, self.dtype)
        self.up_path = LatentUpPath(self.shape, self.dtype)
        self.unet = ConsistencyUNet(self.shape, self.dtype)
        if self.shape.band_shortcut:
            self.band_readout = BandReadout(self.shape)

    def encode(self, spec: Array) -> Array:
        """spec: [batch, freq, frames, 2] -> raw latents [batch, frames / time_reduction, latent_dim]."""
        return self.encoder(spec)

    def pyramid(self, latents: Array) -> tuple[Array, ...]:
        """raw latents [batch, latent_frames, latent_dim] -> per-level conditioning maps."""
        return self.up_path(latents)

    def network(self, x_in: Array, sigma: Array, pyramid: tuple[Array, ...]) -> Array:
        """c_in-scaled noisy spec [batch, freq, frames, 2], sigma [batch] -> backbone output F."""
        return self.unet(x_in, sigma, pyramid)

    def readout(self, latents: Array) -> Array:
        """raw latents -> predicted band energies [batch, latent_frames, band_shortcut] (band_shortcut only)."""
        return self.band_readout(latents)

    def __call__(self, spec: Array, sigma: Array) -> Array:
        """Initialisation path through every part: spec -> latents -> maps -> F(spec, sigma), and the band
        readout of the latents where there is one (its output is not returned)."""
        latents = self.encode(spec)
        if self.shape.band_shortcut:
            self.readout(latents)
        return self.network(spec, sigma, self.pyramid(latents))


def analytic_flops(s: CAEShape, frames: int) -> dict[str, float]:
    """Forward FLOPs (2 per multiply-add; convolutions, dense layers and attention; norms and
    activations left out) for one example of `frames` STFT frames (a multiple of time_reduction):
    {"encode": encoder, "pyramid": latent up-path, "network": one UNet evaluation}."""

    def conv(k: int, cin: int, cout: int, pos: int) -> float:
        return 2.0 * k * cin * cout * pos

    def block(cin: int, cout: int, pos: int, k: int, attn_freq: int = 0, cond: bool = False) -> float:
        fl = conv(k, cin, cout, pos) + conv(k, cout, cout, pos) + (conv(1, cin, cout, pos) if cin != cout else 0.0)
        if cond:
            fl += conv(1, s.cond_channels, cout, 1)
        if attn_freq:  # q, k, v, out projections + scores and weighted sum over attn_freq bins
            fl += conv(1, cout, 4 * cout, pos) + 2 * 2.0 * pos * attn_freq * cout
        return fl

    geo = [(s.freq_bins, frames)]
    for fd in s.freq_downsample:
        f, t = geo[-1]
        geo.append((f // 4, t) if fd else (f // 2, t // 2))
    pos = [f * t for f, t in geo]
    ch = [s.channels(l) for l in range(s.levels)]
    attn = [geo[l][0] if s.attention[l] else 0 for l in range(s.levels)]
    resample_k = [5 if fd else 9 for fd in s.freq_downsample]
    top, t_lat = s.levels - 1, geo[-1][1]

    enc = conv(9, s.data_channels, ch[0], pos[0])
    cin = ch[0]
    for l in range(s.levels):
        for _ in range(s.encoder_blocks):
            enc += block(cin, ch[l], pos[l], 9, attn[l])
            cin = ch[l]
        if l < top:
            enc += conv(resample_k[l], ch[l], ch[l], pos[l + 1])
    enc += conv(1, ch[top] * geo[top][0], s.bottleneck_channels, t_lat)
    enc += s.bottleneck_blocks * block(s.bottleneck_channels, s.bottleneck_channels, t_lat, 3)
    enc += conv(1, s.bottleneck_channels, s.latent_dim, t_lat)
    if s.band_shortcut:  # band energies and the shortcut map
        enc += conv(1, s.freq_bins, s.band_shortcut, t_lat) + conv(1, s.band_shortcut, s.latent_dim, t_lat)

    pyr = conv(1, s.latent_dim, s.bottleneck_channels, t_lat)
    pyr += s.bottleneck_blocks * block(s.bottleneck_channels, s.bottleneck_channels, t_lat, 3)
    pyr += conv(1, s.bottleneck_channels, ch[top] * geo[top][0], t_lat)
    for l in reversed(range(s.levels)):
        pyr += s.encoder_blocks * block(ch[l], ch[l], pos[l], 9, attn[l])
        if l > 0:
            pyr += conv(resample_k[l - 1], ch[l], ch[l - 1], pos[l - 1])
    if s.band_shortcut:
        pyr += conv(1, s.latent_dim, s.freq_bins, t_lat)

    c = s.cond_channels
    net = 2 * conv(1, c, c, 1) + 2 * (2 * conv(1, c, c, 1) + conv(1, c, s.freq_bins, 1))  # embedding MLPs
    net += conv(9, s.data_channels, ch[0], pos[0])
    for l in range(s.levels):
        net += s.decoder_blocks * (conv(1, ch[l], ch[l], pos[l]) + block(ch[l], ch[l], pos[l], 9, attn[l], True))
        if l < top:
            net += conv(resample_k[l], ch[l], ch[l + 1], pos[l + 1])
    for l in reversed(range(s.levels)):
        net += s.decoder_blocks * (conv(1, ch[l], ch[l], pos[l]) + block(ch[l], ch[l], pos[l], 9, attn[l], True))
        if l > 0:
            net += conv(resample_k[l - 1], ch[l], ch[l - 1], pos[l - 1])
    net += conv(1, ch[0], ch[0], pos[0]) + conv(9, ch[0], s.data_channels, pos[0])
    return {"encode": enc, "pyramid": pyr, "network": net}
