"""Consistency autoencoder (CAE) configs: compressed complex STFT -> encoder -> 64-d latents ->
consistency 2-D UNet decoder (SPEC.md section 1).

Variants:
  tiny   CPU, trains in minutes; used by tests and `make demo` (base 4 channels, one block per level).
  base   half-width Music2Latent (base 32 channels) for single-GPU experiments.
  demo   `make demo`'s codec: tiny's shape + the band-energy shortcut + a log-mel reconstruction term
         (docs/demo.md); learns on a CPU; latent_scale 0.54, its own latents' std (precompute warns when a CAE's scale does not fit).
  m2l    the Music2Latent sizes (base 64, multipliers (1,2,4,4,4), 512-wide bottleneck); checkpoints
         converted with `python -m diffariff_jax.export --from music2latent` load into this shape.

Launch:
  python -m diffariff_jax.train --config configs/cae.py:tiny --workdir runs/cae
  python -m diffariff_jax.train --config configs/cae.py:m2l --workdir runs/cae_m2l --config.train.batch_size=16

Compiled ahead for `m2l` (`python -m diffariff_jax.aot --config configs/cae.py:m2l --topology v5p:2x2x2`; XLA's
estimates per chip, not runs; docs/training.md): batch 16 on v5p:2x2x2, data=8 fsdp=1: 5.26 GiB of 95,
estimated 62 ms/step, 6.8 % MFU (memory-bound: GroupNorm, elementwise work and copies). On v5p-64 at batch 32
(one crop per chip; 16 does not split over 32 chips), data=32 fsdp=1: 3.18 GiB of 95, estimated 30.8 ms/step,
6.9 % MFU. Other slices: run the aot command for them.
"""
from __future__ import annotations

import ml_collections

from configs.common import mesh_config, parse_variant, train_config

VARIANTS = ("tiny", "base", "m2l", "demo")


def _model(variant: str) -> ml_collections.ConfigDict:
    """Architecture (diffariff_jax.models.cae.CAEShape). Levels: attention 1/0 per level; freq_downsample
    per transition: 1 = 4x in frequency only, 0 = 2x in frequency and time."""
    shared = {
        "freq_bins": 1024,  # = stft.window // 2
        "data_channels": 2,  # real and imaginary parts
        "multipliers": (1, 2, 4, 4, 4),
        "freq_downsample": (1, 0, 0, 0),  # 1024 x T -> 32 x T/8
        "latent_dim": 64,
        "max_positions": 10000.0,
        "freq_scaling": True,
        "norm_eps": 1e-5,
        "max_norm_groups": 32,
        "zero_init": True,
    }
    per_variant = {
        "tiny": {"base_channels": 4, "multipliers": (1, 2, 4, 8, 8), "attention": (0, 0, 0, 0, 1),
                 "encoder_blocks": 1, "decoder_blocks": 1, "bottleneck_channels": 32, "bottleneck_blocks": 1,
                 "heads": 2, "cond_channels": 16},
        "base": {"base_channels": 32, "attention": (0, 0, 1, 1, 1), "encoder_blocks": 1, "decoder_blocks": 2,
                 "bottleneck_channels": 256, "bottleneck_blocks": 2, "heads": 4, "cond_channels": 128},
        "m2l": {"base_channels": 64, "attention": (0, 0, 1, 1, 1), "encoder_blocks": 1, "decoder_blocks": 2,
                "bottleneck_channels": 512, "bottleneck_blocks": 4, "heads": 4, "cond_channels": 256},
    }[variant]
    return ml_collections.ConfigDict({**shared, **per_variant})


def _stft() -> ml_collections.ConfigDict:
    """diffariff_jax.audio.stft.Stft: hop 512, window 2048, 0.34 |X|^0.65 compression."""
    return ml_collections.ConfigDict({"hop": 512, "window": 2048, "alpha": 0.65, "beta": 0.34,
                                      "nyquist_iters": 16})


def _consistency() -> ml_collections.ConfigDict:
    """diffariff_jax.diffusion.consistency.Consistency (iCT as Music2Latent uses it). The grid gap
    decays over config.train.num_steps."""
    return ml_collections.ConfigDict({
        "sigma_data": 0.5, "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0,
        "p_mean": -1.1, "p_std": 2.0, "gap_start": 0.1, "gap_end": 0.001, "huber_c": 0.00054,
    })


def _inference() -> ml_collections.ConfigDict:
    """diffariff_jax.autoencoder.Autoencoder: latents are raw / latent_scale; long clips are cut into
    windows of chunk_frames latent frames, batch_chunks of them per network call."""
    return ml_collections.ConfigDict({
        "latent_scale": 0.06, "decode_steps": 1, "chunk_frames": 256, "batch_chunks": 4,
        # Match the decoded bands to the band readout's (models/cae.py), raising none by more than
        # band_renorm_max_gain_db; needs model.band_shortcut.
        "band_renorm": False, "band_renorm_max_gain_db": 12.0,
    })


