"""LDM size and cost: parameters and forward GFLOP of the 1-D UNet per variant at 117 frames (10 s at
48 kHz), the analytic count (diffariff_jax/models/unet1d_cost.py) checked against jax.eval_shape (params)
and XLA's cost analysis of the lowered forward pass (FLOPs). Nothing is allocated: params are abstract.

    .venv/bin/python benchmarks/ldm_size.py [--variants tiny,base,paper] [--frames 117]

Prints a table and writes benchmarks/results/ldm_size.json. The analytic FLOPs count multiply-adds of
convolutions, dense layers and attention over every output position; XLA adds norms, activations and the
elementwise preconditioning but leaves out the multiply-adds with the zero "SAME" padding at sequence edges
(3-tap convs on 15 frames at the bottom level lose 2 of 45 taps), so the two agree to within ~3%.
One sampling step with CFG is 3 forward passes (Heun: 6, one fewer on the last step).
"""
from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from configs.ldm import get_config  # noqa: E402
from diffariff_jax.diffusion.edm import Denoiser  # noqa: E402
from diffariff_jax.models.unet1d_cost import unet1d_cost  # noqa: E402


def measure(variant: str, frames: int) -> dict:
    config = get_config(variant)
    config.train.compute_dtype = "float32"  # FLOP counts do not depend on the dtype
    denoiser = Denoiser.from_config(config)
    params = jax.eval_shape(lambda k: denoiser.init(k, frames), jax.random.key(0))
    eval_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))
    x = jax.ShapeDtypeStruct((1, frames, denoiser.latent_dim), jnp.float32)
    clap = jax.ShapeDtypeStruct((1, denoiser.clap_dim), jnp.float32)

    def forward(params, x, context, clap):
        return denoiser(params, x, jnp.ones((1,)), context=context, clap=clap,
                        clap_dropped=jnp.zeros((1,), bool))

    cost = jax.jit(forward).lower(params, x, x, clap).cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    analytic = unet1d_cost(config.model, frames)
    return {"variant": variant, "frames": frames, "params_analytic": analytic.params,
            "params_eval_shape": eval_params, "gflop_analytic": analytic.flops / 1e9,
            "gflop_xla": float(cost["flops"]) / 1e9,
            "xla_over_analytic": float(cost["flops"]) / analytic.flops}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", default="tiny,base,paper")
    parser.add_argument("--frames", type=int, default=117)
    parser.add_argument("--out", default=str(Path(__file__).with_name("results") / "ldm_size.json"))
    args = parser.parse_args()
    rows = [measure(v, args.frames) for v in args.variants.split(",")]
    print(f"{'variant':8s} {'frames':>6s} {'params (analytic)':>18s} {'params (eval_shape)':>20s} "
          f"{'GFLOP analytic':>15s} {'GFLOP XLA':>10s} {'XLA/analytic':>13s}")
    for r in rows:
        print(f"{r['variant']:8s} {r['frames']:6d} {r['params_analytic']:18,d} {r['params_eval_shape']:20,d} "
              f"{r['gflop_analytic']:15.3f} {r['gflop_xla']:10.3f} {r['xla_over_analytic']:13.3f}")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"benchmark": "ldm_size", "rows": rows}, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
