"""A disk cache of real-data embeddings, keyed by everything they depend on, so scoring a second
checkpoint of a run does not embed the test set again.

The key is the sha256 of a JSON description: the data folder, layout and split, the example settings
(seed, N, length, mixing, loudness), the embedding settings and the CLAP weights' fingerprint. A CLAP
retrained in place gets another fingerprint, hence another key; nothing stale is ever read. An entry
is one `.npz` of named arrays, written under a temporary name and renamed, so a killed run leaves no
half-written entry.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from pathlib import Path
from typing import Any, Callable

import numpy as np

log = logging.getLogger(__name__)


def cache_key(description: dict[str, Any]) -> str:
    """24 hex digits of sha256 over the description's canonical JSON."""
    text = json.dumps(description, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:24]


class EmbeddingCache:
    """get_or_compute(description, compute) -> arrays; `hits` and `misses` count what happened."""

    def __init__(self, directory: str | os.PathLike | None):
        self.directory = Path(directory) if directory else None
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, description: dict[str, Any],
                       compute: Callable[[], dict[str, np.ndarray]]) -> tuple[dict[str, np.ndarray], str]:
        """The cached arrays for `description`, or compute() stored under its key -> (arrays, key)."""
        key = cache_key(description)
        if self.directory is None:
            self.misses += 1
            return compute(), key
        path = self.directory / f"{key}.npz"
        if path.is_file():
            try:
                with np.load(path) as data:
                    arrays = {name: data[name] for name in data.files}
                self.hits += 1
                log.info("real-data embeddings from the cache %s", path)
                return arrays, key
            except (OSError, ValueError) as err:  # a damaged entry is recomputed, never trusted
                log.warning("%s: unreadable cache entry (%s); recomputing", path, err)
        self.misses += 1
        arrays = compute()
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f"{key}.tmp-{os.getpid()}.npz")
        np.savez(tmp, **arrays)
        tmp.replace(path)
        (self.directory / f"{key}.json").write_text(json.dumps(description, indent=1, sort_keys=True, default=str))
        return arrays, key
