"""The report dict (report.json): rows, intervals, settings, checkpoint, data split, timings, versions."""
from __future__ import annotations

from typing import Any

import ml_collections

from diffariff_jax import metrics
from diffariff_jax.evaluation import outputs, scoring
from diffariff_jax.release_bundle import cae_fingerprint, clap_fingerprint


def build(acc: Any, prep: Any, cfg: ml_collections.ConfigDict, *, checkpoint: str, ident: dict,
          condition_rows: dict[str, dict], denoising: dict, seconds: dict[str, float],
          history: list[dict] | None = None) -> dict:
    """Everything one evaluation produced, JSON-serialisable. Rows: conditions first, then baselines."""
    rows = {**condition_rows, **{n: r for n, r in prep.rows.items() if r["kind"] == "baseline"}}
    return {
        "identity": ident,
        "checkpoint": {"path": checkpoint, "step": int(acc.step), "fingerprint": acc.fingerprint,
                       "cae_weights": cae_fingerprint(acc.cae), "clap": acc.clap.name,
                       "clap_weights": clap_fingerprint(acc.clap)},
        "num_examples": len(prep.examples),
        "data": prep.data_info,
        "conditions": list(cfg.conditions),
        "baselines": list(cfg.baselines),
        "rows": rows,
        "codec": prep.codec,
        "denoising": denoising,
        "intervals": scoring.interval_settings(cfg.metrics, cfg.bootstrap, len(prep.examples)),
        "instrument_vocabulary": prep.vocab,
        "embedder": metrics.embedder_info(acc.clap, float(cfg.metrics.embed_hop_seconds)),
        "settings": {"sampler": cfg.sampler.to_dict(), "text_template": cfg.text_template,
                     "generation_seed": int(cfg.generation_seed), "seed": int(cfg.seed),
                     "examples": cfg.examples.to_dict(), "metrics": cfg.metrics.to_dict()},
        "metric_notes": {
            "real_other_spans": "real stems of other spans of the test songs against the examples' real stems",
            "random_stem": "the real stems re-paired with other songs' contexts: same stems as the real set, so "
                           "fad/mmd2/density/coverage equal real-vs-itself; only APA and CLAP score are informative",
            "clap_score": "cosine between a stem's CLAP audio embedding and its instrument's text embedding",
            "instrument_acc": "the instrument whose text embedding is nearest the stem's audio embedding is its own",
            "codec": "log-mel distance (dB) of reconstructions of the real stems and mixes: the CAE's, the "
                     "equal-rate mel + Griffin-Lim codec's, silence's (metrics/logmel.py)",
            "denoising": "the LDM's weighted denoising loss on the examples' latents under each conditioning "
                         "pattern, shared noise; context_gain = clap_only - context_clap (> 0: the context helps)",
        },
        "history": [{"step": h["step"], "fingerprint": h["fingerprint"], "rows": h["rows"],
                     "denoising": h["denoising"]} for h in history or []],
        "seconds": seconds,
        "clips_embedded": dict(prep.clips_embedded),
        "cache": prep.cache,
        "versions": outputs.versions(),
    }
