"""Precompute the LDM's training data: stem mixes -> frozen CAE latents + CLAP of the target -> records.

    python -m diffariff_jax.precompute --cae runs/cae --clap runs/clap --data data/demo --out data/latents \
        [--layout demo] [--split train] [--mixes-per-song 8] [--mixes-per-minute 0] [--clap-segments 4] \
        [--clap-seconds 5] [--segment-frames 144] [--songs-per-shard 16] [--encode-batch 32] [--seed 0]

The songs of a split are cut into shards of `songs_per_shard` songs in song-id order; shard i belongs to
host i mod process_count. For each shard the stem-mixing pipeline (data/pipeline.py) visits every song
`mixes_per_song` times, or `mixes_per_minute` times per minute of audio when that is more (a random
segment, a non-silent target stem, a random context mix), the frozen CAE encodes target and context (one
jitted call, batch sharded over the local devices), and CLAP embeds `clap_segments` random sub-segments
of the target (the loudest of a few tries each, so rests are avoided).
A shard is written to a temporary name and renamed when complete: re-running skips finished shards, and
refuses (one line naming what changed) when any setting that changes a record, the song list (adding
songs shifts song-to-shard ranges) or the CAE/CLAP weights (sha256 fingerprints) differ from latents.json.
Segments are a whole number of latent frames long, so records hold exactly `segment_frames` frames.

Hosts never join JAX's distributed runtime: each encodes on its own devices, so one that finishes early
exits at once instead of aborting at the runtime's exit barrier. The host split comes from
--process-index/--process-count, else JAX_PROCESS_ID/JAX_NUM_PROCESSES, SLURM_PROCID/SLURM_NTASKS or
TPU_WORKER_ID/TPU_WORKER_HOSTNAMES.

Bad input (unreadable, empty, NaN, silent or too-short stems, songs left with < 2 stems) is skipped by the
scan/probe with one log line each and counted in the summary; a target silent in its segment before any
gain, and stems that fail to decode in a segment, are skipped and counted too. A missing --cae/--clap/--data
path, or an --out that is not a local path (ArrayRecord writes local files only), fails in one line.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Callable, Iterator

import jax
import ml_collections
import numpy as np

from diffariff_jax import paths
from diffariff_jax.audio.io import resample
from diffariff_jax.data import latents
from diffariff_jax.precompute_plan import (Progress, data_config, host_split, plan_shards, record_settings,
                                           songs_fingerprint)

log = logging.getLogger(__name__)

EncodeFn = Callable[[np.ndarray], Any]  # wav [B, samples] -> latents [B, frames, latent_dim] (numpy or jax)
EmbedFn = Callable[[list], np.ndarray]              # list of 1-D wavs at the CLAP rate -> [N, clap_dim]
INFO_KEYS = ("frames", "latent_dim", "clap_dim", "sample_rate", "hop_samples", "clap_segments", "num_shards",
             "split", "layout", "mixes_per_song", "seed", "cae", "clap", "cae_weights", "cae_latent_scale",
             "clap_weights", "settings", "songs")  # must match to resume into a directory
# The LDM's EDM settings (sigma_data 0.5, the training sigma law, sigma_max 80) assume latents of about unit
# std (SPEC section 1: raw / latent_scale). Far outside this range the sampler's noise levels miss the data:
# a CAE whose raw latents are not ~latent_scale in std needs its own inference.latent_scale.
LATENT_STD_RANGE = (0.5, 2.0)


def precompute_config() -> ml_collections.ConfigDict:
    """Every precompute setting; the CLI flags override them."""
    return ml_collections.ConfigDict({
        "layout": "demo",
        "split": "train",
        "split_fractions": (0.9, 0.05, 0.05),
        "mixes_per_song": 8,       # K: pipeline visits per song (random segment, target and context each time)
        "mixes_per_minute": 0.0,   # > 0: a song gets max(mixes_per_song, ceil(minutes * this)) visits
        "group_targets": False,    # MUSDB drums/other/vocals and MoisesDB other may be targets
        "bleed_targets": False,    # stems flagged as bleeding (MoisesDB, MedleyDB) may be targets
        "segment_frames": 144,     # latent frames per record (144 * 4096 / 48 kHz = 12.3 s): room for 10 s crops
        "clap_segments": 4,        # CLAP embeddings per example, of random target sub-segments
        "clap_seconds": 5.0,       # length of a CLAP sub-segment
        "clap_tries": 4,           # random offsets tried per sub-segment; the loudest is kept
        "songs_per_shard": 16,
        "encode_batch": 32,        # (target, context) pairs per CAE call (x2 waveforms)
        "seed": 0,
        "latent_dtype": "float16",
        "validate": "full",        # decode every stem once: NaN and silent stems are caught up front
        "silence_db": -50.0,
    })


def check_config(cfg: ml_collections.ConfigDict) -> None:
    """Raises one ValueError listing every out-of-range setting (bad flags fail before any work)."""
    problems = [f"{k} must be >= 1, got {cfg[k]}" for k in
                ("mixes_per_song", "segment_frames", "clap_segments", "clap_tries", "songs_per_shard", "encode_batch")
                if cfg[k] < 1]
    if cfg.clap_seconds <= 0:
        problems.append(f"clap_seconds must be > 0, got {cfg.clap_seconds}")
    if cfg.mixes_per_minute < 0:
        problems.append(f"mixes_per_minute must be >= 0, got {cfg.mixes_per_minute}")
    if cfg.latent_dtype not in ("float16", "float32"):
        problems.append(f"latent_dtype must be float16 or float32, got {cfg.latent_dtype!r}")
    if cfg.validate not in ("header", "full"):
        problems.append(f"validate must be 'header' or 'full', got {cfg.validate!r}")
    if problems:
        raise ValueError("precompute settings: " + "; ".join(problems))


def clap_windows(target: np.ndarray, count: int, length: int, tries: int, rng: np.random.Generator,
                 ) -> tuple[list[np.ndarray], list[int]]:
    """`count` sub-segments [length] of target [samples] at random offsets (loudest of `tries` each)."""
    length = min(length, target.shape[0])
    # One running sum of squares prices every candidate window in O(1) (count * tries windows per target).
    power = np.concatenate([[0.0], np.cumsum(np.square(target, dtype=np.float64))])
    wins, offsets = [], []
    for _ in range(count):
        cands = rng.integers(0, target.shape[0] - length + 1, size=tries)
        best = int(cands[int(np.argmax(power[cands + length] - power[cands]))])
        wins.append(target[best:best + length])
        offsets.append(best)
    return wins, offsets


def encode_batch(batch: dict[str, np.ndarray], encode: EncodeFn, embed_audio: EmbedFn,
                 cfg: ml_collections.ConfigDict, sample_rate: int, clap_rate: int, rng: np.random.Generator,
                 counts: Counter) -> list[latents.LatentExample]:
    """One pipeline batch (context, target: [B, L]; song_id, instrument, offset, target_db: [B]) -> records.

    A target whose stem was below silence_db in its segment before any gain is dropped and counted.
    """
    keep = [i for i in range(len(batch["target"])) if batch["target_db"][i] >= cfg.silence_db]
    counts["target silent in its segment"] += len(batch["target"]) - len(keep)
    if not keep:
        return []
    target, context = batch["target"][keep], batch["context"][keep]
    # A jax result is dispatched asynchronously: CLAP runs on the host while the devices encode.
    z_pending = encode(np.concatenate([target, context]))
    n = len(keep)
    wins, offsets = [], []
    for t in target:
        w, o = clap_windows(t, cfg.clap_segments, int(round(cfg.clap_seconds * sample_rate)), cfg.clap_tries, rng)
        wins += w
        offsets.append(o)
    if clap_rate != sample_rate:
        wins = [resample(w[None], sample_rate, clap_rate)[0] for w in wins]
    clap = np.asarray(embed_audio(wins), np.float32).reshape(n, cfg.clap_segments, -1)
    z = np.asarray(z_pending)
    if z.shape[1] != cfg.segment_frames:
        raise ValueError(f"CAE gave {z.shape[1]} frames for a {target.shape[1]}-sample segment, "
                         f"expected segment_frames={cfg.segment_frames}")
    return [latents.LatentExample(z[k], z[n + k], clap[k], _str(batch["song_id"][i]), _str(batch["instrument"][i]),
                                  int(batch["offset"][i]), tuple(offsets[k])) for k, i in enumerate(keep)]


def _str(x) -> str:
    return x.decode() if isinstance(x, bytes) else str(x)


def shard_examples(songs: list, data_cfg: ml_collections.ConfigDict, cfg: ml_collections.ConfigDict,
                   shard_index: int, encode: EncodeFn, embed_audio: EmbedFn, clap_rate: int,
                   counts: Counter, progress: Callable[[int], None] = lambda n: None,
                   ) -> Iterator[latents.LatentExample]:
    """All records of one shard: one pipeline epoch over its songs (each visited mixes_per_song+ times).

    counts: skip reasons (silent targets, stems that failed to decode); progress(n): called per batch.
    """
    from diffariff_jax.data import layouts, pipeline

    seed = cfg.seed * 1_000_003 + shard_index  # a shard's content depends on (seed, shard) only, not on hosts
    rng = np.random.default_rng([cfg.seed, shard_index])
    read_errors = layouts.Skips()
    ds = pipeline.stem_pair_dataset(data_cfg, cfg.encode_batch, seed=seed, songs=songs, num_epochs=1,
                                    skips=read_errors)
    for batch in ds.as_numpy_iterator():
        yield from encode_batch(batch, encode, embed_audio, cfg, data_cfg.sample_rate, clap_rate, rng, counts)
        progress(len(batch["target"]))
    counts.update(read_errors)


def run(data_dir: str | Path, out_dir: str | Path, encode: EncodeFn, embed_audio: EmbedFn,
        cfg: ml_collections.ConfigDict, *, sample_rate: int, hop_samples: int, latent_dim: int, clap_dim: int,
        clap_rate: int, process_index: int = 0, process_count: int = 1, names: dict | None = None) -> dict:
    """Writes this host's unfinished shards of `data_dir` into `out_dir`; returns the summary dict."""
    from diffariff_jax.data import layouts
    from diffariff_jax.data.stems import probe_songs

    check_config(cfg)
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, process_count={process_count})")
    if cfg.clap_seconds * sample_rate > cfg.segment_frames * hop_samples:
        raise ValueError(f"clap_seconds {cfg.clap_seconds} is longer than a segment "
                         f"({cfg.segment_frames * hop_samples / sample_rate:.2f} s)")
    t0 = time.time()
    skips = layouts.Skips()
    scanned = layouts.scan(data_dir, cfg.layout, skips, group_targets=cfg.group_targets,
                           bleed_targets=cfg.bleed_targets)
    songs = layouts.songs_in_split(scanned, cfg.split, tuple(cfg.split_fractions))
    if not songs:
        raise ValueError(f"{data_dir}: no songs in split {cfg.split!r}")
    shards = plan_shards(len(songs), cfg.songs_per_shard)
    out_dir = Path(out_dir)
    data_cfg = data_config(cfg, data_dir, sample_rate, hop_samples)
    info = {"frames": cfg.segment_frames, "latent_dim": latent_dim, "clap_dim": clap_dim, "sample_rate": sample_rate,
            "hop_samples": hop_samples, "clap_segments": cfg.clap_segments, "clap_seconds": cfg.clap_seconds,
            "num_shards": len(shards), "split": cfg.split, "layout": cfg.layout, "latent_dtype": cfg.latent_dtype,
            "mixes_per_song": cfg.mixes_per_song, "seed": cfg.seed, "data": str(data_dir),
            "settings": record_settings(cfg, data_cfg), "songs": songs_fingerprint(songs),
            "num_songs": len(songs), **(names or {})}
    if (out_dir / latents.INFO_FILE).is_file():
        old = latents.read_info(out_dir)
        diff = [k for k in INFO_KEYS if k not in ("settings", "songs") and old.get(k) != info.get(k)]
        diff += sorted(k for k in set(old.get("settings") or {}) | set(info["settings"])
                       if (old.get("settings") or {}).get(k, "<unset>") != info["settings"].get(k))
        if old.get("songs") != info["songs"]:
            diff.append(f"the song list ({old.get('num_songs', '?')} songs then, {len(songs)} now)")
        if diff:
            raise ValueError(f"{out_dir}: holds latents made with other settings ({', '.join(diff)}); "
                             "use a new --out directory")
    elif process_index == 0:
        out_dir.mkdir(parents=True, exist_ok=True)
        latents.write_info(out_dir, info)
    counts: Counter = Counter()
    written = examples = 0
    mine = [i for i in range(process_index, len(shards), process_count)
            if not latents.shard_path(out_dir, i, len(shards)).is_file()]
    done = len(range(process_index, len(shards), process_count)) - len(mine)
    progress = Progress(len(mine))
    stats = LatentStats()

    def probe(i: int) -> list:
        return probe_songs([songs[j] for j in shards[i]], sample_rate, data_cfg.crop_seconds, skips,
                           full=cfg.validate == "full", silence_db=cfg.silence_db)

    # Validation decodes every stem of a shard; the next shard's runs on a thread while this one encodes.
    with ThreadPoolExecutor(1) as prober:
        pending = prober.submit(probe, mine[0]) if mine else None
        for k, i in enumerate(mine):
            probed = pending.result()
            pending = prober.submit(probe, mine[k + 1]) if k + 1 < len(mine) else None
            n = _write_shard(out_dir, i, len(shards), probed, data_cfg, cfg, encode, embed_audio, clap_rate,
                             counts, progress, stats)
            examples += n
            written += 1
            log.info("shard %d/%d: %d songs -> %d examples (%.2f examples/s so far)", i + 1, len(shards),
                     len(probed), n, examples / (time.time() - t0))
    skipped = dict(skips)
    skipped.update(counts)
    seconds = time.time() - t0
    summary = {"host": process_index, "hosts": process_count, "songs": len(songs), "shards": len(shards),
               "shards_written": written, "shards_already_done": done, "examples_written": examples,
               "seconds": round(seconds, 1), "examples_per_s": round(examples / max(seconds, 1e-9), 2),
               "latents": stats.summary(), "skipped": skipped}
    warning = latent_scale_warning(summary["latents"]["std"], info.get("cae_latent_scale")) if stats.count else None
    if warning:
        log.warning("%s: %s", out_dir, warning)
        summary["warning"] = warning
    (out_dir / f"precompute-host{process_index:03d}.json").write_text(json.dumps(summary, indent=1))
    return summary


