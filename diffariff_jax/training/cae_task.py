"""The CAE training task: consistency training of the decoder with the encoder trained jointly.

Per batch {"audio": [batch, samples]} of mono crops: compressed complex STFT (padded to whole latent
frames, exactly as `Autoencoder.encode` does) -> encoder -> latents -> up-path maps -> consistency loss
of the UNet conditioned on them (diffusion/consistency.py). Gradients reach the encoder through the
student branch; the target branch is stop-gradient. With the band-energy shortcut, the band readout
(models/cae.py) learns the input's band energies from the latents (L1, both sides stop-gradient: its
gradient reaches only its own weights, though it counts in the global-norm clip). The grid gap decays
over config.train.num_steps.
"""
from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from diffariff_jax.audio.mel_loss import log_mel_l1, mel_filterbank
from diffariff_jax.autoencoder import cae_parts
from diffariff_jax.models.cae import CAE, analytic_flops, band_energies
from diffariff_jax.models.init_compile import jit_init

PyTree = Any


class CAETask:
    """Task interface of training/state.py for config.kind == "cae"."""

    # No compiled inference loop to compile ahead (training/aot_compile.py): the decoder runs inside
    # `Autoencoder`, a few network calls per window.
    sampling_program = None

    def __init__(self, config: ml_collections.ConfigDict):
        self.config = config
        self.shape, self.stft, self.consistency = cae_parts(config, "CAETask")
        self.model = CAE(self.shape, dtype=jnp.dtype(config.train.compute_dtype))
        self.crop_samples = int(config.data.crop_frames) * self.stft.hop * self.shape.time_reduction
        # Optional log-mel reconstruction term on the student's prediction (the `demo` recipe; see
        # audio/mel_loss.py and docs/demo.md for why it makes the one-step decoder converge fast).
        self.recon = config.get("recon")
        self.mel_filterbank = None
        if self.recon is not None and float(self.recon.mel_weight) > 0:
            self.mel_filterbank = jnp.asarray(mel_filterbank(int(config.data.sample_rate), self.stft.window,
                                                             int(self.recon.n_mels)))

    def spectrogram(self, audio: jax.Array) -> jax.Array:
        """audio: [batch, samples] -> [batch, freq, frames, 2], frames a multiple of time_reduction."""
        return self.stft.wave_to_spec(audio.astype(jnp.float32), self.shape.time_reduction)

    def init_params(self, key: jax.Array) -> PyTree:
        frames = 2 * self.shape.time_reduction
        spec = jnp.zeros((1, self.shape.freq_bins, frames, self.shape.data_channels), jnp.float32)
        # jit: un-jitted Flax init dispatches (and compiles) every op on its own, which is far slower
        return jit_init(self.model.init)(key, spec, jnp.ones((1,), jnp.float32))

    def loss(self, params: PyTree, batch: dict[str, jax.Array], key: jax.Array,
             step: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        spec = self.spectrogram(batch["audio"])  # [batch, freq, frames, 2]
        raw = self.model.apply(params, spec, method=CAE.encode)  # [batch, latent_frames, latent_dim]
        pyramid = self.model.apply(params, raw, method=CAE.pyramid)
        f = self.consistency.precondition(
            lambda x_in, sigma: self.model.apply(params, x_in, sigma, pyramid, method=CAE.network))
        total = int(self.config.train.num_steps)
        student, target, sigma_hi, sigma_lo = self.consistency.student_and_target(f, spec, key, step, total)
        loss, metrics = self.consistency.loss_terms(student, target, sigma_hi, sigma_lo, step, total)
        if self.mel_filterbank is not None:
            mel = jnp.mean(log_mel_l1(self.stft, student, spec, self.mel_filterbank, float(self.recon.range_db)))
            loss = loss + float(self.recon.mel_weight) * mel
            metrics["mel_l1"] = mel
        if self.shape.band_shortcut:  # the readout that decoding matches bands to; it trains on its own
            target = jax.lax.stop_gradient(band_energies(self.shape, spec))
            predicted = self.model.apply(params, jax.lax.stop_gradient(raw), method=CAE.readout)
            readout = jnp.mean(jnp.abs(predicted - target))
            loss = loss + readout
            metrics["band_readout_l1"] = readout
        metrics["latent_std"] = jnp.std(raw) / float(self.config.inference.latent_scale)
        return loss, metrics

    def eval_metrics(self, params: PyTree, batch: dict[str, jax.Array], key: jax.Array) -> dict[str, jax.Array]:
        """Nothing beyond the validation loss: the codec's quality is eval's log-mel distance."""
        del params, batch, key
        return {}

    def dummy_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        return {"audio": np.zeros((batch_size, self.crop_samples), np.float32)}

    def flops_per_example(self) -> float:
        """Analytic training FLOPs per crop: forward + backward (2x forward) of encoder, up-path and
        student UNet, plus the target UNet's forward pass."""
        frames = int(self.config.data.crop_frames) * self.shape.time_reduction
        fl = analytic_flops(self.shape, frames)
        return 3.0 * (fl["encode"] + fl["pyramid"] + fl["network"]) + fl["network"]
