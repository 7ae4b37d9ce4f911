"""Examples/s of the tf.data stem-mixing pipeline (audio reading + mixing) on this machine.

    .venv/bin/python benchmarks/pipeline_speed.py [--data DIR] [--num-songs 8] [--batches 10]

Without --data it first renders a small demo set (`--num-songs` songs cut at 30 s) and reports the
render time per song too. Then it times, after 2 warm-up batches:
  pairs: stem_pair_dataset, 10 s (context, target) pairs at 48 kHz (what precompute consumes), batch 8;
  cae:   cae_dataset, 32768-sample mono crops (Music2Latent's 64 STFT frames), batch 16.
Prints a table and writes JSON to benchmarks/results/pipeline_speed.json. Timings on a shared
machine are noisy; compare runs made side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from diffariff_jax.data import pipeline, render  # noqa: E402  (environment first)


def time_batches(ds, batches: int, batch_size: int) -> dict:
    it = ds.as_numpy_iterator()
    for _ in range(2):
        next(it)
    start, cpu = time.perf_counter(), time.process_time()
    for _ in range(batches):
        next(it)
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    n = batches * batch_size
    return {"examples_per_s": n / seconds, "cpu_s_per_example": cpu / n, "batch_size": batch_size,
            "batches": batches}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=None, help="demo-layout folder (default: render one)")
    parser.add_argument("--num-songs", type=int, default=8)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "pipeline_speed.json"))
    args = parser.parse_args()

    result: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores (shared)"}
    with tempfile.TemporaryDirectory() as tmp:
        data = args.data
        if data is None:
            data = tmp
            start, cpu = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            index = render.render_dataset(tmp, args.num_songs, seed=0, seconds_max=30.0)
            elapsed, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_CHILDREN)
            n = max(len(index["songs"]), 1)
            # CPU of the worker processes and their fluidsynth children: less sensitive to a busy machine
            cpu_s = (after.ru_utime + after.ru_stime) - (cpu.ru_utime + cpu.ru_stime)
            result["render"] = {"songs": len(index["songs"]), "seconds_max": 30.0, "wall_s": elapsed,
                                "wall_s_per_song": elapsed / n, "cpu_s_per_song": cpu_s / n,
                                "workers": os.cpu_count()}
        cfg = pipeline.default_data_config()
        cfg.update(dict(root=str(data), layout="demo", split_fractions=(1.0, 0.0, 0.0)))
        songs = pipeline.host_songs(cfg, 0, 1)
        pairs = time_batches(pipeline.stem_pair_dataset(cfg, 8, songs=songs), args.batches, 8)
        pairs["crop_seconds"] = cfg.crop_seconds
        pairs["audio_seconds_per_s"] = pairs["examples_per_s"] * cfg.crop_seconds
        cae_cfg = cfg.copy_and_resolve_references()
        cae_cfg.crop_seconds = 32768 / cfg.sample_rate
        cae = time_batches(pipeline.cae_dataset(cae_cfg, 16, songs=songs), args.batches * 2, 16)
        cae["crop_samples"] = 32768
        result.update(pairs=pairs, cae=cae, num_songs=len(songs))

    print(f"{'stage':<10}{'items/s':>10}{'CPU s/item':>12}  notes")
    if "render" in result:
        r = result["render"]
        print(f"{'render':<10}{1 / r['wall_s_per_song']:>10.2f}{r['cpu_s_per_song']:>12.2f}  songs of <= 30 s, "
              f"{r['workers']} workers")
    print(f"{'pairs':<10}{pairs['examples_per_s']:>10.1f}{pairs['cpu_s_per_example']:>12.3f}  "
          f"10 s pairs, {pairs['audio_seconds_per_s']:.0f} s of audio/s")
    print(f"{'cae':<10}{cae['examples_per_s']:>10.1f}{cae['cpu_s_per_example']:>12.4f}  32768-sample crops")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
