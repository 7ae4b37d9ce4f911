"""CAE size and cost: parameters per variant; GFLOP of encoding and of one decoding step per 10 s of
48 kHz audio (analytic count vs XLA's cost analysis of the compiled function); CPU time of each.

    python benchmarks/cae_size.py [--variants tiny,m2l] [--time-seconds 1.0]

Writes benchmarks/results/cae_size.json. CPU times are measured on a `--time-seconds` clip (m2l on a
shared 2-core machine is slow) and scaled linearly to 10 s: every layer is per-frame (convolutions,
attention along frequency within a frame), so cost is linear in length. One decoding step = latent
up-path + one UNet evaluation (the STFT inverse is not counted in the GFLOP).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

from configs.cae import get_config  # noqa: E402
from diffariff_jax.audio.stft import Stft  # noqa: E402
from diffariff_jax.diffusion.consistency import Consistency  # noqa: E402
from diffariff_jax.models.cae import CAE, CAEShape, analytic_flops  # noqa: E402

SAMPLE_RATE = 48000
SECONDS = 10.0


def functions(config):
    shape, stft = CAEShape.from_config(config.model), Stft.from_config(config.stft)
    cons, model = Consistency.from_config(config.consistency), CAE(CAEShape.from_config(config.model))

    def encode(params, spec):  # [1, 1024, frames, 2] -> raw latents
        return model.apply(params, spec, method=CAE.encode)

    def decode_step(params, raw, x):  # one consistency step at sigma_max
        pyramid = model.apply(params, raw, method=CAE.pyramid)
        f = cons.precondition(lambda x_in, s: model.apply(params, x_in, s, pyramid, method=CAE.network))
        return f(x, jnp.full((x.shape[0],), cons.sigma_max))

    return shape, stft, encode, decode_step


def inputs(shape, frames):
    spec = jnp.zeros((1, shape.freq_bins, frames, shape.data_channels), jnp.float32)
    raw = jnp.zeros((1, frames // shape.time_reduction, shape.latent_dim), jnp.float32)
    return spec, raw


def xla_flops(fn, *args) -> float:
    """XLA's HLO cost analysis of the lowered (not compiled: m2l at 10 s compiles slowly on CPU) function."""
    cost = jax.jit(fn).lower(*args).cost_analysis()
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float(cost.get("flops", float("nan")))


def cpu_seconds(fn, *args) -> tuple[float, float]:
    """(process CPU seconds, wall seconds) of one call after compilation."""
    jitted = jax.jit(fn)
    jax.block_until_ready(jitted(*args))
    c0, w0 = time.process_time(), time.perf_counter()
    jax.block_until_ready(jitted(*args))
    return time.process_time() - c0, time.perf_counter() - w0


def run(variant: str, time_seconds: float) -> dict:
    config = get_config(variant)
    shape, stft, encode, decode_step = functions(config)
    block = stft.hop * shape.time_reduction
    latent_frames = max(1, int(np.ceil(SECONDS * SAMPLE_RATE / block)))
    frames = latent_frames * shape.time_reduction
    spec, raw = inputs(shape, frames)
    params = jax.jit(CAE(shape).init)(jax.random.PRNGKey(0), spec[:, :, : 2 * shape.time_reduction],
                                      jnp.ones((1,)))
    n_params = sum(int(np.size(v)) for v in jax.tree.leaves(params))
    fl = analytic_flops(shape, frames)
    row = {
        "variant": variant, "params": n_params, "latent_frames_10s": latent_frames, "stft_frames_10s": frames,
        "encode_gflop_analytic": fl["encode"] / 1e9,
        "decode_step_gflop_analytic": (fl["pyramid"] + fl["network"]) / 1e9,
        "encode_gflop_xla": xla_flops(encode, params, spec) / 1e9,
        "decode_step_gflop_xla": xla_flops(decode_step, params, raw, spec) / 1e9,
    }
    t_frames = max(1, int(np.ceil(time_seconds * SAMPLE_RATE / block))) * shape.time_reduction
    t_spec, t_raw = inputs(shape, t_frames)
    scale = frames / t_frames
    enc_cpu, enc_wall = cpu_seconds(encode, params, t_spec)
    dec_cpu, dec_wall = cpu_seconds(decode_step, params, t_raw, t_spec)
    row.update({
        "timed_seconds_of_audio": t_frames * stft.hop / SAMPLE_RATE,
        "encode_cpu_s_per_10s": enc_cpu * scale, "encode_wall_s_per_10s": enc_wall * scale,
        "decode_step_cpu_s_per_10s": dec_cpu * scale, "decode_step_wall_s_per_10s": dec_wall * scale,
    })
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--variants", default="tiny,m2l")
    parser.add_argument("--time-seconds", type=float, default=1.0)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "cae_size.json"))
    args = parser.parse_args()
    rows = [run(v, args.time_seconds) for v in args.variants.split(",")]
    cols = ["variant", "params", "latent_frames_10s", "encode_gflop_analytic", "encode_gflop_xla",
            "decode_step_gflop_analytic", "decode_step_gflop_xla", "encode_cpu_s_per_10s",
            "decode_step_cpu_s_per_10s"]
    print(" | ".join(cols))
    for r in rows:
        print(" | ".join(f"{r[c]:.4g}" if isinstance(r[c], float) else str(r[c]) for c in cols))
    out = {"device": str(jax.devices()[0].device_kind), "cpu_count": os.cpu_count(),
           "note": "shared 2-core machine (other jobs running): CPU times are noisy", "rows": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(out, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
