"""JAX (jit) vs the exported PyTorch twin (eager, and torch.compile where it works on CPU), side by side.

    .venv/bin/python benchmarks/torch_vs_jax.py [--variants tiny,base] [--threads 2] [--repeats 3] [--ops]

Per variant: one UNet forward at batch 3 x 117 frames (the three CFG branches of one clip) and one
30-step Heun sampling call with two-scale CFG (context + CLAP) on 1 x 117 frames. Both frameworks run in
this one process, pinned to the same `--threads` CPUs (sched_setaffinity before either is imported, and
torch.set_num_threads), float32 compute on both sides (`base` trains in bfloat16; here both use float32).
Runs alternate JAX / torch so that load from other processes hits both alike; each figure is the
fastest of `repeats` runs. OpenMP waits passively (OMP_WAIT_POLICY=PASSIVE, unless already set): on a
shared, oversubscribed machine torch's default spin-waiting made its 2-thread forward 10x slower
(0.36 s vs 0.033 s for `tiny`), which would measure the neighbours, not the twin.
Ratio = JAX time / PyTorch time (< 1: JAX is faster). Prints a table and
writes benchmarks/results/torch_vs_jax.json.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default="tiny,base", help="comma-separated configs/ldm.py variants")
    parser.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1),
                        help="CPU threads (and cores) for both frameworks")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per measurement (fastest kept)")
    parser.add_argument("--frames", type=int, default=117, help="latent frames (117 = 10 s at 48 kHz)")
    parser.add_argument("--no-compile", action="store_true", help="skip the torch.compile measurements")
    parser.add_argument("--ops", action="store_true",
                        help="also time single ops at base's shapes (3-tap conv, GroupNorm) to see where time goes")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "torch_vs_jax.json"),
                        help="JSON output path")
    return parser.parse_args()


ARGS = parse_args()
os.sched_setaffinity(0, set(sorted(os.sched_getaffinity(0))[:ARGS.threads]))

import jax  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from configs.ldm import get_config  # noqa: E402
from diffariff_jax.diffusion import samplers  # noqa: E402
from diffariff_jax.diffusion.edm import Denoiser  # noqa: E402
from diffariff_jax.export import names  # noqa: E402
from diffariff_jax.export.torch_port import LatentDiffusion  # noqa: E402
from diffariff_jax.training.checkpoint import config_to_dict  # noqa: E402

torch.set_num_threads(ARGS.threads)


def random_params(denoiser: Denoiser, frames: int, seed: int = 0):
    template = jax.eval_shape(lambda key: denoiser.init(key, frames), jax.random.key(0))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda leaf: (0.05 * rng.standard_normal(leaf.shape)).astype(np.float32), template)


def run_once(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure(candidates: dict, repeats: int) -> dict:
    """{name: fn}: first call (compile) of each, then `repeats` rounds alternating between them."""
    first = {name: run_once(fn) for name, fn in candidates.items()}
    best = {name: float("inf") for name in candidates}
    for _ in range(repeats):
        for name, fn in candidates.items():
            best[name] = min(best[name], run_once(fn))
    return {name: {"first_call_s": first[name], "seconds": best[name]} for name in candidates}


def bench_variant(variant: str) -> list[dict]:
    config = get_config(variant)
    config.train.compute_dtype = "float32"
    denoiser = Denoiser.from_config(config)
    frames = ARGS.frames
    params = jax.device_put(random_params(denoiser, frames))
    twin = LatentDiffusion(config_to_dict(config)).eval()
    twin.denoiser.model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in
                                         names.flax_to_torch(jax.device_get(params)).items()})
    rng = np.random.default_rng(0)
    x, ctx = (rng.standard_normal((3, frames, 64)).astype(np.float32) for _ in range(2))
    clap = rng.standard_normal((3, config.model.clap_dim)).astype(np.float32)
    sigma, dropped = np.array([0.5, 2.0, 10.0], np.float32), np.array([True, True, False])
    tx, tctx, tclap, tsig, tdrop = (torch.from_numpy(a) for a in (x, ctx, clap, sigma, dropped))

    forward_jax = jax.jit(lambda p, *a: denoiser(p, a[0], a[1], context=a[2], clap=a[3], clap_dropped=a[4]))
    forward = {"jax": lambda: forward_jax(params, x, sigma, ctx, clap, dropped).block_until_ready()}
    forward["torch eager"] = lambda: twin.denoiser(tx, tsig, tctx, tclap, tdrop)
    compiled, compile_s = None, None
    if not ARGS.no_compile:
        try:
            compiled = torch.compile(twin.denoiser)
            with torch.no_grad():
                compile_s = run_once(lambda: compiled(tx, tsig, tctx, tclap, tdrop))
            forward["torch.compile"] = lambda: compiled(tx, tsig, tctx, tclap, tdrop)
        except Exception as e:  # torch.compile needs a working C++ toolchain on CPU; report why not
            print(f"torch.compile unavailable: {type(e).__name__}: {str(e).splitlines()[0][:120]}")
            compiled = None

    def no_grad(fn):
        def run():
            with torch.no_grad():
                return fn()
        return run

    forward = {k: (v if k == "jax" else no_grad(v)) for k, v in forward.items()}
    rows = [{"variant": variant, "what": f"UNet forward, batch 3 x {frames} frames", "framework": k, **v}
            for k, v in measure(forward, ARGS.repeats).items()]
    for row in rows:  # torch.compile's first call (the compilation) happened before measure()
        if row["framework"] == "torch.compile":
            row["first_call_s"] = compile_s
    print(f"{variant}: forward done {[(r['framework'], round(r['seconds'], 4)) for r in rows]}", flush=True)

    cfg = config.sampler
    c1, a1 = ctx[:1], clap[:1]
    samples = {"jax": lambda: samplers.sample(denoiser, params, jax.random.key(1), num_frames=frames, sampler_cfg=cfg,
                                              context=c1, clap=a1).block_until_ready(),
               "torch eager": lambda: twin.sample(num_frames=frames, context=tctx[:1], clap=tclap[:1])}
    if compiled is not None:
        from diffariff_jax.export.torch_port import sampling
        samples["torch.compile"] = lambda: sampling.sample(compiled, num_frames=frames, context=tctx[:1],
                                                           clap=tclap[:1], **twin.sampler_defaults)
    what = f"sample {cfg.steps} steps {cfg.solver} + CFG (3 branches), 1 x {frames} frames"
    rows += [{"variant": variant, "what": what, "framework": k, **v}
             for k, v in measure(samples, max(1, ARGS.repeats - 1)).items()]
    return rows


def bench_ops() -> list[dict]:
    """One 3-tap convolution and one GroupNorm(32) alone, at the (frames, channels) of base's levels."""
    import flax.linen as nn

    rng, rows = np.random.default_rng(0), []
    conv_jax = jax.jit(lambda x, w: jax.lax.conv_general_dilated(x, w, (1,), "SAME",
                                                                 dimension_numbers=("NWC", "WIO", "NWC")))
    for frames, c in ((120, 128), (60, 256), (30, 256), (15, 512)):
        x = rng.standard_normal((3, frames, c)).astype(np.float32)
        w = (rng.standard_normal((3, c, c)) / np.sqrt(3 * c)).astype(np.float32)
        norm_params = {"params": {"scale": np.ones(c, np.float32), "bias": np.zeros(c, np.float32)}}
        norm_jax = jax.jit(lambda x, p: nn.GroupNorm(32).apply(p, x))
        tx, tw = torch.from_numpy(x.transpose(0, 2, 1).copy()), torch.from_numpy(w.transpose(2, 1, 0).copy())
        norm_torch = torch.nn.GroupNorm(32, c)
        for op, fns in (("conv k=3", {"jax": lambda: conv_jax(x, w).block_until_ready(),
                                      "torch eager": lambda: torch.nn.functional.conv1d(tx, tw, padding=1)}),
                        ("GroupNorm(32)", {"jax": lambda: norm_jax(x, norm_params).block_until_ready(),
                                           "torch eager": lambda: norm_torch(tx)})):
            with torch.no_grad():
                timed = measure(fns, 20)
            rows += [{"variant": "ops", "what": f"{op}, 3 x {frames} frames x {c} ch", "framework": k, **v}
                     for k, v in timed.items()]
    return rows


