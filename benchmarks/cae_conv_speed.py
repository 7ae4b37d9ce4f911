"""CAE convolutions: models/conv2d.Conv2d (shifted sums at <= 16 in x out channels) against flax.linen.Conv.

    python benchmarks/cae_conv_speed.py [--variant demo] [--batch 8] [--frames 48] [--repeats 3]

Side by side in one process: (1) each few-channel convolution shape of the `tiny`/`demo` CAE alone, (2) the
CAE encoder (what precompute runs), (3) the CAE training step (forward + backward of encoder and decoder),
each with Conv2d and with every Conv2d swapped for flax.linen.Conv (same parameters). CPU seconds per call
(this process, all threads) and their ratio; on a machine shared with other jobs trust the ratios.
Prints a table and writes benchmarks/results/cae_conv_speed.json.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import time
from pathlib import Path

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from diffariff_jax.models import cae as cae_lib
from diffariff_jax.models import cae_blocks
from diffariff_jax.models.conv2d import Conv2d

RESULTS = Path(__file__).resolve().parent / "results" / "cae_conv_speed.json"


@contextlib.contextmanager
def flax_convs():
    """Every Conv2d of the CAE built as flax.linen.Conv (same names, shapes and arguments)."""
    saved = cae_lib.Conv2d, cae_blocks.Conv2d
    cae_lib.Conv2d = cae_blocks.Conv2d = nn.Conv
    try:
        yield
    finally:
        cae_lib.Conv2d, cae_blocks.Conv2d = saved


def cpu_seconds(fn, args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))  # compile
    start = time.process_time()
    for _ in range(repeats):
        jax.block_until_ready(fn(*args))
    return (time.process_time() - start) / repeats


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--variant", default="demo", help="configs/cae.py variant (random weights)")
    ap.add_argument("--batch", type=int, default=8, help="waveforms per call")
    ap.add_argument("--frames", type=int, default=48, help="latent frames per waveform (4096 samples each)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    from diffariff_jax.testing.random_cae import random_cae
    from diffariff_jax.training import state as state_lib
    from diffariff_jax.training.cae_task import CAETask

    rows = []
    bins, stft_frames = 1024, 8 * args.frames
    for cin, cout, kernel, strides, padding in [(2, 4, (3, 3), (1, 1), "SAME"), (4, 4, (3, 3), (1, 1), "SAME"),
                                                (4, 4, (5, 1), (4, 1), ((2, 2), (0, 0))), (4, 2, (3, 3), (1, 1), "SAME")]:
        x = jax.random.normal(jax.random.key(0), (args.batch, bins, stft_frames, cin))
        layer = Conv2d(cout, kernel, strides, padding)
        params = layer.init(jax.random.key(1), x)
        times = {}
        for name, module in (("Conv2d", layer), ("flax Conv", nn.Conv(cout, kernel, strides, padding))):
            times[name] = cpu_seconds(jax.jit(module.apply), (params, x), args.repeats)
        rows.append({"what": f"conv {cin}->{cout} {kernel[0]}x{kernel[1]} /{strides[0]}x{strides[1]}", **times})

    config, params = random_cae(args.variant)
    from diffariff_jax.autoencoder import Autoencoder

    wav = np.random.default_rng(0).standard_normal((args.batch, args.frames * 4096)).astype(np.float32) * 0.1
    for what in ("encoder", "train step"):
        times = {}
        for name in ("Conv2d", "flax Conv"):
            with flax_convs() if name == "flax Conv" else contextlib.nullcontext():
                if what == "encoder":
                    ae = Autoencoder(config, params)
                    # a fresh jit per variant: Autoencoder's module-level jit would reuse the first trace
                    fn = jax.jit(lambda p, w, ae=ae: cae_lib.CAE(ae.shape).apply(
                        p, ae.stft.wave_to_spec(w, ae.shape.time_reduction), method=cae_lib.CAE.encode))
                    times[name] = cpu_seconds(fn, (params, wav), args.repeats)
                else:
                    task = CAETask(config)
                    state = state_lib.create_train_state(task, jax.random.key(0))
                    crop = jnp.asarray(wav[:, : task.crop_samples])
                    step = jax.jit(lambda s, b, task=task: state_lib.train_step(task, s, b))
                    times[name] = cpu_seconds(step, (state, {"audio": crop}), args.repeats)
        rows.append({"what": f"{what} ({args.variant})", **times})
    for r in rows:
        r["speedup"] = round(r["flax Conv"] / r["Conv2d"], 2)
        r["Conv2d"], r["flax Conv"] = round(r["Conv2d"], 4), round(r["flax Conv"], 4)
    print(f"{'what':34} {'Conv2d cpu s':>13} {'flax Conv cpu s':>16} {'speedup':>8}")
    for r in rows:
        print(f"{r['what']:34} {r['Conv2d']:13.4f} {r['flax Conv']:16.4f} {r['speedup']:8.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps({"command": "benchmarks/cae_conv_speed.py " + " ".join(
        f"--{k} {v}" for k, v in vars(args).items()), "cpus": os.cpu_count(), "load_average": os.getloadavg(),
        "batch": args.batch, "frames": args.frames, "rows": rows}, indent=1))
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
