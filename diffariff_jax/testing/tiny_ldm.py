"""A complete tiny LDM set-up on disk for generate / eval / demo tests: CAE release, CLAP, records info,
an LDM training workdir and an LDM release dir (random weights; builds in a few seconds on CPU).

    from diffariff_jax.testing.tiny_ldm import build_tiny_ldm
    paths = build_tiny_ldm(tmp_path)     # paths.cae, paths.clap, paths.records, paths.workdir, paths.release

The workdir holds one orbax checkpoint (step `STEP`) written by the real checkpoint manager, and its
config names the records dir, whose latents.json records the CAE and CLAP paths and fingerprints exactly
as precompute does; so `Accompanist.load(paths.workdir)` finds everything without flags.
"""
from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import jax
import numpy as np

STEP = 7


class TinyLdm(NamedTuple):
    cae: Path
    clap: Path
    records: Path
    workdir: Path
    release: Path


def build_tiny_ldm(root: str | Path, crop_frames: int = 16, seed: int = 0) -> TinyLdm:
    """Writes the set-up under root and returns its paths. The LDM is configs/ldm.py `tiny` (32-d CLAP)."""
    from configs.ldm import get_config
    from diffariff_jax.autoencoder import Autoencoder
    from diffariff_jax.clap import ClapEmbedder
    from diffariff_jax.data import latents
    from diffariff_jax.release_bundle import cae_fingerprint, clap_fingerprint
    from diffariff_jax.testing.random_cae import MICRO_CAE, random_cae
    from diffariff_jax.testing.tiny_clap import build_tiny_clap
    from diffariff_jax.training import checkpoint as ckpt
    from diffariff_jax.training.ldm_task import LdmTask
    from diffariff_jax.training.state import create_train_state

    root = Path(root)
    cae_config, cae_params = random_cae("tiny", MICRO_CAE, seed=seed)
    cae_dir = root / "cae"
    ckpt.save_release(cae_dir, cae_config, cae_params)
    clap_dir = build_tiny_clap(root / "clap", seed=seed)

    records = root / "latents"
    records.mkdir(parents=True)
    clap = ClapEmbedder.from_pretrained(str(clap_dir))
    latents.write_info(records, {
        "frames": 144, "latent_dim": 64, "clap_dim": clap.dim, "sample_rate": 48000, "hop_samples": 4096,
        "cae": str(cae_dir), "clap": str(clap_dir),
        "cae_weights": cae_fingerprint(Autoencoder(cae_config, cae_params)),
        "clap_weights": clap_fingerprint(clap)})

    config = get_config("tiny")
    config.data.records_dir = str(records)
    config.data.crop_frames = crop_frames
    config.model.clap_dim = clap.dim
    config.train.async_checkpoints = False
    task = LdmTask(config)
    state = create_train_state(task, jax.random.PRNGKey(seed))
    # Random EMA weights that differ from the init, so "the EMA params were loaded" is observable.
    leaves, tree = jax.tree.flatten(state.ema_params)
    rng = np.random.default_rng(seed + 1)
    ema = jax.tree.unflatten(tree, [x + 0.01 * rng.standard_normal(x.shape).astype(np.float32) for x in leaves])
    state = state.replace(ema_params=ema, step=jax.numpy.int32(STEP))

    workdir = root / "ldm"
    ckpt.write_config(workdir, config)
    manager = ckpt.make_manager(workdir, config.train)
    ckpt.save(manager, STEP, state, config, {"seed": 0, "step": STEP}, force=True)
    manager.wait_until_finished()
    manager.close()
    release = root / "ldm_release"
    ckpt.save_release(release, config, ema)
    return TinyLdm(cae_dir, clap_dir, records, workdir, release)
