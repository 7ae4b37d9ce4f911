"""GPU suite for the first lease: what one card gives the paper models, in one command (<= 8 min on an H100).

    python benchmarks/gpu_suite.py [--out DIR]   # DIR: $OUT when set, else benchmarks/results
    python benchmarks/gpu_suite.py --smoke       # tiny shapes on the CPU: proves the suite runs (tested)

Measures, on the first local device:
  ceilings      bf16 matmul TFLOP/s and copy GB/s (read + write), the roofs everything else is read against;
  train step    the paper LDM through the trainer's own jitted step (`loop.make_train_step`) at batch
                32..256: ms/step, examples/s, MFU against the card's bf16 peak, peak memory, compile time;
  optimizer     the AdamW + EMA update alone (`state.make_optimizer`, `state.ema_update`) on the paper's params;
  sampling      one 10 s clip, 30 Heun steps with the three CFG branches batched, against the weight-read
                floor (parameters x 2 bytes x network calls / measured copy bandwidth); throughput at 64 clips;
  CAE           m2l `Autoencoder.encode` / `decode` of one 10 s clip (random weights: same cost).
Times are medians of repeated runs after a warm-up; compile times are lower + compile. Batch sizes left
when --budget_s runs out are recorded as skipped. Prints a table and writes gpu_suite[_smoke].json.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from configs import ldm as ldm_configs  # noqa: E402
from diffariff_jax.training import loop  # noqa: E402
from diffariff_jax.training import mesh as mesh_lib  # noqa: E402
from diffariff_jax.training import state as state_lib  # noqa: E402
from diffariff_jax.training.tasks import make_task  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"
SAMPLE_RATE, CLIP_SECONDS = 48000, 10.0


def median_seconds(fn: Callable[[], Any], repeats: int) -> float:
    """Median wall time of fn() (its result blocked on) over `repeats` runs after one warm-up run."""
    jax.block_until_ready(fn())
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def peak_memory(device: jax.Device) -> int | None:
    stats = device.memory_stats() if hasattr(device, "memory_stats") else None
    return int(stats["peak_bytes_in_use"]) if stats and "peak_bytes_in_use" in stats else None


def ceilings(n: int, copy_bytes: int, repeats: int) -> dict[str, float]:
    """bf16 [n, n] @ [n, n] TFLOP/s and elementwise copy bandwidth GB/s (bytes read + written)."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.bfloat16)
    matmul = jax.jit(lambda x: x @ x)
    t_mm = median_seconds(lambda: matmul(a), repeats)
    x = jnp.ones((copy_bytes // 4,), jnp.float32)
    copy = jax.jit(lambda v: v * 2.0)
    t_copy = median_seconds(lambda: copy(x), repeats)
    return {"matmul_tflops": 2 * n**3 / t_mm / 1e12, "copy_gbps": 2 * x.nbytes / t_copy / 1e9,
            "matmul_n": n, "copy_bytes": int(x.nbytes)}


def random_batch(task: Any, batch: int, mesh) -> dict[str, jax.Array]:
    rng = np.random.default_rng(0)
    host = {k: (0.5 * rng.standard_normal(v.shape)).astype(np.float32) for k, v in task.dummy_batch(batch).items()}
    return mesh_lib.make_global_batch(host, mesh)


def train_step(config, batch: int, mesh, repeats: int) -> dict[str, Any]:
    """The trainer's step at `batch`: compile time, ms/step, examples/s, MFU, peak memory."""
    config.train.batch_size = batch
    task = make_task(config)
    _, shardings = loop.abstract_state(task, config, mesh)
    state = loop.init_state(task, config, shardings)
    data = random_batch(task, batch, mesh)
    step = loop.make_train_step(task, shardings, mesh)
    start = time.perf_counter()
    compiled = step.lower(state, data).compile()
    compile_s = time.perf_counter() - start
    holder = {"state": state}

    def run():  # the state is donated: thread it through like the trainer does
        holder["state"], metrics = compiled(holder["state"], data)
        return metrics

    seconds = median_seconds(run, repeats)
    device = mesh.devices.flat[0]
    peak = loop.peak_flops_per_device(device, float(config.train.peak_flops)) * mesh.size
    flops = float(task.flops_per_example()) * batch
    return {"batch": batch, "compile_s": compile_s, "ms_per_step": 1e3 * seconds, "examples_per_s": batch / seconds,
            "mfu": flops / seconds / peak if peak else None, "peak_memory_bytes": peak_memory(device),
            "state": holder["state"]}


def optimizer_update(config, state, repeats: int) -> dict[str, float]:
    """AdamW (+ clipping, weight decay) and the EMA on the paper params alone, grads = params."""
    optimizer = state_lib.make_optimizer(config.train)

    @jax.jit
    def update(params, opt_state, ema):
        updates, opt_state = optimizer.update(params, opt_state, params)
        params = jax.tree.map(lambda p, u: p + u, params, updates)
        return params, opt_state, state_lib.ema_update(ema, params, float(config.train.ema_decay))

    seconds = median_seconds(lambda: update(state.params, state.opt_state, state.ema_params), repeats)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(state.params))
    # Read params, grads, 2 moments, EMA; write params, 2 moments, EMA: 9 float32 arrays per parameter.
    return {"ms": 1e3 * seconds, "params": n_params, "gbps_at_9_f32_arrays": 9 * 4 * n_params / seconds / 1e9}


def sampling(config, ema_params, batch: int, copy_gbps: float, repeats: int) -> dict[str, float]:
    """Latency of `batch` clips (config.sampler: 30 Heun steps, three CFG branches in one call)."""
    from diffariff_jax.diffusion import samplers

    task = make_task(config)
    frames = task.crop_frames
    inputs = task.dummy_batch(batch)
    key = jax.random.PRNGKey(0)
    run = lambda: samplers.sample(task.denoiser, ema_params, key, num_frames=frames,  # noqa: E731
                                  sampler_cfg=config.sampler, context=inputs["context"], clap=inputs["clap"])
    start = time.perf_counter()
    jax.block_until_ready(run())
    first_s = time.perf_counter() - start
    seconds = median_seconds(run, repeats)
    steps = int(config.sampler.steps)
    calls = 2 * steps - 1 if config.sampler.solver == "heun" else steps
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(ema_params))
    floor = n_params * 2 * calls / (copy_gbps * 1e9)
    return {"batch": batch, "frames": frames, "network_calls": calls, "first_call_s": first_s,
            "latency_s": seconds, "clips_per_s": batch / seconds, "weight_read_floor_s": floor,
            "latency_over_floor": seconds / floor}


