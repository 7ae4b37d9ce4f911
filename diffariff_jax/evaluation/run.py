"""What `python -m diffariff_jax.eval` does, as a function: settings, checkpoints, stages, report folder.

Kept apart from the absl CLI so that tests and notebooks call it directly; every user-facing failure is
an EvalError or another one-line ValueError subclass (CheckpointError, CompanionError, ExamplesError,
OutputError, PathError) that the CLI prints as one line.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import ml_collections

from diffariff_jax.evaluation import baselines, conditions, evaluate, outputs, report as report_lib, scoring
from diffariff_jax.evaluation.cache import EmbeddingCache

log = logging.getLogger(__name__)


class EvalError(ValueError):
    """A one-line problem with the evaluation's settings or flags."""


def default_variant(checkpoint: Any) -> str:
    """The eval variant matching the checkpoint's LDM variant: tiny -> tiny, anything else -> paper."""
    from diffariff_jax.training.checkpoint import read_config

    return "tiny" if read_config(checkpoint).get("variant") == "tiny" else "paper"


def default_config(checkpoint: Any) -> ml_collections.ConfigDict:
    from configs.eval import get_config

    return get_config(default_variant(checkpoint))


def check_config(cfg: ml_collections.ConfigDict) -> None:
    if cfg.get("kind") != "eval":
        raise EvalError(f"--config is a {cfg.get('kind')!r} config, not an eval config (configs/eval.py:tiny)")
    try:
        conditions.get_conditions(cfg.conditions)
        baselines.check_names(cfg.baselines)
    except ValueError as err:
        raise EvalError(str(err)) from None
    for key in ("num_examples", "generate_batch", "apa_pairings"):
        if int(cfg[key]) < 1:
            raise EvalError(f"--config.{key} must be >= 1, got {cfg[key]}")
    # density and coverage take each example's k-th nearest real neighbour: k + 1 examples at least
    if int(cfg.num_examples) <= int(cfg.metrics.prdc_k):
        raise EvalError(f"--config.num_examples={cfg.num_examples}: density and coverage need more than "
                        f"--config.metrics.prdc_k={cfg.metrics.prdc_k} examples")
    if int(cfg.bootstrap.num_resamples) < 1 or not 0 < float(cfg.bootstrap.confidence) < 1:
        raise EvalError("--config.bootstrap: num_resamples must be >= 1 and confidence in (0, 1)")


def kept_steps(checkpoint: Any) -> list[int]:
    """Every checkpoint step of a training workdir, oldest first (EvalError for a release dir)."""
    from diffariff_jax.training.checkpoint import CHECKPOINT_DIR

    root = Path(str(checkpoint)) / CHECKPOINT_DIR
    steps = sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.is_dir() else []
    if not steps:
        raise EvalError(f"--all-checkpoints: {checkpoint} is not a training workdir with checkpoints")
    return steps


def _accompanists(loader: Any, checkpoint: Any, cae: str | None, clap: str | None, all_checkpoints: bool):
    """The newest weights first loaded (CAE and CLAP found once), then, with all_checkpoints, every kept step."""
    newest = loader.load(checkpoint, cae=cae, clap=clap)
    if not all_checkpoints:
        yield newest
        return
    from diffariff_jax.training.checkpoint import load_ema_params

    for step in kept_steps(checkpoint):
        if step == newest.step:
            yield newest
        else:
            yield loader(newest.config, load_ema_params(checkpoint, step), newest.cae, newest.clap, step=step,
                         source=str(checkpoint))


def _data_settings(acc: Any, cfg: ml_collections.ConfigDict, data: str | None) -> tuple[str, str, float]:
    """(data folder, layout, audio-CLAP seconds): flags and config first, then the records' latents.json."""
    from diffariff_jax.release_bundle import records_info

    info = records_info(acc.config)
    root = data or info.get("data")
    if not root:
        raise EvalError("no --data given and the checkpoint's training records name no data folder; pass --data DIR")
    layout = cfg.examples.layout or info.get("layout") or "demo"
    clap_seconds = float(cfg.examples.clap_seconds) or float(info.get("clap_seconds", 5.0))
    return str(root), layout, clap_seconds


