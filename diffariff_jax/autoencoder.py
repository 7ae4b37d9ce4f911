"""Inference API of the consistency autoencoder: waveforms <-> latents, any length, mono or stereo.

    ae = Autoencoder.load("runs/cae")          # a training workdir or a release dir
    z = ae.encode(wav)                         # [batch, samples] -> [batch, frames, 64]
    y = ae.decode(z, jax.random.PRNGKey(0), num_samples=wav.shape[-1])   # -> [batch, samples]

Frame arithmetic (hop h = 512, time reduction r = 8, so one latent frame = h * r = 4096 samples):
    frames_for(n) = max(1, ceil(n / 4096));  10 s at 48 kHz: ceil(480000 / 4096) = 118 frames
(117 whole 4096-sample blocks plus one holding the last 768 samples and zeros). The waveform is
zero-padded to frames * 4096 samples plus 768 on each side, so STFT frames 8k..8k+7 are centred on
samples [4096 k, 4096 (k + 1)); decode returns frames * 4096 samples, or num_samples of them.

Long clips are cut into windows of `inference.chunk_frames` latent frames, each encoded (or decoded)
on its own with at most `inference.batch_chunks` clips per network call, so memory stays bounded:
encoding a clip equals concatenating the encodings of its windows (the last one may be shorter). Stereo input [batch, 2, samples] is encoded
channel by channel into [batch, 2, frames, 64]; decode takes either layout back.
Latents are the encoder's tanh output divided by `inference.latent_scale` (0.06: about unit std).
"""
from __future__ import annotations

import functools
import math
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from diffariff_jax.audio.io import AudioError, check_waveform
from diffariff_jax.audio.stft import Stft
from diffariff_jax.diffusion.consistency import Consistency
from diffariff_jax.models.cae import CAE, CAEShape, match_band_energies


def cae_parts(config: ml_collections.ConfigDict, user: str) -> tuple[CAEShape, Stft, Consistency]:
    """The CAE's architecture, transform and consistency schedule from a config of kind "cae"; `user`
    names the caller in the one-line error for a config of another kind or inconsistent sizes."""
    if config.get("kind") != "cae":
        raise ValueError(f"{user} needs a config of kind 'cae', got {config.get('kind')!r}")
    shape = CAEShape.from_config(config.model)
    stft = Stft.from_config(config.stft)
    if stft.bins != shape.freq_bins:
        raise ValueError(f"config: stft gives {stft.bins} bins, model.freq_bins is {shape.freq_bins}")
    if config.inference.get("band_renorm") and not shape.band_shortcut:
        raise ValueError("config: inference.band_renorm needs the band-energy shortcut (model.band_shortcut > 0)")
    return shape, stft, Consistency.from_config(config.consistency)


