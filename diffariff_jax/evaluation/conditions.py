"""The conditions of the paper's table, and generating every example under one of them.

    context_audio   context + audio CLAP (of a sub-segment of the real target, as in training)
    context_text    context + text CLAP (the target's instrument name, through config.text_template)
    context_only    context, no CLAP (the learned null embedding)
    audio_only      audio CLAP, no context (zeros, as the context dropout of training)
    unconditional   neither
Generation goes through `Accompanist.generate_batch`: `batch` examples per compiled sampler call, the
last batch padded with repeats of its first row so every call has one shape (one compilation).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from diffariff_jax.evaluation.examples import Examples


@dataclass(frozen=True)
class Condition:
    name: str
    label: str
    context: bool  # the example's context mix is given
    clap: str      # "audio" | "text" | "" (no CLAP)


CONDITIONS = {c.name: c for c in (
    Condition("context_audio", "context + audio CLAP", True, "audio"),
    Condition("context_text", "context + text CLAP", True, "text"),
    Condition("context_only", "context only", True, ""),
    Condition("audio_only", "audio CLAP only", False, "audio"),
    Condition("unconditional", "unconditional", False, ""),
)}


def get_conditions(names: Sequence[str]) -> list[Condition]:
    """The named conditions in the given order; ValueError naming an unknown one."""
    unknown = [n for n in names if n not in CONDITIONS]
    if unknown:
        raise ValueError(f"--config.conditions: unknown condition {unknown[0]!r}; choose from {', '.join(CONDITIONS)}")
    return [CONDITIONS[n] for n in names]


def text_prompts(instruments: Sequence[str], template: str) -> list[str]:
    """The text prompt of each example: template.format(instrument=...)."""
    return [template.format(instrument=i) for i in instruments]


def clap_prompts(acc: Any, examples: Examples, template: str, needed: set[str]) -> dict[str, np.ndarray]:
    """{"audio": [n, clap_dim], "text": [n, clap_dim]} conditioning embeddings (only the `needed` ones)."""
    prompts = {}
    if "audio" in needed:
        prompts["audio"] = acc.embed_audio(examples.clap_audio)
    if "text" in needed:
        vocab = sorted(set(examples.instruments))
        emb = acc.embed_text(text_prompts(vocab, template))
        prompts["text"] = emb[[vocab.index(i) for i in examples.instruments]]
    return prompts


def generate(acc: Any, examples: Examples, condition: Condition, prompts: dict[str, np.ndarray], settings: Any,
             seed: int, batch: int, advance: Callable[[int], None] = lambda n: None) -> np.ndarray:
    """Stems generated for every example under `condition` -> [n, samples] at acc.sample_rate.

    Batch b uses the sampler seed (seed, b), so a condition's stems do not depend on the others.
    """
    n, samples = examples.target.shape
    frames = acc.frames_for(samples)
    out = []
    for b, start in enumerate(range(0, n, batch)):
        rows = np.arange(start, start + batch)
        rows = np.where(rows < n, rows, start)  # pad the last batch: one compiled shape for every call
        context = examples.context[rows] if condition.context else None
        clap = prompts[condition.clap][rows] if condition.clap else None
        stems = acc.generate_batch(context, clap, num_frames=frames, batch_size=len(rows),
                                   seed=seed * 1_000_003 + b, settings=settings)
        out.append(np.asarray(stems, np.float32)[: min(batch, n - start), :samples])
        advance(min(batch, n - start))
    return np.concatenate(out)