def _write_shard(out_dir: Path, i: int, num_shards: int, probed: list, data_cfg, cfg, encode: EncodeFn,
                 embed_audio: EmbedFn, clap_rate: int, counts: Counter, progress: Progress,
                 stats: LatentStats) -> int:
    """Writes shard i of the probed songs (deleting what a killed run left of it); returns its record count."""
    from diffariff_jax.data import pipeline

    final = latents.shard_path(out_dir, i, num_shards)
    for stale in out_dir.glob(f"{final.name}.tmp-*"):  # left by a killed run; this host owns shard i
        log.info("removing unfinished %s", stale)
        stale.unlink()
    progress.shard(int(pipeline.examples_per_song(probed, data_cfg).sum()) if probed else 0)
    gen = (shard_examples(probed, data_cfg, cfg, i, encode, embed_audio, clap_rate, counts, progress)
           if probed else iter(()))
    return latents.write_shard(out_dir, i, num_shards, stats.observe(gen), cfg.latent_dtype)


class LatentStats:
    """Running mean and std of every latent value written (targets and contexts)."""

    def __init__(self):
        self.count, self.total, self.squares = 0, 0.0, 0.0

    def observe(self, examples: Iterator[latents.LatentExample]) -> Iterator[latents.LatentExample]:
        for ex in examples:
            for z in (ex.target, ex.context):
                z = np.asarray(z, np.float64)
                self.count += z.size
                self.total += float(z.sum())
                self.squares += float(np.square(z).sum())
            yield ex

    def summary(self) -> dict[str, float] | None:
        if not self.count:
            return None
        mean = self.total / self.count
        return {"mean": round(mean, 4), "std": round(float(np.sqrt(max(self.squares / self.count - mean**2, 0.0))), 4)}