def cae_codec(variant: str, repeats: int, seconds: float) -> dict[str, float]:
    """m2l (or tiny) Autoencoder encode and one-step decode of one clip of `seconds` seconds."""
    from diffariff_jax.autoencoder import Autoencoder
    from diffariff_jax.testing.random_cae import random_cae

    config, params = random_cae(variant)
    cae = Autoencoder(config, jax.device_put(params))
    wav = (0.1 * np.random.default_rng(0).standard_normal((1, int(seconds * SAMPLE_RATE)))).astype(np.float32)
    start = time.perf_counter()
    latents = cae.encode(wav)
    first_encode = time.perf_counter() - start
    encode_s = median_seconds(lambda: cae.encode(wav), repeats)
    key = jax.random.PRNGKey(0)
    start = time.perf_counter()
    cae.decode(latents, key)
    first_decode = time.perf_counter() - start
    decode_s = median_seconds(lambda: cae.decode(latents, key), repeats)
    return {"variant": variant, "clip_s": seconds, "encode_s": encode_s, "decode_s": decode_s,
            "encode_first_call_s": first_encode, "decode_first_call_s": first_decode}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--smoke", action="store_true", help="tiny shapes on the CPU (checks the suite runs)")
    parser.add_argument("--out", default="", help="folder for the JSON (default $OUT, else benchmarks/results)")
    parser.add_argument("--batches", default="", help="train-step batch sizes, comma-separated "
                        "(default 32,64,128,256; smoke 4,8)")
    parser.add_argument("--budget_s", type=float, default=420.0,
                        help="start no further train-step batch size after this many seconds")
    parser.add_argument("--repeats", type=int, default=0, help="timed runs per measurement (default 10; smoke 2)")
    args = parser.parse_args()
    began = time.perf_counter()
    variant = "tiny" if args.smoke else "paper"
    batches = [int(b) for b in (args.batches or ("4,8" if args.smoke else "32,64,128,256")).split(",")]
    repeats = args.repeats or (2 if args.smoke else 10)
    device = jax.devices()[0]
    mesh = mesh_lib.make_mesh(ldm_configs.get_config(variant).mesh, [device])
    result: dict[str, Any] = {"device": device.device_kind, "platform": device.platform, "smoke": args.smoke,
                              "ldm": variant, "jax": jax.__version__, "host": platform.node()}
    result["ceilings"] = ceilings(256 if args.smoke else 8192, 2**22 if args.smoke else 2**31, repeats)
    result["train"], state = [], None
    for batch in batches:
        if time.perf_counter() - began > args.budget_s:
            result["train"].append({"batch": batch, "skipped": f"--budget_s {args.budget_s:.0f} s reached"})
            continue
        row = train_step(ldm_configs.get_config(variant), batch, mesh, repeats)
        state = row.pop("state")
        result["train"].append(row)
    config = ldm_configs.get_config(variant)
    if state is None:  # every batch size skipped: the remaining measurements still need params
        task = make_task(config)
        state = loop.init_state(task, config, loop.abstract_state(task, config, mesh)[1])
    result["optimizer_ema"] = optimizer_update(config, state, repeats)
    copy_gbps = result["ceilings"]["copy_gbps"]
    result["sampling_one_clip"] = sampling(config, state.ema_params, 1, copy_gbps, repeats)
    result["sampling_64_clips"] = sampling(config, state.ema_params, 4 if args.smoke else 64, copy_gbps,
                                           max(1, repeats // 3))
    result["cae"] = cae_codec("tiny" if args.smoke else "m2l", repeats, 0.5 if args.smoke else CLIP_SECONDS)
    result["total_s"] = time.perf_counter() - began
    print(format_table(result))
    out = Path(args.out or os.environ.get("OUT") or RESULTS)
    out.mkdir(parents=True, exist_ok=True)
    path = out / ("gpu_suite_smoke.json" if args.smoke else "gpu_suite.json")
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")


def format_table(r: dict[str, Any]) -> str:
    c = r["ceilings"]
    lines = [f"{r['device']} ({r['platform']}), LDM {r['ldm']}, jax {r['jax']}" + (" [smoke]" if r["smoke"] else ""),
             f"ceilings: bf16 matmul {c['matmul_tflops']:.1f} TFLOP/s (n={c['matmul_n']}), "
             f"copy {c['copy_gbps']:.1f} GB/s",
             f"{'batch':>6} {'ms/step':>9} {'examples/s':>11} {'MFU':>6} {'peak GiB':>9} {'compile s':>10}"]
    for row in r["train"]:
        if "skipped" in row:
            lines.append(f"{row['batch']:>6} skipped: {row['skipped']}")
            continue
        mfu = f"{100 * row['mfu']:5.1f}%" if row["mfu"] else f"{'-':>6}"
        mem = f"{row['peak_memory_bytes'] / 2**30:9.2f}" if row["peak_memory_bytes"] else f"{'-':>9}"
        lines.append(f"{row['batch']:>6} {row['ms_per_step']:9.2f} {row['examples_per_s']:11.1f} {mfu} {mem} "
                     f"{row['compile_s']:10.1f}")
    o = r["optimizer_ema"]
    lines.append(f"optimizer + EMA alone: {o['ms']:.2f} ms for {o['params']:,} params "
                 f"({o['gbps_at_9_f32_arrays']:.0f} GB/s at 9 float32 arrays per parameter)")
    for name in ("sampling_one_clip", "sampling_64_clips"):
        s = r[name]
        lines.append(f"sampling {s['batch']} clip(s) of {s['frames']} frames, {s['network_calls']} calls x 3 CFG "
                     f"branches: {s['latency_s']:.3f} s ({s['clips_per_s']:.2f} clips/s; weight-read floor "
                     f"{s['weight_read_floor_s']:.3f} s, x{s['latency_over_floor']:.1f}; first call "
                     f"{s['first_call_s']:.1f} s)")
    k = r["cae"]
    lines.append(f"CAE {k['variant']} per {k['clip_s']:g} s clip: encode {k['encode_s']:.3f} s, decode "
                 f"{k['decode_s']:.3f} s (first calls {k['encode_first_call_s']:.1f} / {k['decode_first_call_s']:.1f} s)")
    lines.append(f"total {r['total_s']:.0f} s")
    return "\n".join(lines)


if __name__ == "__main__":
    main()