def _data(variant: str) -> ml_collections.ConfigDict:
    """Training crops of mono stems and mixes (diffariff_jax.data.pipeline.cae_dataset reads these keys).
    A crop is crop_frames latent frames of 4096 samples (m2l: 8 frames = 64 STFT frames, as Music2Latent)."""
    crop_frames = 2 if variant == "tiny" else 8
    sample_rate = 48000
    return ml_collections.ConfigDict({
        "root": "",  # dataset folder: --config.data.root=DIR
        "layout": "demo",  # generic | musdb18hq | slakh2100 | moisesdb | medleydb | demo
        "split": "train",
        "split_fractions": (0.9, 0.05, 0.05),
        "sample_rate": sample_rate,
        "crop_frames": crop_frames,
        "crop_seconds": crop_frames * 4096 / sample_rate,
        "examples_per_song": 64,
        "validate": "header",
        "silence_db": -50.0,
        "max_crop_tries": 8,
        "context_keep_prob": 0.5,
        "stem_gain_db": (-6.0, 6.0),  # level of each stem in a mix (data/pipeline.py)
        "loudness_db": -20.0,
        "loudness_jitter_db": 4.0,
        "peak_limit": 0.99,
        "cae_mix_prob": 0.5,  # a crop is the full mix with this probability, else one stem
        "num_parallel_calls": -1,
        "prefetch": 2,
    })


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the CAE config for variant `arg` (tiny | base | m2l; default tiny)."""
    variant = parse_variant(arg, VARIANTS, default="tiny")
    if variant == "demo":
        return _demo_config()
    config = ml_collections.ConfigDict()
    config.kind = "cae"
    config.variant = variant
    config.model = _model(variant)
    config.stft = _stft()
    config.consistency = _consistency()
    config.inference = _inference()
    config.data = _data(variant)
    config.mesh = mesh_config()
    if variant == "tiny":
        # A CPU smoke-test recipe: Adam (RAdam's rectification keeps the step tiny for the first few
        # hundred updates), a two-level grid and noise levels drawn high, so that a few hundred updates
        # already train the one-step decode from sigma_max. base and m2l follow SPEC.md.
        config.consistency.update({"gap_start": 0.5, "gap_end": 0.5, "p_mean": 1.0})
        config.train = train_config(batch_size=2, num_steps=200, optimizer="adamw", lr=3e-3, warmup_steps=10,
                                    lr_schedule="constant", grad_clip=1.0, ema_decay=0.9, log_every=20,
                                    eval_every=100, ckpt_every=100)
    elif variant == "base":
        config.train = train_config(batch_size=16, num_steps=400_000, optimizer="radam", lr=1e-4, warmup_steps=0,
                                    ema_decay=0.9999, compute_dtype="bfloat16")
    else:  # Music2Latent's recipe: RAdam 1e-4 cosine to 1e-6, batch 16, 800k iterations, EMA 0.9999
        config.train = train_config(batch_size=16, num_steps=800_000, optimizer="radam", lr=1e-4, warmup_steps=0,
                                    final_lr_ratio=0.01, ema_decay=0.9999, compute_dtype="bfloat16",
                                    ckpt_every=5000, eval_every=20_000)
    return config


def _demo_config() -> ml_collections.ConfigDict:
    """`make demo`'s CAE (docs/demo.md): tiny's network and two-level grid with the band-energy shortcut
    (models/cae.py), plus a log-mel L1 term on the student's prediction after the inverse-STFT/STFT projection
    (audio/mel_loss.py). Consistency training
    alone starts from the posterior mean of a complex spectrogram whose phase the latent cannot carry, which
    is near zero: silence. The mel term asks for the right band energies with phases that survive the
    projection, so the one-step decode is audible music within a hundred steps; the consistency term keeps
    the decoder a consistency model of the noise level."""
    config = get_config("tiny")
    config.variant = "demo"
    # Latents must have about unit std (SPEC section 1) for the LDM's noise levels to meet the data. This
    # recipe's tanh latents have std 0.54 after 1200 steps (Music2Latent's are ~0.06), so 0.06 would give the
    # LDM latents of std 9, a regime its sigma law almost never trains (the context went unused). The scale
    # only divides at inference: training is unchanged.
    config.inference.latent_scale = 0.54
    config.model.update(band_shortcut=64, sample_rate=config.data.sample_rate)
    # The one-step decode comes out 9 to 12 dB quiet with a dull envelope; matching its bands to what the
    # latent records fixes both (docs/demo.md, eval on the test songs, same weights: round trip 9.9 ->
    # 9.2 dB log-mel, instrument accuracy 41 -> 53 %).
    config.inference.band_renorm = True
    config.recon = ml_collections.ConfigDict({"mel_weight": 1.0, "n_mels": 64, "range_db": 80.0})
    config.train.update({"batch_size": 4, "num_steps": 1200, "lr_schedule": "cosine", "final_lr_ratio": 0.1,
                         "ema_decay": 0.99, "log_every": 50, "eval_every": 500, "ckpt_every": 500})
    return config