def latent_scale_warning(std: float, latent_scale: float | None) -> str | None:
    """One line when the written latents' std is outside LATENT_STD_RANGE, naming the scale that fits."""
    low, high = LATENT_STD_RANGE
    if low <= std <= high or latent_scale is None:
        return None
    fitted = latent_scale * std
    return (f"the latents written have std {std:.2f}, but the LDM's noise levels assume about 1: this CAE's "
            f"inference.latent_scale {latent_scale:g} does not fit its raw latents (std {fitted:.3g}); set "
            f"inference.latent_scale to {fitted:.3g} in the CAE's config.json (or train it with "
            f"--config.inference.latent_scale={fitted:.3g}) and precompute into a new --out")


def call_sizes(rows: int, per_call: int, unit: int) -> list[int]:
    """Row counts of the encoder calls for `rows` rows: whole calls of `per_call` rows, then the rest as powers
    of two times `unit` (the device count; the last call is padded up to it). Batch sizes vary in a precompute
    (a shard's last batch, targets dropped as silent), and this keeps the compiled shapes to per_call and
    unit * 2^k < per_call while padding fewer than `unit` rows."""
    units, per_units = -(-rows // unit), max(per_call // unit, 1)
    rest = units % per_units
    return [per_units * unit] * (units // per_units) + [unit << k for k in reversed(range(rest.bit_length()))
                                                          if rest >> k & 1]


def sharded_encoder(ae, devices: list | None = None, rows: int | None = None) -> EncodeFn:
    """ae.encode for whole-frame segments as jitted calls, batch sharded over the (local) devices.

    wav: [B, frames * hop_samples] -> latents [B, frames, latent_dim] (scaled like Autoencoder.encode), a jax
    Array still being computed (np.asarray waits for it).
    rows: the most rows per call; B is cut by `call_sizes`, so a run compiles a few shapes at most. Without it
    every B is one call, padded to a multiple of the devices, and each new B compiles the encoder again.
    """
    from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

    devices = list(devices or jax.local_devices())
    mesh = Mesh(np.array(devices), ("data",))
    sharded, whole = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
    params = jax.device_put(ae.params, whole)
    enc = jax.jit(ae.encode_frames, in_shardings=(whole, sharded), out_shardings=sharded)

    def encode(wav: np.ndarray) -> jax.Array:
        if wav.shape[1] % ae.hop_samples:
            raise ValueError(f"segment of {wav.shape[1]} samples is not a whole number of "
                             f"{ae.hop_samples}-sample frames")
        wav = np.asarray(wav, np.float32)
        d = len(devices)
        sizes = call_sizes(wav.shape[0], rows, d) if rows else [-(-wav.shape[0] // d) * d]
        parts, start = [], 0
        for size in sizes:
            piece = wav[start:start + size]
            x = jax.device_put(np.pad(piece, ((0, size - piece.shape[0]), (0, 0))), sharded)
            parts.append(enc(params, x)[: piece.shape[0]])
            start += size
        return parts[0] if len(parts) == 1 else jax.numpy.concatenate(parts)

    return encode


def weights_fingerprint(arrays: Iterator[Any]) -> str:
    """16 hex digits of sha256 over the arrays' bytes: a CAE trained further, or a CLAP retrained into the same
    directory, gets another fingerprint, so a resumed run cannot mix records made by two weight sets."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(np.asarray(array)).tobytes())
    return digest.hexdigest()[:16]


HELP = {
    "layout": "folder layout of --data: generic | musdb18hq | slakh2100 | moisesdb | medleydb | demo",
    "split": "which split of the songs to encode: train | validation | test",
    "mixes_per_song": "pipeline visits per song (each a random segment, target and context); the minimum "
                      "when --mixes-per-minute is set",
    "mixes_per_minute": "visits per minute of audio, so long songs get more (0 = mixes-per-song for every song)",
    "group_targets": "let group stems (MUSDB drums/other/vocals, MoisesDB other) be targets (1/0)",
    "bleed_targets": "let stems flagged as bleeding (MoisesDB, MedleyDB) be targets (1/0)",
    "segment_frames": "latent frames per record (4096 samples each); at least the LDM's data.crop_frames (paper "
                      "117, demo 32, tiny 16); the CAE's cost is linear in it, so 64 suffices for demo/tiny",
    "clap_segments": "CLAP embeddings per record, of random target sub-segments",
    "clap_seconds": "length of one CLAP sub-segment in seconds",
    "clap_tries": "random offsets tried per CLAP sub-segment; the loudest is kept",
    "songs_per_shard": "songs per output shard (the unit of resume and of the host split)",
    "encode_batch": "(target, context) pairs per CAE call",
    "seed": "random seed of segments, targets, mixes and CLAP offsets",
    "latent_dtype": "dtype of stored latents: float16 | float32",
    "validate": "header (fast) or full (decode every stem once: NaN and silent stems are caught up front)",
    "silence_db": "RMS level (dBFS) below which a stem is silent, checked before any gain",
}


def _flag_type(value):
    return (lambda text: bool(int(text))) if isinstance(value, bool) else type(value)


def main(argv: list[str] | None = None) -> int:
    cfg = precompute_config()
    p = argparse.ArgumentParser(prog="python -m diffariff_jax.precompute", description=__doc__.split("\n")[0])
    p.add_argument("--cae", required=True, help="CAE training workdir or release dir (local or gs://)")
    p.add_argument("--clap", required=True, help="CLAP hub name or save_pretrained directory")
    p.add_argument("--data", required=True, help="multitrack dataset folder (local)")
    p.add_argument("--out", required=True, help="latents directory (shards + latents.json; local)")
    for key, value in cfg.items():
        if key != "split_fractions":
            p.add_argument(f"--{key.replace('_', '-')}", type=_flag_type(value), default=value,
                           help=f"{HELP[key]} (default {value})")
    p.add_argument("--clap-device", default="cpu", help="torch device for CLAP (cpu, cuda)")
    p.add_argument("--process-index", type=int, help="this host (default: from JAX_PROCESS_ID, SLURM_PROCID or "
                   "TPU_WORKER_ID; hosts never join a distributed runtime)")
    p.add_argument("--process-count", type=int, help="hosts (default: from JAX_NUM_PROCESSES, SLURM_NTASKS or "
                   "TPU_WORKER_HOSTNAMES)")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    for key in cfg:
        if key != "split_fractions":
            cfg[key] = getattr(args, key)
    from diffariff_jax.autoencoder import Autoencoder
    from diffariff_jax.clap import ClapEmbedder

    try:
        index, count = host_split(args.process_index, args.process_count)
        data = paths.local(args.data, "--data")
        out = paths.local(args.out, "--out")
        cae = paths.resolve(args.cae, "--cae")
        clap_name = args.clap if not args.clap.startswith((".", "/", "~")) and not os.path.isdir(args.clap) \
            else str(paths.local(args.clap, "--clap"))
        if not data.is_dir():
            raise FileNotFoundError(f"{data}: dataset folder not found")
        ae = Autoencoder.load(str(cae))
        clap = ClapEmbedder.from_pretrained(clap_name, device=args.clap_device)
        import tensorflow as tf

        tf.config.set_visible_devices([], "GPU")  # the accelerators belong to JAX
        summary = run(data, out, sharded_encoder(ae, rows=2 * cfg.encode_batch), clap.embed_audio, cfg,
                      sample_rate=ae.sample_rate, hop_samples=ae.hop_samples, latent_dim=ae.latent_dim,
                      clap_dim=clap.dim, clap_rate=clap.sample_rate, process_index=index, process_count=count,
                      names={"cae": str(cae), "clap": clap.name, "cae_latent_scale": ae.latent_scale,
                             "cae_weights": weights_fingerprint(jax.tree.leaves(ae.params)),
                             "clap_weights": weights_fingerprint(t.detach().float().cpu().numpy()
                                                                 for t in clap.model.state_dict().values())})
    except (FileNotFoundError, ValueError) as e:  # AudioError, CheckpointError, ClapLoadError, PathError
        log.error("%s", str(e).splitlines()[0])
        return 1
    print(json.dumps(summary))
    if summary["shards_written"] and not summary["examples_written"]:  # the LDM could not train on this
        skipped = ", ".join(f"{k}: {v}" for k, v in summary["skipped"].items() if v) or "nothing"
        log.error("%s: no examples written, every song was skipped (%s); fix --data, then use a new --out",
                  out, skipped)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
