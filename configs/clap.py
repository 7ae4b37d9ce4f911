"""Small CLAP trained on the demo stems (no public CLAP weights can be fetched offline).

    python -m diffariff_jax.clap train --data data/demo --out runs/clap            # variant "small"
    python -m diffariff_jax.clap train --data data/demo --out runs/clap --variant tiny --steps 50

Variants: `tiny` (tests, seconds on CPU, 32-d) and `small` (the demo CLAP, 512-d like the paper's
`laion/larger_clap_music`, so LDM configs need no change). Both keep the paper's 48 kHz / 10 s windows;
they save compute with a coarse mel front end. The HTSAT audio encoder needs
spec_size = num_mel_bins * freq_ratio and mel frames (window * sample_rate / hop + 1) <= spec_size * freq_ratio.
"""
from __future__ import annotations

import ml_collections

from configs.common import parse_variant

CAPTION_TEMPLATES = ("{a} {name}", "{name}", "solo {name}", "{a} {name} melody", "the sound of {a} {name}",
                     "{a} {name} playing", "{name} part", "{a} {name} recording")


VARIANTS = ("tiny", "small", "demo")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    variant = parse_variant(arg, VARIANTS, "small")
    if variant == "demo":
        return _demo_config()
    tiny = variant == "tiny"
    cfg = ml_collections.ConfigDict()
    cfg.kind = "clap"
    cfg.variant = variant
    cfg.features = ml_collections.ConfigDict({
        "sample_rate": 48000,
        "window_seconds": 10,
        "num_mel_bins": 16 if tiny else 32,
        "hop_length": 7680 if tiny else 3840,  # 63 / 126 mel frames per 10 s window
        "fft_window_size": 8192 if tiny else 4096,
        "frequency_max": 14000,
    })
    cfg.model = ml_collections.ConfigDict({
        "projection_dim": 32 if tiny else 512,
        "vocab_size": 400 if tiny else 1000,  # byte-level BPE trained on the captions; stops early if fewer merges
        "max_text_tokens": 24,
        "text_hidden_size": 32 if tiny else 128,
        "text_layers": 1 if tiny else 2,
        "text_heads": 2 if tiny else 4,
        "text_intermediate_size": 64 if tiny else 256,
        "spec_size": 32 if tiny else 64,  # = num_mel_bins * freq_ratio (2)
        "patch_size": 4,
        "audio_window_size": 4 if tiny else 8,
        "audio_patch_hidden_size": 16 if tiny else 48,
        "audio_depths": (1, 1) if tiny else (2, 2),
        "audio_heads": (2, 2) if tiny else (2, 4),
        "dropout": 0.1,
        "logit_scale_init": 1 / 0.07,
        "logit_scale_max": 100.0,
    })
    cfg.train = ml_collections.ConfigDict({
        "seed": 0,
        "steps": 120 if tiny else 1500,
        "batch_size": 16 if tiny else 48,
        "lr": 2e-3 if tiny else 5e-4,
        "weight_decay": 0.01,
        "warmup_steps": 5 if tiny else 100,
        "crops_per_stem": 2 if tiny else 4,  # 10 s windows cut from each stem (silent ones dropped)
        "silence_db": -50.0,
        "holdout_fraction": 0.15,  # songs held out for the retrieval report
        "log_every": 20 if tiny else 100,
        "torch_threads": 1 if tiny else 0,  # 0 = torch's default; 1 avoids thrashing a shared CPU
    })
    cfg.captions = ml_collections.ConfigDict({"templates": CAPTION_TEMPLATES})
    return cfg


def _demo_config() -> ml_collections.ConfigDict:
    """`make demo`'s CLAP: the `small` model (512-d, as the paper's) trained for fewer, smaller steps so
    it fits the demo's time budget (docs/demo.md)."""
    cfg = get_config("small")
    cfg.variant = "demo"
    cfg.train.update({"steps": 600, "batch_size": 32, "crops_per_stem": 2, "warmup_steps": 50, "log_every": 50})
    return cfg
