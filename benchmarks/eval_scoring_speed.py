"""CPU time of one system's scores with bootstrap intervals (evaluation/scoring.score): the Gram route of
evaluation/sample_fd.py against the dense covariance route of metrics.fad / metrics.apa, side by side.

    .venv/bin/python benchmarks/eval_scoring_speed.py [--dim 512] [--examples 6 32] [--resamples 10]

Random embeddings shaped like the report's (n examples, K = 4 mismatched pairings for APA, 512-d CLAP);
both routes give the same numbers (tests/test_eval_scoring.py). Times are time.process_time() of this
process; the machine may be shared, so compare the two routes' ratio, not the seconds.
Writes benchmarks/results/eval_scoring_speed.json.
"""
from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from unittest import mock

import numpy as np

from configs.eval import get_config
from diffariff_jax import metrics
from diffariff_jax.evaluation import scoring


class _Dense:
    """sample_fd's interface on the dense route."""

    fad = staticmethod(metrics.fad)

    @staticmethod
    def apa(c, r, rp, imag_tol=1e-3):
        return metrics.apa(c, r, rp, imag_tol)["apa"]


def _score_seconds(n: int, dim: int, resamples: int) -> float:
    rng = np.random.default_rng(0)
    cfg = get_config("tiny")
    cfg.bootstrap.num_resamples = resamples
    real, stems, mixes, matching = (rng.normal(size=(n, dim)) for _ in range(4))
    mismatched = rng.normal(size=(4 * n, dim))
    per = {"clap_score": np.zeros(n), "instrument_correct": np.zeros(n)}
    start = time.process_time()
    scoring.score(real, stems, mixes, (matching, mismatched), per, cfg.metrics, cfg.bootstrap, 0)
    return time.process_time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=512, help="embedding dimension (the demo CLAP's: 512)")
    parser.add_argument("--examples", type=int, nargs="+", default=[6, 32], help="examples per system")
    parser.add_argument("--resamples", type=int, default=10, help="bootstrap resamples")
    args = parser.parse_args()
    rows = []
    for n in args.examples:
        gram = _score_seconds(n, args.dim, args.resamples)
        with mock.patch.object(scoring, "sample_fd", _Dense):
            dense = _score_seconds(n, args.dim, args.resamples)
        rows.append({"examples": n, "dim": args.dim, "resamples": args.resamples, "dense_cpu_s": round(dense, 3),
                     "gram_cpu_s": round(gram, 4), "speedup": round(dense / gram, 1)})
    print(f"{'N':>4} {'dim':>5} {'resamples':>9} {'dense CPU s':>12} {'Gram CPU s':>11} {'speedup':>8}")
    for r in rows:
        print(f"{r['examples']:>4} {r['dim']:>5} {r['resamples']:>9} {r['dense_cpu_s']:>12.2f} "
              f"{r['gram_cpu_s']:>11.3f} {r['speedup']:>8.0f}")
    out = Path(__file__).resolve().parent / "results" / "eval_scoring_speed.json"
    out.write_text(json.dumps({"rows": rows, "note": "one system's score(); the machine was shared"}, indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
