"""Periodic LDM samples during training: a few validation contexts -> sampler -> CAE decoder -> WAV files.

Every `train.sample_every` steps the loop calls the function made here with the EMA params; it writes
`workdir/samples/step_<N>/{sample,context,target}_<i>.wav` (process 0) so a run can be listened to as it
trains. The sampler settings are config.sampler's (steps, solver, CFG scales); the CAE that decodes the
latents is `train.sample_cae` (a CAE training workdir or release dir).
"""
from __future__ import annotations

import tempfile
from typing import Any, Callable

import jax
import ml_collections
import numpy as np
from etils import epath
from jax.experimental import multihost_utils

SAMPLES_DIR = "samples"


def make_ldm_sample_fn(config: ml_collections.ConfigDict, task: Any) -> Callable[[Any, int, str], None]:
    """(ema_params, step, workdir) -> None; every process calls it (the sampler is one sharded program)."""
    from diffariff_jax.audio.io import write_audio
    from diffariff_jax.autoencoder import Autoencoder
    from diffariff_jax.diffusion.samplers import sample
    from diffariff_jax.training.tasks import DataSetupError, make_batches

    if not config.train.sample_cae:
        raise DataSetupError("train.sample_every > 0 needs --config.train.sample_cae=CAE_WORKDIR_OR_RELEASE "
                             "to decode samples (or set --config.train.sample_every=0)")
    cae = Autoencoder.load(config.train.sample_cae)
    count = int(config.train.sample_count)
    batch = next(make_batches(config, "val", 0, process_index=0, process_count=1))
    if batch["context"].shape[0] < count:
        raise DataSetupError(f"train.sample_count={count} > the {batch['context'].shape[0]} rows of a batch")
    context, clap, target = batch["context"][:count], batch["clap"][:count], batch["target"][:count]
    denoiser = task.denoiser
    key = jax.random.PRNGKey(int(config.train.seed) + 2)
    references: dict[str, np.ndarray] = {}

    def sample_fn(ema_params: Any, step: int, workdir: str) -> None:
        latents = sample(denoiser, ema_params, key, num_frames=context.shape[1], sampler_cfg=config.sampler,
                         context=context, clap=clap)
        latents = np.asarray(multihost_utils.process_allgather(latents, tiled=True))
        wavs = {"sample": cae.decode(latents, key)}
        if not references:  # the decoded context and target never change: decode them once
            references.update(context=cae.decode(context, key), target=cae.decode(target, key))
        wavs.update(references)
        if jax.process_index() != 0:
            return
        out = epath.Path(workdir) / SAMPLES_DIR / f"step_{step:08d}"
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as local:  # soundfile writes local files; workdirs may be gs://
            for name, batch_wavs in wavs.items():
                for index, wav in enumerate(batch_wavs):
                    path = epath.Path(local) / f"{name}_{index}.wav"
                    write_audio(str(path), wav, cae.sample_rate)
                    path.copy(out / path.name, overwrite=True)

    return sample_fn
