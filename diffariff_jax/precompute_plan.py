"""What a precompute run is, apart from the encoding: shard plan, host split, resume fingerprints, progress.

A latents directory may be filled by several runs and several hosts; these pieces decide which host writes
which shard, and what latents.json must agree on before a run may add shards to it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import ml_collections

log = logging.getLogger(__name__)

# Settings that cannot change a record (only how fast it is made) are left out of the resume check.
NOT_IN_RECORDS = ("encode_batch",)
DATA_KEYS_NOT_IN_RECORDS = ("root", "num_parallel_calls", "prefetch")


def plan_shards(num_songs: int, songs_per_shard: int) -> list[range]:
    """Contiguous song-index ranges, one per shard (the last may be shorter)."""
    return [range(i, min(i + songs_per_shard, num_songs)) for i in range(0, num_songs, songs_per_shard)]


def songs_fingerprint(songs: list) -> str:
    """16 hex digits over every song's id, stems, instruments, target flags and file names (not folders)."""
    listing = [[s.song_id, [[st.instrument, st.can_be_target, [Path(p).name for p in st.paths]] for st in s.stems]]
               for s in songs]
    return hashlib.sha256(json.dumps(listing).encode()).hexdigest()[:16]


def data_config(cfg: ml_collections.ConfigDict, data_dir, sample_rate: int,
                hop_samples: int) -> ml_collections.ConfigDict:
    """The stem-mixing pipeline settings (data/pipeline.py) a precompute config implies."""
    from diffariff_jax.data import pipeline

    data_cfg = pipeline.default_data_config()
    data_cfg.update({"root": str(data_dir), "layout": cfg.layout, "split": cfg.split,
                     "split_fractions": tuple(cfg.split_fractions), "sample_rate": sample_rate,
                     "crop_seconds": cfg.segment_frames * hop_samples / sample_rate,
                     "examples_per_song": cfg.mixes_per_song, "examples_per_minute": cfg.mixes_per_minute,
                     "group_targets": cfg.group_targets, "bleed_targets": cfg.bleed_targets,
                     "validate": cfg.validate, "silence_db": cfg.silence_db})
    return data_cfg


def record_settings(cfg: ml_collections.ConfigDict, data_cfg: ml_collections.ConfigDict) -> dict:
    """Every precompute and stem-mixing setting that changes a record (JSON-ready, compared on resume)."""
    out = {k: v for k, v in cfg.to_dict().items() if k not in NOT_IN_RECORDS}
    out.update({f"data.{k}": v for k, v in data_cfg.to_dict().items() if k not in DATA_KEYS_NOT_IN_RECORDS})
    return json.loads(json.dumps(out))  # tuples -> lists, as they come back from latents.json


class Progress:
    """One log line per ~10 s: examples so far, examples/s and an ETA over this host's shards."""

    def __init__(self, shards: int, every_s: float = 10.0):
        self.shards, self.every_s = max(shards, 1), every_s
        self.started = self.expected = self.done = 0
        self.t0, self.last = time.time(), 0.0

    def shard(self, examples: int) -> None:
        """A shard starts with `examples` pipeline visits (the others are estimated from the mean so far)."""
        self.started += 1
        self.expected += examples

    def __call__(self, n: int) -> None:
        self.done += n
        now = time.time()
        total = self.expected / max(self.started, 1) * self.shards
        if now - self.last >= self.every_s or self.done >= total:
            rate = self.done / max(now - self.t0, 1e-9)
            eta = max(total - self.done, 0) / max(rate, 1e-9)
            log.info("precompute: %d/~%d examples, %.2f examples/s, ETA %dm%02ds", self.done, total, rate,
                     int(eta // 60), int(eta % 60))
            self.last = now


def host_split(index: int | None, count: int | None, env: dict | None = None) -> tuple[int, int]:
    """(process_index, process_count): the flags, else the launcher's environment, else (0, 1)."""
    env = os.environ if env is None else env
    if index is not None or count is not None:
        return (0 if index is None else index), (1 if count is None else count)
    for idx, cnt in (("JAX_PROCESS_ID", "JAX_NUM_PROCESSES"), ("SLURM_PROCID", "SLURM_NTASKS")):
        if env.get(idx) and env.get(cnt):
            return int(env[idx]), int(env[cnt])
    if env.get("TPU_WORKER_ID") and env.get("TPU_WORKER_HOSTNAMES"):
        return int(env["TPU_WORKER_ID"]), len(env["TPU_WORKER_HOSTNAMES"].split(","))
    return 0, 1


