"""Precompute throughput: examples/s of `diffariff_jax.precompute.run`, split into CAE, CLAP and the rest.

    python benchmarks/precompute_speed.py [--data data/demo] [--clap runs/clap] [--cae runs/cae | --cae-variant tiny]
        [--songs 16] [--mixes-per-song 2] [--encode-batch 16]

Without --cae the CAE of configs/cae.py `--cae-variant` gets random weights (diffariff_jax/testing/random_cae.py),
without --clap the `small` CLAP of configs/clap.py does, and without --data 20 s synthetic songs of 3 stems
are written (diffariff_jax/testing/synth_stems.py): same shapes and cost as trained models and real songs.
"rest" is the tf.data stem mixing, probing and record writing.
Timing the CAE waits for each encode, so the overlap precompute gets from asynchronous dispatch (CLAP on
the host while the devices encode) is not in these numbers.
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

import jax
import numpy as np

from diffariff_jax.autoencoder import Autoencoder
from diffariff_jax.clap import ClapEmbedder
from diffariff_jax.precompute import precompute_config, run, sharded_encoder
from diffariff_jax.testing.synth_stems import make_tree


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
    ap.add_argument("--cae-variant", default="tiny")
    ap.add_argument("--songs", type=int, default=16, help="songs to process (first N of the split)")
    ap.add_argument("--mixes-per-song", type=int, default=2)
    ap.add_argument("--encode-batch", type=int, default=16)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "precompute_speed.json"))
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
        _measure(args, ae, clap, data_dir)


def _random_small_clap(out: Path) -> str:
    from configs.clap import CAPTION_TEMPLATES, get_config
    from diffariff_jax.clap_training import build_clap, caption

    names = ("violin", "cello", "flute", "oboe", "bass", "piano")
    model, processor = build_clap(get_config("small"), [caption(t, n) for n in names for t in CAPTION_TEMPLATES])
    model.save_pretrained(out)
    processor.save_pretrained(out)
    return str(out)


def _measure(args, ae: Autoencoder, clap: ClapEmbedder, data_dir: Path) -> None:
    cfg = precompute_config()
    cfg.update({"mixes_per_song": args.mixes_per_song, "songs_per_shard": args.songs,
                "encode_batch": args.encode_batch, "split_fractions": (1.0, 0.0, 0.0)})
    acc: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp, "data")  # the first N songs only: one shard
        data.mkdir()
        for song in sorted(p.parent for p in data_dir.glob("*/metadata.json"))[: args.songs]:
            os.symlink(song.resolve(), data / song.name)
        encode = sharded_encoder(ae)
        encode(np.zeros((args.encode_batch * 2, cfg.segment_frames * ae.hop_samples), np.float32))  # compile
        t = time.perf_counter()
        summary = run(data, Path(tmp, "out"), _timed(encode, acc, "cae_s"), _timed(clap.embed_audio, acc, "clap_s"),
                      cfg, sample_rate=ae.sample_rate, hop_samples=ae.hop_samples, latent_dim=ae.latent_dim,
                      clap_dim=clap.dim, clap_rate=clap.sample_rate)
        wall = time.perf_counter() - t
        shutil.rmtree(Path(tmp, "out"))
    n = summary["examples_written"]
    res = {"examples": n, "wall_s": round(wall, 1), "examples_per_s": round(n / wall, 3),
           "cae_s": round(acc.get("cae_s", 0), 1), "clap_s": round(acc.get("clap_s", 0), 1),
           "rest_s": round(wall - acc.get("cae_s", 0) - acc.get("clap_s", 0), 1),
           "segment_seconds": round(cfg.segment_frames * ae.hop_samples / ae.sample_rate, 2),
           "clap_segments": cfg.clap_segments, "cae": args.cae or f"random {args.cae_variant}", "clap": clap.name,
           "devices": [str(d) for d in jax.local_devices()], "cpus": os.cpu_count(),
           "skipped": summary["skipped"], "load_average": [round(x, 1) for x in os.getloadavg()],
           "note": "2-core machine shared with other jobs"}
    for k in ("examples", "wall_s", "examples_per_s", "cae_s", "clap_s", "rest_s"):
        print(f"{k:16s} {res[k]}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
