"""Time to compute every metric on N x D embeddings (default 2,000 x 512, the size of an eval run).

    .venv/bin/python benchmarks/metrics_speed.py [--num 2000] [--dim 512] [--repeats 3]

Embeddings are random unit vectors from two slightly different Gaussians (what CLAP embeddings of
real and generated stems look like to the metrics: same shape, same scale). Each metric is timed
`repeats` times and the fastest run is kept, since other processes on a shared machine only ever add
time. Metric settings are the defaults of `metrics_config()` (MMD^2: 100 subsets of 1,000; k = 5).
The reference `prdc` package (a test-only dependency) is timed on the same data when it is installed.
Prints a table and writes JSON to benchmarks/results/metrics_speed.json.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import time
from pathlib import Path
from typing import Callable

import numpy as np

from diffariff_jax.metrics import (
    apa,
    clap_score,
    fad,
    metrics_config,
    metrics_report,
    mmd2_polynomial,
    mmd2_rbf,
    prdc,
)


def unit_rows(rng: np.random.Generator, num: int, dim: int, shift: float) -> np.ndarray:
    x = rng.normal(size=(num, dim)) + shift
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def fastest(fn: Callable[[], object], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--num", type=int, default=2000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "metrics_speed.json"))
    args = parser.parse_args()

    cfg = metrics_config()
    rng = np.random.default_rng(0)
    real, gen = unit_rows(rng, args.num, args.dim, 0.0), unit_rows(rng, args.num, args.dim, 0.02)
    mismatched, prompts = unit_rows(rng, args.num, args.dim, 0.05), unit_rows(rng, args.num, args.dim, 0.0)
    s, n, seed = cfg.mmd_subset_size, cfg.mmd_num_subsets, cfg.seed
    apa_sets = {"candidate": gen, "matching": real, "mismatched": mismatched}
    cases: dict[str, Callable[[], object]] = {
        "fad": lambda: fad(real, gen),
        "mmd2_polynomial": lambda: mmd2_polynomial(real, gen, s, n, seed),
        "mmd2_rbf (median bandwidth)": lambda: mmd2_rbf(real, gen, s, n, seed),
        "prdc (k=5)": lambda: prdc(real, gen, cfg.prdc_k),
        "apa (3 FDs)": lambda: apa(gen, real, mismatched),
        "clap_score": lambda: clap_score(gen, prompts),
        "metrics_report (all of the above)": lambda: metrics_report(real, gen, cfg, apa_sets, prompts),
    }
    try:
        from prdc import compute_prdc

        def reference_prdc() -> None:
            with contextlib.redirect_stdout(io.StringIO()):  # it prints the set sizes
                compute_prdc(real, gen, cfg.prdc_k)

        cases["reference prdc package (k=5)"] = reference_prdc
    except ImportError:
        pass

    load_before = round(os.getloadavg()[0], 2)
    seconds = {name: fastest(fn, args.repeats) for name, fn in cases.items()}
    width = max(len(name) for name in seconds)
    print(f"{'metric':<{width}}  seconds   ({args.num} x {args.dim}, fastest of {args.repeats})")
    for name, sec in seconds.items():
        print(f"{name:<{width}}  {sec:7.3f}")

    result = {
        "num": args.num,
        "dim": args.dim,
        "repeats": args.repeats,
        "settings": cfg.to_dict(),
        "seconds": seconds,
        "machine": {
            "cpu_count": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "load_average_1min_before_after": [load_before, round(os.getloadavg()[0], 2)],
            "note": "shared machine; fastest of the repeats",
        },
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
