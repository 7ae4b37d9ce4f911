"""Precompute throughput: examples/s of `diffariff_jax.precompute.run`, split into CAE, CLAP and the rest.

    python benchmarks/precompute_speed.py [--data data/demo] [--clap runs/clap] [--cae runs/cae | --cae-variant tiny]
        [--songs 8] [--songs-per-shard 2] [--mixes-per-song 3] [--encode-batch 4] [--short-frames 64] [--rounds 1]
        [--runs variable,bucketed,short] [--clap-segments 4] [--clap-seconds 5]

Runs, alternating on the same songs in one process (so they share the machine's load):
  variable   the encoder as before 5c96b1c: one compilation per batch size it meets (the last batch of every
             shard is smaller), 144-frame (12.3 s) records
  bucketed   encoder calls cut by precompute.call_sizes (precompute's CLI since dc72e98): at most
             log2(2 x encode_batch) + 1 compiled shapes whatever the batch sizes, 144-frame records
  short      bucketed, records of --short-frames frames (64 = 5.5 s: room for the 5 s CLAP windows and for the
             tiny/demo LDM's 16/32-frame crops; the `paper` LDM's 117-frame crops need the default 144)
Without --cae the CAE of configs/cae.py `--cae-variant` gets random weights (diffariff_jax/testing/random_cae.py),
without --clap the `small` CLAP of configs/clap.py does, and without --data 20 s synthetic songs of 3 stems
are written (diffariff_jax/testing/synth_stems.py): same shapes and cost as trained models and real songs.
"rest" is the tf.data stem mixing, probing and record writing. Timing the CAE waits for each encode (its
compilations included), so the overlap of CLAP with an asynchronous encode is not in these numbers.
cpu_s is the process's CPU time (all threads): on a loaded machine wall time is shared with other jobs,
while cpu_s / example bounds what idle cores give (idle_2core_bound = 2 / cpu_s per example).
Prints a table and writes benchmarks/results/precompute_speed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import jax
import numpy as np

from diffariff_jax.autoencoder import Autoencoder
from diffariff_jax.clap import ClapEmbedder
from diffariff_jax.precompute import precompute_config, run, sharded_encoder
from diffariff_jax.testing.synth_stems import make_tree

COLUMNS = ("run", "frames", "examples", "wall_s", "examples_per_s", "audio_s_per_s", "cae_s", "clap_s", "rest_s",
           "cpu_s", "cpu_s_per_example", "idle_2core_bound", "compiles")


def _timed(fn, acc: dict, key: str):
    def wrapped(x):
        t = time.perf_counter()
        out = np.asarray(fn(x))  # wait for an asynchronously dispatched encode, so the split is honest
        acc[key] = acc.get(key, 0.0) + time.perf_counter() - t
        return out

    return wrapped


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", help="demo-layout dataset (default: synthetic songs written to a temporary folder)")
    ap.add_argument("--clap", help="CLAP name or save_pretrained dir (default: random weights of the small CLAP)")
    ap.add_argument("--cae", help="CAE workdir/release (default: random weights of --cae-variant)")
    ap.add_argument("--cae-variant", default="tiny", help="configs/cae.py variant for the random CAE")
    ap.add_argument("--songs", type=int, default=8, help="songs to process (first N of the split)")
    ap.add_argument("--songs-per-shard", type=int, default=2, help="songs per shard (each shard ends a batch)")
    ap.add_argument("--mixes-per-song", type=int, default=3, help="records per song")
    ap.add_argument("--encode-batch", type=int, default=4, help="(target, context) pairs per CAE call")
    ap.add_argument("--short-frames", type=int, default=64, help="record length of the 'short' run, latent frames")
    ap.add_argument("--rounds", type=int, default=1, help="alternating rounds of the three runs")
    ap.add_argument("--runs", default="variable,bucketed,short", help="which of the runs, comma-separated")
    ap.add_argument("--clap-segments", type=int, default=4, help="CLAP sub-segments per record (make demo: 2)")
    ap.add_argument("--clap-seconds", type=float, default=5.0, help="CLAP sub-segment length (make demo: 3.0)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "precompute_speed.json"),
                    help="JSON results file")
    args = ap.parse_args()
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    if args.cae:
        ae = Autoencoder.load(args.cae)
    else:
        from diffariff_jax.testing.random_cae import random_cae

        ae = Autoencoder(*random_cae(args.cae_variant))
    with tempfile.TemporaryDirectory() as made:
        clap = ClapEmbedder.from_pretrained(args.clap or _random_small_clap(Path(made, "clap")))
        data_dir = Path(args.data) if args.data else make_tree(Path(made, "data"), args.songs, 20.0, 3)
        load_before = os.getloadavg()
        compile_s = _compile_seconds(ae, 2 * args.encode_batch)
        chosen = args.runs.split(",")
        runs = [_measure(args, ae, clap, data_dir, name, frames, fixed)
                for _ in range(args.rounds)
                for name, frames, fixed in (("variable", 144, False), ("bucketed", 144, True),
                                            ("short", args.short_frames, True)) if name in chosen]
    print(f"compiling the 144-frame encoder for one more batch shape: {compile_s} s")
    print(" | ".join(COLUMNS))
    for r in runs:
        print(" | ".join(str(r[k]) for k in COLUMNS))
    res = {"command": "benchmarks/precompute_speed.py " + " ".join(
               f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None and k != "out"),
           "cae": args.cae or f"random {args.cae_variant}", "clap": args.clap or "random small",
           "devices": [str(d) for d in jax.local_devices()], "cpus": os.cpu_count(),
           "load_average_before": [round(x, 1) for x in load_before],
           "load_average_after": [round(x, 1) for x in os.getloadavg()],
           "compile_s_per_new_batch_shape": compile_s, "note": "2-core machine shared with other jobs: compare runs side by side, and cpu_s", "runs": runs}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"-> {out}")


def _compile_seconds(ae: Autoencoder, rows: int) -> float:
    """What one more batch shape costs a precompute: first call of a fresh jit minus a compiled call."""
    wav = np.zeros((rows, 144 * ae.hop_samples), np.float32)
    encode = sharded_encoder(SimpleNamespace(params=ae.params, hop_samples=ae.hop_samples,
                                             encode_frames=lambda p, w: ae.encode_frames(p, w)))
    t = time.perf_counter()
    np.asarray(encode(wav))
    first = time.perf_counter() - t
    t = time.perf_counter()
    np.asarray(encode(wav))
    return round(first - (time.perf_counter() - t), 1)


def _random_small_clap(out: Path) -> str:
    from configs.clap import CAPTION_TEMPLATES, get_config
    from diffariff_jax.clap_training import build_clap, caption

    names = ("violin", "cello", "flute", "oboe", "bass", "piano")
    model, processor = build_clap(get_config("small"), [caption(t, n) for n in names for t in CAPTION_TEMPLATES])
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return str(out)


def _measure(args, ae: Autoencoder, clap: ClapEmbedder, data_dir: Path, name: str, frames: int,
             fixed: bool) -> dict:
    cfg = precompute_config()
    cfg.update({"mixes_per_song": args.mixes_per_song, "songs_per_shard": args.songs_per_shard,
                "encode_batch": args.encode_batch, "segment_frames": frames, "split_fractions": (1.0, 0.0, 0.0),
                "clap_segments": args.clap_segments, "clap_seconds": args.clap_seconds})
    traced: list[int] = []

    def encode_frames(params, wav):  # runs once per compiled batch shape
        traced.append(wav.shape[0])
        return ae.encode_frames(params, wav)

    counting = SimpleNamespace(params=ae.params, hop_samples=ae.hop_samples, encode_frames=encode_frames)
    encode = sharded_encoder(counting, rows=2 * args.encode_batch if fixed else None)
    acc: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp, "data")  # the first N songs only
        data.mkdir()
        for song in sorted(p.parent for p in data_dir.glob("*/metadata.json"))[: args.songs]:
            os.symlink(song.resolve(), data / song.name)
        t, cpu = time.perf_counter(), time.process_time()
        summary = run(data, Path(tmp, "out"), _timed(encode, acc, "cae_s"), _timed(clap.embed_audio, acc, "clap_s"),
                      cfg, sample_rate=ae.sample_rate, hop_samples=ae.hop_samples, latent_dim=ae.latent_dim,
                      clap_dim=clap.dim, clap_rate=clap.sample_rate)
        wall, cpu = time.perf_counter() - t, time.process_time() - cpu
        shutil.rmtree(Path(tmp, "out"))
    n = summary["examples_written"]
    seconds = frames * ae.hop_samples / ae.sample_rate
    res = {"run": name, "frames": frames, "segment_seconds": round(seconds, 2), "examples": n,
           "wall_s": round(wall, 1), "examples_per_s": round(n / wall, 3),
           "audio_s_per_s": round(n * seconds / wall, 2),  # seconds of target (and of context) per second
           "cae_s": round(acc.get("cae_s", 0), 1), "clap_s": round(acc.get("clap_s", 0), 1),
           "rest_s": round(wall - acc.get("cae_s", 0) - acc.get("clap_s", 0), 1), "cpu_s": round(cpu, 1),
           "cpu_s_per_example": round(cpu / max(n, 1), 3), "idle_2core_bound": round(2 * n / max(cpu, 1e-9), 2),
           "compiles": len(traced), "clap_segments": cfg.clap_segments, "skipped": summary["skipped"],
           "load_average": [round(x, 1) for x in os.getloadavg()]}
    print(json.dumps(res))
    return res


if __name__ == "__main__":
    main()
