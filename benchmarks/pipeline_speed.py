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
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    seconds = time.perf_counter() - start
    return {"examples_per_s": batches * batch_size / seconds, "batch_size": batch_size, "batches": batches}


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
            start = time.perf_counter()
            index = render.render_dataset(tmp, args.num_songs, seed=0, seconds_max=30.0)
            elapsed = time.perf_counter() - start
            result["render"] = {"songs": len(index["songs"]), "seconds_max": 30.0, "wall_s": elapsed,
                                "wall_s_per_song": elapsed / max(len(index["songs"]), 1),
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

    print(f"{'pipeline':<10}{'examples/s':>12}  notes")
    if "render" in result:
        print(f"{'render':<10}{1 / result['render']['wall_s_per_song']:>12.2f}  songs/s "
              f"({result['render']['wall_s_per_song']:.2f} s per 30 s song, {os.cpu_count()} workers)")
    print(f"{'pairs':<10}{pairs['examples_per_s']:>12.1f}  10 s pairs, {pairs['audio_seconds_per_s']:.0f} s audio/s")
    print(f"{'cae':<10}{cae['examples_per_s']:>12.1f}  32768-sample crops")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
