"""Generation speed per 10 s clip through `Accompanist.generate_batch` (context + CLAP, two-scale CFG):
denoiser time, CAE decode time, total; sampler overhead; compilations; clips/s in batches of 8 vs 1.

    .venv/bin/python benchmarks/generate_speed.py [--variants tiny,base] [--steps 30] [--base-steps 3]

Random weights with the real shapes (no init, no training): speed does not depend on the values. The CAE is
configs/cae.py `tiny` for every LDM (m2l decodes 10 s in ~43 s on this CPU; see benchmarks/cae_size.py).
  - denoise call: one guided evaluation (3 branches stacked in one network call), fastest of `repeats`;
  - sampler overhead = sampler time / (denoiser calls x one call), calls = 2 steps - 1 with Heun;
  - compilations: new sampler programs when a batch of clips is generated (must be exactly 1);
  - clips/s: generate_batch (encode + sample + decode) at batch 1 and batch 8.
Every time is the fastest of `repeats` runs after compiling (other processes only ever add time); the
machine is shared and loaded, so compare the ratios, which are measured side by side.
"""
from __future__ import annotations

import argparse
import json
import os
import time
import types
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from configs.ldm import get_config  # noqa: E402
from diffariff_jax.accompanist import Accompanist, SamplerSettings  # noqa: E402
from diffariff_jax.autoencoder import Autoencoder  # noqa: E402
from diffariff_jax.diffusion import samplers  # noqa: E402
from diffariff_jax.testing.random_cae import random_cae, random_params_like  # noqa: E402

SAMPLE_RATE, CLIP_SECONDS = 48000, 10.0


def fastest(fn, repeats: int) -> float:
    jax.block_until_ready(fn())  # compile
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - start)
    return best


def accompanist(variant: str, cae: Autoencoder) -> Accompanist:
    config = get_config(variant)
    config.data.crop_frames = cae.frames_for(int(CLIP_SECONDS * SAMPLE_RATE))  # one window = the clip
    from diffariff_jax.diffusion.edm import Denoiser

    shapes = jax.eval_shape(lambda k: Denoiser.from_config(config).init(k, 8), jax.random.key(0))
    params = jax.tree.map(jnp.asarray, random_params_like(shapes))
    # The benchmark never embeds prompts: a stand-in with the CLAP width is all generate_batch needs.
    clap = types.SimpleNamespace(dim=int(config.model.clap_dim), name="random")
    return Accompanist(config, params, cae, clap, step=0, source=f"random {variant}")


def measure(acc: Accompanist, steps: int, repeats: int) -> dict:
    samples = int(CLIP_SECONDS * SAMPLE_RATE)
    frames = acc.frames_for(samples)
    rng = np.random.default_rng(0)
    settings = SamplerSettings(steps=steps)
    sampler_cfg = settings.sampler_config(acc.config.sampler)
    row: dict = {"variant": acc.config.variant, "steps": steps, "frames": frames}
    for batch in (1, 8):
        context = (0.1 * rng.standard_normal((batch, samples))).astype(np.float32)
        clap = rng.standard_normal((batch, acc.clap_dim)).astype(np.float32)
        latents = jnp.asarray(acc.cae.encode(context))
        x = jax.random.normal(jax.random.key(1), latents.shape)
        call = jax.jit(lambda x, s, c, a: samplers.guided_denoiser(acc.denoiser, acc.params, c, a, 1.25, 1.25)(x, s))
        t_call = fastest(lambda: call(x, jnp.float32(1.0), latents, clap), repeats)
        before = samplers._sample_jit._cache_size()
        run = lambda: samplers.sample(acc.denoiser, acc.params, jax.random.key(2), num_frames=frames,  # noqa: E731
                                      sampler_cfg=sampler_cfg, context=latents, clap=clap)
        t_sampler = fastest(run, repeats)
        compiles = samplers._sample_jit._cache_size() - before
        out = np.asarray(run())
        t_decode = fastest(lambda: acc.cae.decode(out, jax.random.key(3), num_samples=samples), repeats)
        t_total = fastest(lambda: acc.generate_batch(context, clap, settings=settings), repeats)
        calls = 2 * steps - 1
        row[f"b{batch}"] = {
            "denoise_call_s": t_call, "denoiser_s_per_clip": calls * t_call / batch,
            "sampler_s_per_clip": t_sampler / batch, "decode_s_per_clip": t_decode / batch,
            "total_s_per_clip": t_total / batch, "sampler_overhead": t_sampler / (calls * t_call),
            "compilations": compiles, "clips_per_s": batch / t_total}
    row["batch8_speedup"] = row["b8"]["clips_per_s"] / row["b1"]["clips_per_s"]
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default="tiny,base", help="LDM variants of configs/ldm.py")
    parser.add_argument("--steps", type=int, default=30, help="Heun steps for tiny")
    parser.add_argument("--base-steps", type=int, default=3, help="Heun steps for the other variants (CPU time)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per measurement (fastest kept)")
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "generate_speed.json"))
    args = parser.parse_args()
    cae = Autoencoder(*random_cae("tiny"))
    rows = [measure(accompanist(v, cae), args.steps if v == "tiny" else args.base_steps, args.repeats)
            for v in args.variants.split(",")]
    head = ("variant", "steps", "batch", "denoiser s/clip", "decode s/clip", "total s/clip", "overhead",
            "compiles", "clips/s")
    print(" | ".join(head))
    for row in rows:
        for b in ("b1", "b8"):
            r = row[b]
            print(f"{row['variant']} | {row['steps']} | {b[1:]} | {r['denoiser_s_per_clip']:.3f} | "
                  f"{r['decode_s_per_clip']:.3f} | {r['total_s_per_clip']:.3f} | {r['sampler_overhead']:.3f} | "
                  f"{r['compilations']} | {r['clips_per_s']:.3f}")
        print(f"{row['variant']}: clips/s at batch 8 / batch 1 = {row['batch8_speedup']:.2f}")
    load = os.getloadavg()[0]
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"rows": rows, "load_average_1min": load, "cpu_count": os.cpu_count(),
                                          "note": "random weights, tiny CAE, shared loaded CPU"}, indent=2))
    print(f"load average {load:.1f} on {os.cpu_count()} cores; wrote {args.out}")


if __name__ == "__main__":
    main()
