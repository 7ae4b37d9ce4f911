"""ArrayRecord vs TFRecord for latent records: write, sequential read, random read, and LatentReader batches.

    python benchmarks/records_speed.py [--examples 2000] [--frames 144] [--clap-segments 4] \
        [--clap-dim 512] [--shards 4] [--max-open 64] [--out FILE]

LatentReader batches are measured with 1, 2 and 4 reader threads (data.reader_workers), with the number of
shard files each holds open (bounded by data.max_open_shards; 520 shards x 4 threads used to hold 2080).

Both formats store the same bytes, encoded inside the timed write loop (data/latents.py encode_example:
float16 latents [frames, 64] x 2 + float32 CLAP [K, D]), so only the container differs. Files are read right after being
written, so the OS page cache holds them: these are container + decode costs, not disk speed. Prints a
table and writes benchmarks/results/records_speed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

from diffariff_jax.data.latents import (LatentExample, LatentReader, decode_example, encode_example,  # noqa: E402
                                        shard_path, write_info, write_shard)


def _examples(n: int, frames: int, k: int, d: int):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((frames, 64)).astype(np.float32)
    clap = rng.standard_normal((k, d)).astype(np.float32)
    for i in range(n):
        yield LatentExample(base + i, base - i, clap, f"song{i // 8:05d}", "cello", 4096 * i)


def _rate(n: int, seconds: float) -> float:
    return n / max(seconds, 1e-9)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--examples", type=int, default=2000)
    ap.add_argument("--frames", type=int, default=144, help="latent frames per record (precompute's default)")
    ap.add_argument("--crop-frames", type=int, default=117, help="LDM crop (10 s)")
    ap.add_argument("--clap-segments", type=int, default=4)
    ap.add_argument("--clap-dim", type=int, default=512)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--max-open", type=int, default=256, help="LatentReader max_open (data.max_open_shards)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "records_speed.json"))
    args = ap.parse_args()
    import tensorflow as tf

    tf.config.set_visible_devices([], "GPU")
    examples = list(_examples(args.examples, args.frames, args.clap_segments, args.clap_dim))
    blobs = [encode_example(e) for e in examples]
    size_mb = sum(map(len, blobs)) / 1e6
    per = np.array_split(np.arange(args.examples), args.shards)
    res: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        ar, tr = Path(tmp, "ar"), Path(tmp, "tf")
        tr.mkdir()
        t = time.perf_counter()
        for s, idx in enumerate(per):
            write_shard(ar, s, args.shards, (examples[i] for i in idx))
        res["arrayrecord_write_ex_s"] = _rate(args.examples, time.perf_counter() - t)
        t = time.perf_counter()
        for s, idx in enumerate(per):
            with tf.io.TFRecordWriter(str(tr / f"{s}.tfrecord")) as w:
                for i in idx:
                    w.write(encode_example(examples[i]))
        res["tfrecord_write_ex_s"] = _rate(args.examples, time.perf_counter() - t)
        write_info(ar, {"frames": args.frames, "latent_dim": 64, "clap_dim": args.clap_dim})

        from array_record.python.array_record_module import ArrayRecordReader

        t = time.perf_counter()
        n = 0
        for s in range(args.shards):
            r = ArrayRecordReader(str(shard_path(ar, s, args.shards)))
            n += sum(decode_example(b).target.shape[0] > 0 for b in r.read_all())
        res["arrayrecord_seq_read_decode_ex_s"] = _rate(n, time.perf_counter() - t)
        t = time.perf_counter()
        ds = tf.data.TFRecordDataset([str(tr / f"{s}.tfrecord") for s in range(args.shards)])
        n = sum(decode_example(b.numpy()).target.shape[0] > 0 for b in ds)
        res["tfrecord_seq_read_decode_ex_s"] = _rate(n, time.perf_counter() - t)

        reader = LatentReader(ar, args.batch, args.crop_frames, seed=0)
        rng = np.random.default_rng(1)
        t = time.perf_counter()
        n = 0
        while time.perf_counter() - t < 2.0:
            n += len(reader.read(rng.integers(0, args.examples, args.batch)))
        res["arrayrecord_random_read_decode_ex_s"] = _rate(n, time.perf_counter() - t)
        for workers in (1, 2, 4):
            workers_reader = LatentReader(ar, args.batch, args.crop_frames, seed=0, workers=workers,
                                          max_open=args.max_open)
            it = workers_reader.iterate(prefetch=4)
            next(it)
            t = time.perf_counter()
            steps = 0
            while time.perf_counter() - t < 3.0:
                next(it)
                steps += 1
            it.close()
            res[f"latent_reader_batches_{workers}w_ex_s"] = _rate(steps * args.batch, time.perf_counter() - t)
            res[f"latent_reader_{workers}w_open_files"] = workers_reader.readers.open_count
            workers_reader.close()

    meta = {"examples": args.examples, "frames": args.frames, "crop_frames": args.crop_frames,
            "clap_segments": args.clap_segments, "clap_dim": args.clap_dim, "batch": args.batch,
            "shards": args.shards, "max_open": args.max_open,
            "bytes_per_example": len(blobs[0]), "total_mb": round(size_mb, 1), "cpus": os.cpu_count(),
            "machine": platform.machine(), "note": "2-core machine shared with other jobs; page-cached files"}
    print(f"{args.examples} examples x {len(blobs[0]) / 1e3:.1f} kB ({size_mb:.0f} MB), {args.shards} shards")
    print(f"{'measure':40s} {'examples/s':>12s}")
    for k, v in res.items():
        print(f"{k:40s} {v:12.0f}")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"results": {k: round(v, 1) for k, v in res.items()}, "config": meta}, indent=1))
    print(f"-> {out}")


if __name__ == "__main__":
    main()