def main() -> None:
    rows = []
    for variant in ARGS.variants.split(","):
        rows += bench_variant(variant)
    if ARGS.ops:
        rows += bench_ops()
    print(f"\n{'variant':8s} {'what':58s} {'framework':14s} {'first (s)':>10s} {'best (s)':>10s} {'JAX/this':>9s}")
    for r in rows:
        jax_s = next(o["seconds"] for o in rows if o["variant"] == r["variant"] and o["what"] == r["what"]
                     and o["framework"] == "jax")
        r["jax_over_this"] = jax_s / r["seconds"]
        print(f"{r['variant']:8s} {r['what']:58s} {r['framework']:14s} {r['first_call_s']:10.3f} "
              f"{r['seconds']:10.4g} {r['jax_over_this']:9.2f}")
    result = {"benchmark": "torch_vs_jax", "threads": ARGS.threads, "omp_wait_policy": os.environ["OMP_WAIT_POLICY"],
              "cpus": sorted(os.sched_getaffinity(0)),
              "torch": torch.__version__, "jax": jax.__version__, "compute_dtype": "float32",
              "load_average_1min": os.getloadavg()[0], "rows": rows}
    Path(ARGS.out).parent.mkdir(parents=True, exist_ok=True)
    Path(ARGS.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {ARGS.out} ({ARGS.threads} threads for both; load average {result['load_average_1min']:.1f} "
          f"on a shared {os.cpu_count()}-CPU machine)")


if __name__ == "__main__":
    main()
