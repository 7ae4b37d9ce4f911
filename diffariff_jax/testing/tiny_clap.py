"""A tiny random CLAP saved with save_pretrained, loadable by `ClapEmbedder.from_pretrained(path)`.

Shared by the CLAP, precompute, metrics and eval tests: a real transformers ClapModel (configs/clap.py
variant `tiny`: 32-d embeddings, 48 kHz, 10 s windows) with an offline byte-level BPE tokenizer. Random
weights, so embeddings are deterministic but meaningless; use `python -m diffariff_jax.clap train` for
a CLAP whose text prompts mean something.

    from diffariff_jax.testing.tiny_clap import build_tiny_clap
    path = build_tiny_clap(tmp_path / "clap")          # ~1 s on CPU
"""
from __future__ import annotations

from pathlib import Path

from configs.clap import get_config
from diffariff_jax.clap_training import build_clap, caption

DEFAULT_INSTRUMENTS = ("violin", "cello", "flute", "piano", "trumpet", "acoustic bass")


def build_tiny_clap(out_dir: str | Path, instruments: tuple[str, ...] = DEFAULT_INSTRUMENTS, seed: int = 0,
                    projection_dim: int | None = None) -> Path:
    """Writes a tiny random ClapModel + ClapProcessor to out_dir and returns the path."""
    cfg = get_config("tiny")
    cfg.train.seed = seed
    if projection_dim is not None:
        cfg.model.projection_dim = projection_dim
    model, processor = build_clap(cfg, [caption(t, i) for i in instruments for t in cfg.captions.templates])
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    processor.save_pretrained(out_dir)
    return out_dir
