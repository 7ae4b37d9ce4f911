"""Evaluation configs: the paper's table (SPEC section 5) for an LDM checkpoint, with baselines and intervals.

Variants:
  tiny   32 examples, 8 sampler steps, 50 bootstrap resamples: the CPU demo and the tests (a few minutes).
         Eight Heun steps instead of SPEC's 30 keep `make demo` short; the sampler settings are in the
         report, so a tiny number is never mistaken for a paper-setting one.
  paper  256 examples, SPEC section 4's sampler (30 Heun steps, CFG 1.25 / 1.25), 200 resamples.

Launch:
  python -m diffariff_jax.eval --checkpoint runs/ldm --data data/demo --out report/ --config configs/eval.py:tiny
  python -m diffariff_jax.eval --checkpoint runs/ldm --all-checkpoints --out report/ \
      --config configs/eval.py:paper --config.num_examples=512
Without --config the variant follows the checkpoint's (a tiny LDM gets `tiny`, any other `paper`).
"""
from __future__ import annotations

import ml_collections

from configs.common import parse_variant
from diffariff_jax.metrics.report import metrics_config

VARIANTS = ("tiny", "paper")
# The rows of the paper's table and the baselines beside them (diffariff_jax/evaluation/{conditions,baselines}.py).
CONDITIONS = ("context_audio", "context_text", "context_only", "audio_only", "unconditional")
BASELINES = ("real_other_spans", "random_stem", "cae_roundtrip", "mel_codec", "silence")


def _sampler(steps: int) -> ml_collections.ConfigDict:
    """SamplerSettings of diffariff_jax.accompanist (SPEC section 4 defaults but for the step count)."""
    return ml_collections.ConfigDict({"steps": steps, "solver": "heun", "churn": 0.0,
                                      "cfg_context": 1.25, "cfg_clap": 1.25})


def _examples() -> ml_collections.ConfigDict:
    """How test examples are cut from the test split (data/layouts.py's song-level split)."""
    return ml_collections.ConfigDict({
        "layout": "",                  # "" = the layout the training records were made from (else "demo")
        "split_fractions": (0.9, 0.05, 0.05),  # train/validation/test: must equal training's
        "segment_frames": 0,           # latent frames per example; 0 = the LDM's data.crop_frames
        "silence_db": -50.0,           # a stem below this RMS level in a span is not a target candidate
        "context_keep_prob": 0.5,      # each other stem joins the context with this probability (>= 1 joins)
        "stem_gain_db": (-6.0, 6.0),   # every stem's level, target included, as in training (data/pipeline.py)
        "loudness_db": -20.0,          # RMS level of context + target (no jitter: examples are fixed)
        "max_gain_db": 20.0,           # cap on the shared loudness gain, as in training
        "peak_limit": 0.99,
        "clap_seconds": 0.0,           # audio-CLAP sub-segment; 0 = the records' clap_seconds (else 5 s)
        "clap_tries": 4,               # offsets tried for the sub-segment; the loudest is kept (as precompute)
        "allow_fewer": True,           # fewer test spans than 2 N: use them all and say so (False: fail)
    })


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Returns the eval config for variant `arg` (tiny | paper; default tiny)."""
    variant = parse_variant(arg, VARIANTS, default="tiny")
    tiny = variant == "tiny"
    config = ml_collections.ConfigDict()
    config.kind = "eval"
    config.variant = variant
    config.num_examples = 32 if tiny else 256
    config.seed = 0                    # examples, baselines' pairings and bootstrap draws
    config.generation_seed = 0         # sampler noise
    config.conditions = CONDITIONS
    config.baselines = BASELINES
    config.apa_pairings = 4            # mismatched pairings pooled into APA's R' (K x N mixes)
    config.text_template = "{instrument}"  # the text prompt of an example (its target's instrument name)
    config.generate_batch = 16 if tiny else 32  # examples per sampler call
    config.sampler = _sampler(8 if tiny else 30)
    config.examples = _examples()
    config.bootstrap = ml_collections.ConfigDict({"num_resamples": 50 if tiny else 200, "confidence": 0.95})
    config.metrics = metrics_config(mmd_subset_size=1000, mmd_num_subsets=100 if not tiny else 10,
                                    embed_batch_size=16)
    # noise draws per example of the denoising loss under each conditioning pattern (evaluation/denoising.py)
    config.denoising = ml_collections.ConfigDict({"draws": 8 if tiny else 4})
    config.num_audio_examples = 2 if tiny else 4   # examples whose WAVs and spectrograms go in the report
    return config
