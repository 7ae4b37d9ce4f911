"""Evaluate an LDM checkpoint: the paper's table (SPEC section 5) with baselines and intervals, as a report.

    python -m diffariff_jax.eval --checkpoint runs/ldm --data data/demo --out report/ [--config configs/eval.py:tiny]
    python -m diffariff_jax.eval --checkpoint runs/ldm --all-checkpoints --out report/   # every kept step

--checkpoint is an LDM training workdir (its newest checkpoint) or a release dir; the CAE and CLAP are the
ones its records were made with (--cae / --clap override; the CLAP also makes every metric embedding).
--data defaults to the folder the training records were made from, --config to the variant matching the
checkpoint's (tiny -> tiny, else paper; --config.KEY=VALUE overrides apply to it). The report folder
(docs/evaluation.md) gets report.json, examples.csv, PNG plots, WAVs and index.html; a training workdir
also gets the scalars in its TensorBoard (split "eval") at the checkpoint's step. Every user-facing failure
is one line on stderr and exit 1.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from absl import app, flags, logging
from ml_collections import config_flags

from diffariff_jax import absl_cli

_EVAL_CONFIG = Path(__file__).resolve().parents[1] / "configs" / "eval.py"
_CONFIG = config_flags.DEFINE_config_file("config", None, "eval config and variant, e.g. configs/eval.py:tiny "
                                          "(default: the variant matching the checkpoint's)")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "LDM training workdir or release dir")
_DATA = flags.DEFINE_string("data", None, "multitrack folder (default: the one the training records were made from)")
_OUT = flags.DEFINE_string("out", None, "report folder")
_CAE = flags.DEFINE_string("cae", None, "CAE workdir or release dir (default: the one the records were made with)")
_CLAP = flags.DEFINE_string("clap", None, "CLAP hub name or directory (default: the one the records were made with)")
_ALL = flags.DEFINE_boolean("all-checkpoints", False, "score every kept step of the training workdir (curves)")
_OVERWRITE = flags.DEFINE_boolean("overwrite", False, "replace a report of another evaluation in --out")
_CACHE = flags.DEFINE_string("cache-dir", os.path.join("~", ".cache", "diffariff_jax", "eval"),
                             "real-data embedding cache ('' = no cache)")
flags.mark_flags_as_required(["checkpoint", "out"])


def main(argv: list[str]) -> None:
    logging.get_absl_handler().addFilter(absl_cli.QuietOrbax())
    if len(argv) > 1:
        absl_cli.fail(f"unexpected arguments {' '.join(argv[1:])}; settings go through --config.KEY=VALUE")
    from diffariff_jax import paths
    from diffariff_jax.accompanist import Accompanist
    from diffariff_jax.audio.io import AudioError
    from diffariff_jax.evaluation import run
    from diffariff_jax.evaluation.examples import ExamplesError
    from diffariff_jax.evaluation.outputs import OutputError
    from diffariff_jax.release_bundle import CompanionError
    from diffariff_jax.training.checkpoint import CheckpointError

    start = time.perf_counter()
    try:
        checkpoint = paths.resolve(_CHECKPOINT.value, "--checkpoint")
        out = paths.local(_OUT.value, "--out")
        data = str(paths.local(_DATA.value, "--data")) if _DATA.value else None
        cache = str(paths.local(_CACHE.value, "--cache-dir")) if _CACHE.value else None
        report = run.evaluate_command(
            checkpoint, out, data=data, config=_CONFIG.value, cae=_CAE.value, clap=_CLAP.value,
            all_checkpoints=_ALL.value, overwrite=_OVERWRITE.value, cache_dir=cache, loader=Accompanist)
    except (paths.PathError, CheckpointError, CompanionError, ExamplesError, OutputError, AudioError,
            run.EvalError) as err:
        absl_cli.fail(str(err).strip().splitlines()[0])
    print(run.summary(report, out, time.perf_counter() - start), flush=True)


def _with_default_config(argv: list[str]) -> list[str]:
    """argv with --config set to the checkpoint's variant when only --config.KEY=VALUE overrides are given.

    config_flags applies overrides to the file --config names; without one they would have nothing to
    override, so the variant eval would pick anyway (tiny -> tiny, else paper) is named explicitly.
    """
    args = argv[1:]
    if any(a == "--config" or a.startswith("--config=") for a in args) or not any(
            a.startswith("--config.") for a in args):
        return argv
    from diffariff_jax import paths
    from diffariff_jax.evaluation.run import default_variant
    from diffariff_jax.training.checkpoint import CheckpointError

    try:
        flags.FLAGS([argv[0], *(a for a in args if not a.startswith("--config."))])
    except flags.Error:  # a missing or bad flag: the full parse reports it in one line
        return argv
    try:
        variant = default_variant(paths.resolve(_CHECKPOINT.value, "--checkpoint"))
    except (paths.PathError, CheckpointError) as err:
        absl_cli.fail(str(err).strip().splitlines()[0])
    flags.FLAGS.unparse_flags()
    return [argv[0], f"--config={_EVAL_CONFIG}:{variant}", *args]


def _parse_flags(argv: list[str]) -> list[str]:
    return absl_cli.parse_flags(_with_default_config(argv))


def run_cli() -> None:
    app.run(main, flags_parser=_parse_flags)


if __name__ == "__main__":
    run_cli()