class Autoencoder:
    """A CAE with its config and params; numpy in, numpy out."""

    def __init__(self, config: ml_collections.ConfigDict, params: Any):
        self.config = config
        self.params = params
        self.shape, self.stft, self.consistency = cae_parts(config, "Autoencoder")
        self.model = CAE(self.shape)
        self.sample_rate = int(config.data.sample_rate)
        self.latent_dim = self.shape.latent_dim
        self.latent_scale = float(config.inference.latent_scale)
        self.chunk_frames = int(config.inference.chunk_frames)
        self.batch_chunks = int(config.inference.batch_chunks)
        # The most dB a band is raised by when matching, or None: no matching.
        self.band_renorm = (float(config.inference.get("band_renorm_max_gain_db", 12.0))
                            if config.inference.get("band_renorm", False) else None)
        if self.band_renorm is not None and "band_readout" not in params.get("params", {}):
            raise ValueError("Autoencoder: these CAE weights have no band readout (trained before it existed): "
                             "retrain the CAE, or decode without it with inference.band_renorm = False")
        self.hop_samples = self.stft.hop * self.shape.time_reduction  # samples per latent frame
        self.frames_per_second = self.sample_rate / self.hop_samples

    @classmethod
    def load(cls, path: str) -> "Autoencoder":
        """From a training workdir (its newest checkpoint's EMA params) or a release dir."""
        from diffariff_jax.training.checkpoint import load_for_inference

        config, params = load_for_inference(path, kind="cae")
        return cls(config, params)

    def encode_frames(self, params: Any, wav: jax.Array) -> jax.Array:
        """Pure, jit-able encode of whole frames without chunking, for callers with their own jit and
        shardings (precompute): wav [batch, frames * 4096] -> latents [batch, frames, latent_dim], scaled."""
        return _encode_raw(params, wav, shape=self.shape, stft=self.stft) / self.latent_scale

    def frames_for(self, num_samples: int) -> int:
        """Latent frames for a clip of num_samples samples: max(1, ceil(num_samples / 4096))."""
        return max(1, math.ceil(num_samples / self.hop_samples))

    # ---- encode ----------------------------------------------------------------------------------

    def encode(self, wav: np.ndarray, sample_rate: int | None = None) -> np.ndarray:
        """wav: [batch, samples] (or [batch, channels, samples]) float at the config's sample rate ->
        latents [batch, frames, latent_dim] (or [batch, channels, frames, latent_dim]), float32."""
        self._check_rate(sample_rate)
        wav = np.asarray(wav)
        if wav.ndim not in (2, 3):
            raise AudioError(f"encode input: expected [batch, samples] or [batch, channels, samples], got shape {wav.shape}")
        lead = wav.shape[:-1]
        flat = check_waveform(wav.reshape(int(np.prod(lead)), wav.shape[-1]), name="encode input")  # [batch*channels, samples]
        frames = self.frames_for(flat.shape[-1])
        padded = np.pad(flat, ((0, 0), (0, frames * self.hop_samples - flat.shape[-1])))
        chunks = []
        for start in range(0, frames, self.chunk_frames):
            stop = min(start + self.chunk_frames, frames)
            window = padded[:, start * self.hop_samples: stop * self.hop_samples]
            chunks.append(self._batched(functools.partial(_encode_raw, shape=self.shape, stft=self.stft), window))
        latents = np.concatenate(chunks, axis=1) / self.latent_scale
        return latents.reshape(lead + latents.shape[1:]).astype(np.float32)

    # ---- decode ----------------------------------------------------------------------------------

    def decode(self, latents: np.ndarray, key: jax.Array, steps: int | None = None,
               num_samples: int | None = None) -> np.ndarray:
        """latents [batch, frames, latent_dim] (or [batch, channels, frames, latent_dim]) -> waveform
        [batch, samples] (or [batch, channels, samples]) in [-1, 1]; samples = num_samples or frames * 4096.

        steps: consistency steps (default inference.decode_steps = 1). Two decodings with different
        keys differ slightly: each starts from fresh noise.
        """
        latents = np.asarray(latents)
        if latents.ndim not in (3, 4) or latents.shape[-1] != self.latent_dim:
            raise ValueError(f"decode input: expected [batch, frames, {self.latent_dim}] latents "
                             f"(or [batch, channels, frames, {self.latent_dim}]), got shape {latents.shape}")
        if not np.all(np.isfinite(latents)):
            raise ValueError("decode input: latents contain NaN or inf")
        steps = int(self.config.inference.decode_steps if steps is None else steps)
        if steps < 1:
            raise ValueError(f"decode: steps must be >= 1, got {steps}")
        lead, frames = latents.shape[:-2], latents.shape[-2]
        if num_samples is not None and not 0 < num_samples <= frames * self.hop_samples:
            raise ValueError(f"decode: num_samples={num_samples} outside 1..{frames * self.hop_samples} for {frames} frames")
        flat = latents.reshape((-1, frames, self.latent_dim)).astype(np.float32) * self.latent_scale
        chunks = []
        for i, start in enumerate(range(0, frames, self.chunk_frames)):
            window = flat[:, start: start + self.chunk_frames]
            decode_fn = functools.partial(_decode_raw, shape=self.shape, stft=self.stft,
                                          consistency=self.consistency, steps=steps, band_renorm=self.band_renorm)
            chunks.append(self._batched(decode_fn, window, jax.random.fold_in(key, i)))
        wav = np.concatenate(chunks, axis=1)[:, : num_samples or frames * self.hop_samples]
        return wav.reshape(lead + wav.shape[1:]).astype(np.float32)

    # ---- helpers ---------------------------------------------------------------------------------

    def _batched(self, fn, x: np.ndarray, *args) -> np.ndarray:
        """Runs fn(params, x[rows], *args) on at most batch_chunks rows at a time."""
        outs = []
        for i, start in enumerate(range(0, x.shape[0], self.batch_chunks)):
            rows = jnp.asarray(x[start: start + self.batch_chunks])
            extra = tuple(jax.random.fold_in(a, i) for a in args)
            outs.append(np.asarray(fn(self.params, rows, *extra)))
        return np.concatenate(outs, axis=0)

    def _check_rate(self, sample_rate: int | None) -> None:
        if sample_rate is not None and int(sample_rate) != self.sample_rate:
            raise AudioError(f"encode input: sample rate {sample_rate} Hz, this autoencoder expects {self.sample_rate} Hz "
                             f"(resample first: diffariff_jax.audio.io.resample or read_audio(..., sample_rate={self.sample_rate}))")


# Module-level jitted functions keyed on the (hashable) hyperparameters, so every Autoencoder with the
# same architecture shares one compilation per input shape.
@functools.partial(jax.jit, static_argnames=("shape", "stft"))
def _encode_raw(params: Any, wav: jax.Array, *, shape: CAEShape, stft: Stft) -> jax.Array:
    """wav [b, frames * 4096] -> raw (tanh) latents [b, frames, latent_dim]."""
    spec = stft.wave_to_spec(wav, shape.time_reduction)
    return CAE(shape).apply(params, spec, method=CAE.encode)


@functools.partial(jax.jit, static_argnames=("shape", "stft", "consistency", "steps", "band_renorm"))
def _decode_raw(params: Any, raw_latents: jax.Array, key: jax.Array, *, shape: CAEShape, stft: Stft,
                consistency: Consistency, steps: int, band_renorm: float | None = None) -> jax.Array:
    """raw latents [b, frames, latent_dim] -> waveform [b, frames * 4096] in [-1, 1]; band_renorm: the
    decoded bands matched to the readout's (models/cae.py), raised by at most that many dB; None: not."""
    model = CAE(shape)
    pyramid = model.apply(params, raw_latents, method=CAE.pyramid)
    f = consistency.precondition(lambda x_in, sigma: model.apply(params, x_in, sigma, pyramid, method=CAE.network))
    frames = raw_latents.shape[1] * shape.time_reduction
    spec = consistency.sample(f, key, (raw_latents.shape[0], shape.freq_bins, frames, shape.data_channels), steps)
    if band_renorm is not None:
        spec = match_band_energies(shape, spec, model.apply(params, raw_latents, method=CAE.readout), band_renorm)
    wav = stft.spec_to_wave(spec, frames * stft.hop)
    return jnp.clip(wav, -1.0, 1.0)