def _tensorboard(checkpoint: Any, step: int, rows: dict[str, dict]) -> bool:
    """Scalars of the condition rows into a training workdir's TensorBoard (split "eval"); False elsewhere."""
    from diffariff_jax.training.checkpoint import CHECKPOINT_DIR
    from diffariff_jax.training.logging import MetricWriter

    if not (Path(str(checkpoint)) / CHECKPOINT_DIR).is_dir():
        return False
    writer = MetricWriter(str(checkpoint), tensorboard=True, console=False)
    writer.write(step, {f"{name}/{metric}": value["value"] for name, row in rows.items()
                        for metric, value in (row.get("metrics") or {}).items() if value is not None}, split="eval")
    writer.close()
    return True


def evaluate_command(checkpoint: Any, out: Path, *, data: str | None, config: ml_collections.ConfigDict | None,
                     cae: str | None, clap: str | None, all_checkpoints: bool, overwrite: bool,
                     cache_dir: str | None, loader: Any) -> dict:
    """Scores the checkpoint (or every kept step) and writes the report folder; returns report.json's dict."""
    from diffariff_jax.accompanist import SamplerSettings

    cfg = config if config is not None else default_config(checkpoint)
    check_config(cfg)
    ident = outputs.identity(str(checkpoint), cfg)
    outputs.check_out(out, ident, overwrite)
    settings = SamplerSettings(**cfg.sampler.to_dict())
    settings.check()
    cache = EmbeddingCache(cache_dir)
    timer = evaluate.Timer()
    prep, history, rows, acc = None, [], {}, None
    for acc in _accompanists(loader, checkpoint, cae, clap, all_checkpoints):
        if prep is None:
            root, layout, clap_seconds = _data_settings(acc, cfg, data)
            prep = evaluate.prepare(acc, cfg, data_root=root, layout=layout, clap_seconds=clap_seconds, cache=cache,
                                    timer=timer)
        rows = evaluate.score_checkpoint(acc, prep, cfg, settings, timer)
        denoise = evaluate.denoising(acc, prep, cfg, timer)
        history.append({"step": acc.step, "fingerprint": acc.fingerprint, "rows": rows, "denoising": denoise})
        _tensorboard(checkpoint, acc.step, rows)
        log.info("step %d scored", acc.step)
    result = report_lib.build(acc, prep, cfg, checkpoint=str(checkpoint), ident=ident, condition_rows=rows,
                              denoising=history[-1]["denoising"], seconds=dict(timer.seconds),
                              history=history if all_checkpoints else None)
    outputs.write_all(out, result, prep, history if all_checkpoints else None)
    return result


def summary(result: dict, out: Path, seconds: float) -> str:
    """The table as text (value [low, high]) and where the page is."""
    names = list(scoring.METRICS)
    width = max(len(r["label"]) for r in result["rows"].values()) + 2
    lines = [f"step {result['checkpoint']['step']}  N={result['num_examples']}  "
             f"({result['data']['num_test_songs']} test songs)", "".ljust(width) + "".join(n.rjust(22) for n in names)]
    for row in result["rows"].values():
        cells = []
        for n in names:
            m = (row.get("metrics") or {}).get(n)
            cells.append(("-" if m is None else f"{m['value']:.3f} [{m['low']:.2f},{m['high']:.2f}]").rjust(22))
        lines.append(row["label"].ljust(width) + "".join(cells))
    if result.get("codec"):
        lines.append("codec log-mel distance, dB (median [q25, q75]; lower is better):")
        for row in result["codec"].values():
            cells = [f"{m} " + ("-" if row[m] is None else f"{row[m]['median']:.1f} [{row[m]['q25']:.1f}, "
                                                           f"{row[m]['q75']:.1f}]") for m in ("stems", "mixes")]
            lines.append(f"  {row['label']:<32}" + "   ".join(cells))
    d = result["denoising"]
    lines.append("denoising loss on the test examples: " + "  ".join(
        f"{k} {v['value']:.4f}" for k, v in d["losses"].items())
        + f"\n  context gain {d['context_gain']['value']:.4f} [{d['context_gain']['low']:.4f}, "
          f"{d['context_gain']['high']:.4f}] (lower loss with the context on "
          f"{100 * d['context_gain']['improved_fraction']:.0f}% of examples)")
    lines.append(f"report: {out / 'index.html'}  ({seconds:.0f} s)")
    return "\n".join(lines)
