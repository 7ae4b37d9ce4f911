"""Trivial and ideal systems scored on the same examples as the model, so every number has a scale.

    real_other_spans  real (context, target) pairs of other spans of the test songs: the ceiling a
                      metric can reach with real music (FAD and MMD^2 near their noise floor, APA near 1)
    random_stem       each example's context with the real target of another song: APA's floor (about 0)
    cae_roundtrip     the real target encoded and decoded by the CAE: the ceiling the codec allows
    mel_codec         the real target through the equal-rate DSP codec (64 mel bands per 4096 samples,
                      32 Griffin-Lim iterations; metrics/logmel.py): the ceiling the latent *rate* allows,
                      so the gap to cae_roundtrip is what the learned codec loses beyond it
    silence           an all-zero stem: what "nothing" scores (its mixes are the context alone)
A System is anything scored: the stems, the contexts they are mixed with for APA, the instruments its
text-CLAP score and instrument accuracy are measured against, and whether stem i belongs to example i.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from diffariff_jax.evaluation.codec import mel_codec_stems, roundtrip
from diffariff_jax.evaluation.examples import Examples
from diffariff_jax.metrics.apa import mismatch_permutation

LABELS = {"real_other_spans": "real, other spans", "random_stem": "random stem (other song)",
          "cae_roundtrip": "CAE round trip", "mel_codec": "mel + Griffin-Lim codec (equal rate)",
          "silence": "silence"}


@dataclass(frozen=True)
class System:
    name: str
    label: str
    kind: str                   # "condition" | "baseline"
    stems: np.ndarray           # [n, samples]
    contexts: np.ndarray        # [n, samples]: APA mixes are contexts + stems
    instruments: tuple[str, ...]  # the instrument stem i is scored against (CLAP score, accuracy)
    aligned: bool               # stem i was made for example i (per-example similarity to the real target)


def check_names(names: Sequence[str]) -> None:
    unknown = [n for n in names if n not in LABELS]
    if unknown:
        raise ValueError(f"--config.baselines: unknown baseline {unknown[0]!r}; choose from {', '.join(LABELS)}")


def random_stem_permutation(examples: Examples, seed: int) -> np.ndarray:
    """p with song_ids[p[i]] != song_ids[i]: example i gets the target of example p[i] (another song).

    Seeded apart from APA's own mismatched reference pairs, so this baseline is a fresh draw of the
    distribution R' describes rather than R' itself.
    """
    return mismatch_permutation(examples.song_ids, seed + 1)


def baseline(name: str, examples: Examples, reference: Examples, cae: Any, seed: int,
             sample_rate: int) -> System:
    """The System of baseline `name` on `examples` at sample_rate (`reference`: the other-spans set; cae:
    the Autoencoder)."""
    check_names([name])
    if name == "real_other_spans":
        return System(name, LABELS[name], "baseline", reference.target, reference.context, reference.instruments,
                      False)
    if name == "random_stem":
        perm = random_stem_permutation(examples, seed)
        return System(name, LABELS[name], "baseline", examples.target[perm], examples.context, examples.instruments,
                      True)
    if name == "cae_roundtrip":
        stems = roundtrip(cae, examples.target, seed)
        return System(name, LABELS[name], "baseline", stems, examples.context, examples.instruments, True)
    if name == "mel_codec":
        stems = mel_codec_stems(examples.target, sample_rate, seed)
        return System(name, LABELS[name], "baseline", stems, examples.context, examples.instruments, True)
    return System(name, LABELS[name], "baseline", np.zeros_like(examples.target), examples.context,
                  examples.instruments, True)
