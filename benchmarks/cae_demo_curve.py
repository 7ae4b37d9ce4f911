"""The demo CAE's learning curve: log-mel distance on held-out songs against training steps and CPU minutes.

    .venv/bin/python benchmarks/cae_demo_curve.py --data demo/data --steps 1200 --every 200 [--variant demo]
        [--set consistency.p_mean=1.0] [--no-recon]
    .venv/bin/python benchmarks/cae_demo_curve.py --data demo/data --workdir demo/runs/cae   # score a CLI run

Trains `configs/cae.py:VARIANT` with the generic train step on batches of the real CAE pipeline
(data/pipeline.cae_dataset, train split), and every `--every` steps decodes held-out clips (test and
validation songs of the same render, never trained on: alternately a full mix and one stem, each
loudness-normalised like training) in one step and reports the median log-mel distance
(metrics/logmel.py) of the EMA and raw weights. The equal-rate mel + Griffin-Lim baseline and silence are
computed on the same clips. CPU minutes are this process's time.process_time() without evaluation; the
machine may be shared, so wall time is printed but CPU time is the figure to extrapolate from.
With --workdir it trains nothing and scores the EMA weights of every kept checkpoint of a run the train
CLI made (`make demo`'s CAE stage), with the CPU time its demo stage recorded. Writes
benchmarks/results/cae_demo_curve[_TAG].json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import jax
import numpy as np
import soundfile as sf

from configs.cae import get_config
from diffariff_jax.autoencoder import Autoencoder
from diffariff_jax.data import layouts
from diffariff_jax.data.pipeline import cae_dataset
from diffariff_jax.metrics.logmel import log_mel_distance, mel_codec_distance
from diffariff_jax.training import state as state_lib
from diffariff_jax.training.cae_task import CAETask


def held_out_clips(root: str, sample_rate: int, count: int, seconds: float) -> list[np.ndarray]:
    songs = [s for s in layouts.scan(root, "demo") if layouts.split_of(s) != "train"]
    clips = []
    for i in range(count):
        song = songs[i % len(songs)]
        stems = [sf.read(s.paths[0], dtype="float32")[0] for s in song.stems]
        n = min(len(x) for x in stems)
        length = min(int(seconds * sample_rate), n)
        start = (n - length) // 2
        seg = np.stack([x[start: start + length] for x in stems])
        x = seg.sum(0) if i % 2 == 0 else seg[int(np.argmax((seg**2).sum(1)))]
        x = x * (10 ** (-20 / 20) / np.sqrt(np.mean(x**2) + 1e-12))
        clips.append((x / max(1.0, np.abs(x).max() / 0.99)).astype(np.float32))
    return clips


def distances(config, params, clips, sample_rate) -> list[float]:
    ae = Autoencoder(config, params)
    return [log_mel_distance(c, ae.decode(ae.encode(c[None]), jax.random.PRNGKey(i), num_samples=c.size)[0],
                             sample_rate) for i, c in enumerate(clips)]


def score_workdir(args) -> None:
    from diffariff_jax.training.checkpoint import load_ema_params, read_config

    workdir = Path(args.workdir).resolve()
    config = read_config(workdir)
    sr = int(config.data.sample_rate)
    clips = held_out_clips(args.data, sr, args.clips, args.seconds)
    baseline = [mel_codec_distance(c, sr) for c in clips]
    silence = [log_mel_distance(c, np.zeros_like(c), sr) for c in clips]
    steps = sorted(int(d.name) for d in (workdir / "checkpoints").iterdir() if d.name.isdigit())
    marker = workdir.parents[1] / ".stages" / "cae.json"
    stage = json.loads(marker.read_text()) if marker.exists() else {}
    print(f"{len(clips)} held-out clips of {args.seconds} s: baseline median {np.median(baseline):.2f} dB, "
          f"silence {np.median(silence):.2f} dB; stage CPU s {stage.get('cpu_seconds')}, wall s {stage.get('wall_seconds')}")
    curve = []
    for step in steps:
        d = distances(config, load_ema_params(workdir, step), clips, sr)
        curve.append({"step": step, "ema_median_db": float(np.median(d)), "ema_db": d})
        print(f"step {step:>6}: EMA median {np.median(d):.2f} dB (min {min(d):.2f}, max {max(d):.2f})", flush=True)
    out = Path(__file__).parent / "results" / f"cae_demo_curve{'_' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps({"args": vars(args), "baseline_db": baseline, "silence_db": silence, "stage": stage,
                               "curve": curve}, indent=1))
    print(f"wrote {out}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True, help="a rendered demo set (python -m diffariff_jax.data.render)")
    p.add_argument("--variant", default="demo", help="configs/cae.py variant")
    p.add_argument("--steps", type=int, default=1200, help="training steps (also config.train.num_steps)")
    p.add_argument("--every", type=int, default=200, help="evaluate every this many steps")
    p.add_argument("--clips", type=int, default=8, help="held-out clips")
    p.add_argument("--seconds", type=float, default=10.0, help="length of each held-out clip")
    p.add_argument("--no-recon", action="store_true", help="drop the log-mel term (consistency loss only)")
    p.add_argument("--set", action="append", default=[], help="config override KEY=PYTHON_VALUE")
    p.add_argument("--tag", default="", help="suffix of the results file")
    p.add_argument("--workdir", default="", help="score the kept checkpoints of this CAE training run instead")
    args = p.parse_args()
    if args.workdir:
        return score_workdir(args)
    config = get_config(args.variant)
    config.data.root = args.data
    config.train.num_steps = args.steps
    if args.no_recon and "recon" in config:
        config.recon.mel_weight = 0.0
    for item in args.set:
        key, value = item.split("=", 1)
        *parents, leaf = key.split(".")
        node = config
        for name in parents:
            node = node[name]
        node[leaf] = eval(value)  # a benchmark's own flag: python literals such as 1.0 or (1, 2)
    sr = int(config.data.sample_rate)
    clips = held_out_clips(args.data, sr, args.clips, args.seconds)
    baseline = [mel_codec_distance(c, sr) for c in clips]
    silence = [log_mel_distance(c, np.zeros_like(c), sr) for c in clips]
    print(f"{len(clips)} held-out clips of {args.seconds} s: mel+Griffin-Lim baseline median {np.median(baseline):.2f} dB, "
          f"silence {np.median(silence):.2f} dB", flush=True)
    task = CAETask(config)
    batches = cae_dataset(config.data, int(config.train.batch_size), seed=0).as_numpy_iterator()
    state = state_lib.create_train_state(task, jax.random.PRNGKey(0))
    step = jax.jit(lambda s, b: state_lib.train_step(task, s, b), donate_argnums=0)
    cpu0, wall0, eval_cpu, eval_wall, curve = time.process_time(), time.time(), 0.0, 0.0, []
    print("step   CPU min  wall min  EMA dB  raw dB  loss", flush=True)
    for i in range(1, args.steps + 1):
        state, metrics = step(state, next(batches))
        if i % args.every == 0 or i == args.steps:
            jax.block_until_ready(state.params)
            e_cpu, e_wall = time.process_time(), time.time()
            ema, raw = distances(config, state.ema_params, clips, sr), distances(config, state.params, clips, sr)
            eval_cpu += time.process_time() - e_cpu
            eval_wall += time.time() - e_wall
            row = {"step": i, "cpu_minutes": (time.process_time() - cpu0 - eval_cpu) / 60,
                   "wall_minutes": (time.time() - wall0 - eval_wall) / 60, "ema_median_db": float(np.median(ema)),
                   "raw_median_db": float(np.median(raw)), "ema_db": ema, "loss": float(metrics["loss"])}
            curve.append(row)
            print(f"{i:>5} {row['cpu_minutes']:>8.2f} {row['wall_minutes']:>9.2f} {row['ema_median_db']:>7.2f} "
                  f"{row['raw_median_db']:>7.2f} {row['loss']:>6.2f}", flush=True)
    out = Path(__file__).parent / "results" / f"cae_demo_curve{'_' + args.tag if args.tag else ''}.json"
    out.write_text(json.dumps({"args": vars(args), "baseline_db": baseline, "silence_db": silence,
                               "curve": curve, "note": "CPU minutes exclude evaluation; machine shared"}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
