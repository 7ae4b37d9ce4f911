"""Latent diffusion model (Diff-A-Riff LDM) configs: EDM + DDPM++ 1-D UNet over CAE latents.

Variants:
  tiny   CPU, trains in seconds; used by tests and `make demo`.
  demo   `make demo`'s LDM: a wider tiny UNet on 32-frame (2.7 s) crops that learns on a CPU (docs/demo.md).
  base   a mid-size UNet (128 base channels) for single-GPU experiments.
  paper  SPEC.md section 2: 512 base channels, multipliers (1,2,2,4), 2 residual blocks per scale,
         attention at the two lowest resolutions, 64+64 input channels, 512-d CLAP (0.551 B params).

Launch:
  python -m diffariff_jax.train --config configs/ldm.py:tiny --workdir runs/ldm
  python -m diffariff_jax.train --config configs/ldm.py:paper --workdir runs/ldm_paper \
      --config.train.batch_size=256 --config.mesh.fsdp=8

Chosen topology for `paper` (compiled ahead with `python -m diffariff_jax.aot`; numbers per chip, XLA's
estimates, not runs; docs/training.md has the table and its caveats):
  v5p:2x2x2 (8 chips), batch 256, --config.mesh.data=1 --config.mesh.fsdp=8 --config.mesh.gather_params=True:
      2.96 GiB of 95 (97 % free), estimated 18.9 ms/step, 29.4 % MFU;
  the same with data=8 fsdp=1 (the default mesh): 9.98 GiB, estimated 27.2 ms/step, 20.4 % MFU.
  For throughput, v5p-64 at batch 1024, --config.mesh.data=1 --config.mesh.fsdp=32 --config.mesh.gather_params=True:
      2.17 GiB, estimated 17.4 ms/step, 31.9 % MFU.
  batch 256 on the common slices (train step; docs/training.md has every mesh tried):
    v5p-64  --config.mesh.data=4 --config.mesh.fsdp=8: 1.92 GiB of 95, estimated 12.1 ms/step, 11.5 % MFU
            (+ --config.mesh.gather_params=True: 2.56 GiB, estimated 11.6 ms, 11.9 %: unmeasured on a slice)
    v4-32   --config.mesh.data=2 --config.mesh.fsdp=8: 2.00 GiB of 32 (no cost-model estimate on v4)
    v5e-64  --config.mesh.data=8 --config.mesh.fsdp=8: 2.30 GiB of 16 (libtpu's estimate is negative there)
    v6e-64  --config.mesh.data=8 --config.mesh.fsdp=8: 2.07 GiB of 32 (likewise)
  Run `python -m diffariff_jax.aot --topology <accelerator type>` before launching elsewhere
  (launch/tpu_train.sh does it for you).
"""
from __future__ import annotations

import ml_collections

from configs.common import mesh_config, parse_variant, train_config

VARIANTS = ("tiny", "base", "paper", "demo")


def _model(variant: str) -> ml_collections.ConfigDict:
    """DDPM++ 1-D UNet shape. `attn_levels` are scale indices (0 = full frame rate)."""
    shared = {
        "latent_dim": 64,  # CAE latent channels (noisy target and context each)
        "emb_mult": 4,  # conditioning embedding width = emb_mult * channels
        "noise_channels_mult": 1,  # positional noise embedding width = this * channels
        "max_positions": 10000,  # positional-embedding frequency base
        "skip_scale": 0.5 ** 0.5,  # DDPM++ residual / skip scaling
        "norm_eps": 1e-6,
        "max_norm_groups": 32,
    }
    per_variant = {
        "tiny": {"channels": 32, "channel_mult": (1, 2), "num_res_blocks": 1, "attn_levels": (1,),
                 "attn_head_channels": 16, "clap_dim": 32, "dropout": 0.0},
        "base": {"channels": 128, "channel_mult": (1, 2, 2, 4), "num_res_blocks": 2, "attn_levels": (2, 3),
                 "attn_head_channels": 64, "clap_dim": 512, "dropout": 0.1},
        "paper": {"channels": 512, "channel_mult": (1, 2, 2, 4), "num_res_blocks": 2, "attn_levels": (2, 3),
                  "attn_head_channels": 64, "clap_dim": 512, "dropout": 0.1},
    }[variant]
    return ml_collections.ConfigDict({**shared, **per_variant})


def _diffusion() -> ml_collections.ConfigDict:
    """EDM (Karras et al. 2022) defaults, SPEC.md section 2."""
    return ml_collections.ConfigDict({
        "sigma_data": 0.5,
        "p_mean": -1.2,
        "p_std": 1.2,
        "context_dropout": 0.5,  # P(context replaced by zeros) in training
        "clap_dropout": 0.5,  # P(CLAP replaced by the learned null embedding) in training
    })


