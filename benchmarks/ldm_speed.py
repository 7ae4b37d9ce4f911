"""CPU time of the tiny LDM: one train step (batch of config.train.batch_size crops) and one 30-step
Heun sampling call with two-scale CFG (context + CLAP: 3 branches per evaluation), after compilation.

    .venv/bin/python benchmarks/ldm_speed.py [--variant tiny] [--repeats 5] [--sample-frames 16,117]

Each timing is the fastest of `repeats` runs (other processes on a shared machine only ever add time);
compile times are reported separately. Prints a table and writes benchmarks/results/ldm_speed.json.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs.ldm import get_config  # noqa: E402
from diffariff_jax.diffusion import samplers  # noqa: E402
from diffariff_jax.training import state as state_lib  # noqa: E402
from diffariff_jax.training.ldm_task import LdmTask  # noqa: E402


def timed(fn, repeats: int) -> tuple[float, float]:
    """(first call incl. compile, fastest later call) in seconds."""
    start = time.perf_counter()
    jax.block_until_ready(fn())
    first = time.perf_counter() - start
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return first, best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variant", default="tiny")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sample-frames", default="16,117")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "ldm_speed.json"))
    args = parser.parse_args()

    config = get_config(args.variant)
    task = LdmTask(config)
    state = state_lib.create_train_state(task, jax.random.key(0))
    rng = np.random.default_rng(0)
    batch = {k: rng.normal(size=v.shape).astype(np.float32)
             for k, v in task.dummy_batch(config.train.batch_size).items()}
    step = jax.jit(lambda s, b: state_lib.train_step(task, s, b))
    holder = {"state": state}

    def train_once():
        holder["state"], metrics = step(holder["state"], batch)
        return metrics["loss"]

    rows = []
    compile_s, step_s = timed(train_once, args.repeats)
    rows.append({"what": f"train step, batch {config.train.batch_size} x {config.data.crop_frames} frames",
                 "first_call_s": compile_s, "seconds": step_s})
    for frames in (int(f) for f in args.sample_frames.split(",")):
        context = rng.normal(size=(1, frames, 64)).astype(np.float32)
        clap = rng.normal(size=(1, config.model.clap_dim)).astype(np.float32)

        def sample_once():
            return samplers.sample(task.denoiser, holder["state"].ema_params, jax.random.key(1),
                                   num_frames=frames, sampler_cfg=config.sampler, context=context, clap=clap)

        compile_s, sample_s = timed(sample_once, args.repeats)
        what = f"sample {config.sampler.steps} steps {config.sampler.solver} + CFG, 1 x {frames} frames"
        rows.append({"what": what,
                     "first_call_s": compile_s, "seconds": sample_s})

    print(f"{'what':55s} {'first call (s)':>15s} {'after compile (s)':>18s}")
    for r in rows:
        print(f"{r['what']:55s} {r['first_call_s']:15.2f} {r['seconds']:18.4f}")
    result = {"benchmark": "ldm_speed", "variant": args.variant, "device": jax.devices()[0].device_kind,
              "cpu_count": os.cpu_count(), "load_average_1min": os.getloadavg()[0], "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out} (load average {result['load_average_1min']:.1f} on {os.cpu_count()} CPUs)")


if __name__ == "__main__":
    main()
