"""The whole pipeline on a tiny demo set, from nothing to a report: `make demo` / `make demo-quick`.

    python -m diffariff_jax.demo --out demo                 # full size (<= 30 minutes on two idle cores)
    python -m diffariff_jax.demo --out demo_quick --size quick
    python -m diffariff_jax.demo --out demo --redo ldm      # redo one stage and everything after it

Stages (diffariff_jax/demo_plan.py) call the real command-line tools as subprocesses. Each stage prints
its commands, streams their progress, and ends with its wall and CPU time. A stage is recorded as done
(OUT/.stages/NAME.json) only after all its commands succeeded, so running the demo again skips finished
stages and resumes the interrupted one (the tools themselves resume: train from its checkpoints,
precompute from its finished shards). A stage whose commands changed (another --size) or named by --redo
is redone from scratch (its output folders removed first), and so is every stage after it. Times go to OUT/stages.json; OUT/report/index.html is the evaluation's report and
OUT/report/examples.html plays the generated examples.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

from diffariff_jax import paths
from diffariff_jax.demo_page import write_examples_page
from diffariff_jax.demo_plan import REPO, SIZES, Stage, plan

MARKERS = ".stages"
XLA_CACHE = ".xla_cache"  # JAX_COMPILATION_CACHE_DIR of the stages' commands


class DemoError(RuntimeError):
    """A stage failed; the message is one line naming the stage and its command."""


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _recorded(stage: Stage) -> list[list[str]]:
    """The stage's commands without the interpreter path (a new venv does not invalidate a stage)."""
    return [list(cmd[1:]) for cmd in stage.commands]


def _marker(out: Path, stage: Stage) -> Path:
    return out / MARKERS / f"{stage.name}.json"


def _is_done(out: Path, stage: Stage) -> dict | None:
    path = _marker(out, stage)
    if not path.exists():
        return None
    record = json.loads(path.read_text())
    return record if record.get("commands") == _recorded(stage) else None


def run_stage(out: Path, stage: Stage, index: int, total: int) -> dict:
    """Runs the stage's commands in the repository root; writes its marker only when all succeed."""
    print(f"\n=== [{index}/{total}] {stage.name}: {stage.summary}", flush=True)
    wall0, cpu0 = time.time(), _children_cpu()
    # One persistent XLA cache for every command (unless the user set one): eval and the five generate
    # commands compile the same CAE and sampler programs, and a rerun with --redo compiles nothing twice.
    env = {"JAX_COMPILATION_CACHE_DIR": str(out / XLA_CACHE), **os.environ, "TF_CPP_MIN_LOG_LEVEL": "2",
           "PYTHONUNBUFFERED": "1"}
    for cmd in stage.commands:
        print("$ " + shlex.join(cmd), flush=True)
        code = subprocess.run(cmd, cwd=REPO, env=env).returncode
        if code != 0:
            raise DemoError(f"stage '{stage.name}' failed (exit {code}) in: {shlex.join(cmd)} -- its output is "
                            "above; rerun the demo after fixing it (finished stages are skipped)")
    record = {"stage": stage.name, "commands": _recorded(stage), "wall_seconds": round(time.time() - wall0, 1),
              "cpu_seconds": round(_children_cpu() - cpu0, 1), "finished": time.strftime("%Y-%m-%dT%H:%M:%S")}
    marker = _marker(out, stage)
    marker.parent.mkdir(parents=True, exist_ok=True)
    marker.with_suffix(".tmp").write_text(json.dumps(record, indent=1))
    marker.with_suffix(".tmp").replace(marker)
    print(f"=== [{index}/{total}] {stage.name} done in {record['wall_seconds']:.0f} s "
          f"({record['cpu_seconds']:.0f} CPU s)", flush=True)
    return record


def run_demo(out: Path, size: str, redo: str | None = None) -> list[dict]:
    """Runs (or resumes) every stage; returns one record per stage (skipped ones keep their old times)."""
    stages = plan(out, SIZES[size])
    names = [s.name for s in stages]
    if redo is not None and redo not in names:
        raise DemoError(f"--redo {redo!r}: no such stage; stages are {', '.join(names)}")
    out.mkdir(parents=True, exist_ok=True)
    records, stale = [], False
    for i, stage in enumerate(stages, 1):
        stale = stale or stage.name == redo
        done = None if stale else _is_done(out, stage)
        if done is not None:
            print(f"=== [{i}/{len(stages)}] {stage.name}: done earlier ({done['wall_seconds']:.0f} s), skipped")
            records.append({**done, "skipped": True})
            continue
        marker = _marker(out, stage)
        if stale or marker.exists():  # redone, not resumed: what the tools would resume from is stale
            for folder in stage.outputs:
                if folder.exists():
                    print(f"=== [{i}/{len(stages)}] {stage.name}: removing {folder} (redone from scratch)")
                    shutil.rmtree(folder)
        stale = True  # everything after a redone stage depends on its new outputs
        marker.unlink(missing_ok=True)
        records.append(run_stage(out, stage, i, len(stages)))
    (out / "stages.json").write_text(json.dumps({"size": size, "stages": records}, indent=1))
    page = write_examples_page(out / "report", records)
    print("\nstage        wall s    CPU s")
    for r in records:
        print(f"{r['stage']:<12} {r['wall_seconds']:>6.0f} {r['cpu_seconds']:>8.0f}{'  (earlier run)' if r.get('skipped') else ''}")
    print(f"\nreport: {out / 'report' / 'index.html'}  (evaluation table)\nexamples: {page}")
    return records


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m diffariff_jax.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="demo", help="output folder: data, runs, latents, report (default: demo)")
    parser.add_argument("--size", choices=sorted(SIZES), default="full",
                        help="full: the real demo (<= 30 min on 2 cores); quick: a smoke run of the same stages")
    parser.add_argument("--redo", default=None, help="redo this stage and every later one (e.g. --redo ldm)")
    args = parser.parse_args(argv)
    try:
        out = paths.local(args.out, "--out")
        if out.exists() and not out.is_dir():
            raise DemoError(f"--out {out}: exists and is not a folder")
        run_demo(out, args.size, args.redo)
    except (DemoError, paths.PathError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\ninterrupted: run the same command again to resume (finished stages are skipped)", file=sys.stderr)
        sys.exit(130)


if __name__ == "__main__":
    main()
