"""How well the CAE reconstructs the test examples, measured in the same run as its yardsticks.

    log-mel distance (metrics/logmel.py: mean |dB difference| over 128 mel bins within 80 dB of the
    reference's peak; lower is better) to every example's real stem and real mix (context + stem) of:
      cae_roundtrip       the CAE's encode -> decode (the inference settings of its config)
      mel_codec_baseline  the equal-rate DSP codec: 64 mel bands per 4096 samples, 32 Griffin-Lim iterations
      silence             an all-zero signal: the distance's ceiling
A learned codec worth its latents scores at or below the DSP baseline. Examples whose reference is
silent have no distance (nan) and are counted apart.
"""
from __future__ import annotations

from typing import Any

import jax
import numpy as np

from diffariff_jax.evaluation.examples import Examples
from diffariff_jax.metrics.logmel import log_mel_distance, mel_codec_baseline

SYSTEMS = {"cae_roundtrip": "CAE round trip", "mel_codec_baseline": "mel + Griffin-Lim (equal rate)",
           "silence": "silence"}
MATERIALS = ("stems", "mixes")


def references(examples: Examples) -> dict[str, np.ndarray]:
    """{"stems": real targets, "mixes": context + target}, each [n, samples]."""
    return {"stems": examples.target, "mixes": examples.context + examples.target}


def roundtrip(cae: Any, audio: np.ndarray, seed: int) -> np.ndarray:
    """audio [n, samples] -> the CAE's reconstruction [n, samples]."""
    latents = cae.encode(audio)
    return np.asarray(cae.decode(latents, jax.random.PRNGKey(seed), num_samples=audio.shape[1]), np.float32)


def mel_codec_stems(audio: np.ndarray, sample_rate: int, seed: int) -> np.ndarray:
    """audio [n, samples] -> its equal-rate mel + Griffin-Lim reconstructions [n, samples] (silent rows kept)."""
    return np.stack([mel_codec_baseline(a, sample_rate, seed=seed) if np.any(a) else a for a in audio])


def _distance(ref: np.ndarray, est: np.ndarray, sample_rate: int) -> float:
    if not np.any(ref):
        return float("nan")
    return log_mel_distance(ref, est, sample_rate)


def yardsticks(refs: dict[str, np.ndarray], sample_rate: int, seed: int,
               mel_stems: np.ndarray | None = None) -> dict[str, dict[str, np.ndarray]]:
    """{system: {material: [n, samples]}} of the systems that depend on the data only (the DSP codec and
    silence); `mel_stems`, the DSP codec's stems when the caller has them already (the mel_codec row's)."""
    if mel_stems is None:
        mel_stems = mel_codec_stems(refs["stems"], sample_rate, seed)
    return {"mel_codec_baseline": {"stems": mel_stems, "mixes": mel_codec_stems(refs["mixes"], sample_rate, seed)},
            "silence": {m: np.zeros_like(refs[m]) for m in MATERIALS}}


def distances(refs: dict[str, np.ndarray], estimates: dict[str, dict[str, np.ndarray]],
              sample_rate: int) -> dict[str, np.ndarray]:
    """{"<system>/<material>": [n] log-mel distances in dB} of estimates {system: {material: [n, samples]}}."""
    return {f"{system}/{material}": np.array([_distance(r, e, sample_rate) for r, e in zip(refs[material], est)])
            for system, by_material in estimates.items() for material, est in by_material.items()}


def summary(dist: dict[str, np.ndarray]) -> dict[str, dict]:
    """Per system and material: median, quartiles, mean and count of the scored examples."""
    table = {}
    for system, label in SYSTEMS.items():
        row = {"label": label}
        for material in MATERIALS:
            d = np.asarray(dist[f"{system}/{material}"], np.float64)
            ok = d[np.isfinite(d)]
            row[material] = None if ok.size == 0 else {
                "median": float(np.median(ok)), "q25": float(np.percentile(ok, 25)),
                "q75": float(np.percentile(ok, 75)), "mean": float(np.mean(ok)), "count": int(ok.size),
                "silent_references": int(d.size - ok.size)}
        table[system] = row
    return table