def _sampler() -> ml_collections.ConfigDict:
    """EDM sampler and the inference-mode defaults of SPEC.md section 4."""
    return ml_collections.ConfigDict({
        "steps": 30,
        "solver": "heun",  # "heun" | "euler"
        "sigma_min": 0.002,
        "sigma_max": 80.0,
        "rho": 7.0,
        "churn": 0.0,  # EDM S_churn; 0 = deterministic ODE sampler
        "churn_sigma_min": 0.0,  # S_tmin
        "churn_sigma_max": 1e9,  # S_tmax
        "churn_noise": 1.0,  # S_noise
        "cfg_context": 1.25,
        "cfg_clap": 1.25,
        "stereo_width": 0.4,
        "variation_strength": 0.5,
        "loop_repeats": 4,
        "loop_strength": 0.3,
        "outpaint_overlap_frames": 29,  # ~2.5 s of known tail carried into each new window
        # generate brings a user's context to the level of a training context and the stem back by the same
        # gain (long_form.training_gain): precompute normalises context + target to -20 dB RMS, which puts
        # the context alone at -22.2 dB (median; -27.3 to -18.4 from the 10th to the 90th percentile on the
        # demo set, +-4 dB jitter included); training capped the boost at 20 dB.
        "context_loudness_db": -22.0,
        "max_context_gain_db": 20.0,
    })


def _data(variant: str) -> ml_collections.ConfigDict:
    """Latent records written by `python -m diffariff_jax.precompute` (read by diffariff_jax.data)."""
    return ml_collections.ConfigDict({
        "records_dir": "",  # set on the command line: --config.data.records_dir=DIR
        "val_records_dir": "",  # latent records of held-out songs for the validation loss; "" = records_dir
        "crop_frames": 16 if variant == "tiny" else 117,  # 117 frames = 10 s at 48 kHz
        "reader_workers": 1 if variant == "tiny" else 4,  # threads building batches ahead, per host
        "max_open_shards": 256,  # shard files a host keeps open at most (the usual limit is 1024 per process)
    })


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the LDM config for variant `arg` (tiny | base | paper; default tiny)."""
    variant = parse_variant(arg, VARIANTS, default="tiny")
    if variant == "demo":
        return _demo_config()
    config = ml_collections.ConfigDict()
    config.kind = "ldm"
    config.variant = variant
    config.model = _model(variant)
    config.diffusion = _diffusion()
    config.sampler = _sampler()
    config.data = _data(variant)
    config.mesh = mesh_config()
    if variant == "tiny":
        config.train = train_config(batch_size=16, num_steps=2000, lr=1e-3, warmup_steps=20,
                                    ema_decay=0.99, log_every=20, eval_every=500, ckpt_every=500)
    elif variant == "base":
        config.train = train_config(batch_size=64, num_steps=200_000, lr=2e-4, warmup_steps=2000,
                                    weight_decay=0.01, ema_decay=0.9999, compute_dtype="bfloat16")
    else:
        config.train = train_config(batch_size=256, num_steps=1_000_000, lr=1e-4, warmup_steps=5000,
                                    weight_decay=0.01, ema_decay=0.9999, compute_dtype="bfloat16",
                                    ckpt_every=5000, eval_every=20_000)
    # Activation rematerialisation in the UNet's backward pass (models/unet1d.py): "none" | "block" | "full".
    # It trades compute for memory; `python -m diffariff_jax.aot` shows which a topology needs.
    config.train.remat = "none"
    return config


def _demo_config() -> ml_collections.ConfigDict:
    """`make demo`'s LDM (docs/demo.md): tiny's recipe with three scales of 64 channels (attention at the
    lowest) and 32-frame crops (2.7 s), so the context spans whole notes; 512-d CLAP from the records."""
    config = get_config("tiny")
    config.variant = "demo"
    config.model.update({"channels": 64, "channel_mult": (1, 2, 2), "attn_levels": (2,), "attn_head_channels": 32,
                         "clap_dim": 512})
    config.data.crop_frames = 32
    # Noise levels centred on the latents' own std (median sigma 1, where SPEC's EDM default is 0.3): in
    # 3000 CPU steps the default law trains the levels where the context and CLAP decide the content
    # (sigma >= 3) on 3% of examples, and the demo LDM came out ignoring both (denoising error at sigma 10
    # the same with and without them); centred, CLAP cuts that error 24% and the context 4% (docs/demo.md).
    config.diffusion.p_mean = 0.0
    config.train.update({"num_steps": 5000, "lr": 1e-3, "warmup_steps": 100, "ema_decay": 0.995,
                         "eval_every": 500, "ckpt_every": 500})
    return config
