"""Training throughput of the tiny LDM and tiny CAE, and checkpoint save/restore time of the `paper` LDM.

    .venv/bin/python benchmarks/train_speed.py [--steps 30] [--skip-cae] [--skip-paper]
    .venv/bin/python benchmarks/train_speed.py --only-paper-step --batch 32   # on a GPU/TPU: paper LDM, bf16

Throughput goes through the real trainer (`training.loop.train`: sharded state, jitted step, metrics,
checkpoint at the end) with in-memory random batches, so the data pipelines (see pipeline_speed.py and
records_speed.py) are not part of it; steps/s is the loop's own measurement over the steps after the
first (compile excluded). The paper LDM checkpoint is params only (float32, random values with the
real shapes), written with `save_release` and read back with `load_for_inference`, like a release.
`--only-paper-step` measures the paper LDM's step time and MFU in bfloat16 at `--batch`.
Prints a table and writes JSON to benchmarks/results/train_speed.json (or train_speed_paper_step.json).
Timings on a shared machine are noisy; compare runs made side by side.
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
import time
from pathlib import Path

import jax
import numpy as np

from configs import cae as cae_configs
from configs import ldm as ldm_configs
from diffariff_jax.training import checkpoint as ckpt
from diffariff_jax.training import loop
from diffariff_jax.training.tasks import make_task

RESULTS = Path(__file__).resolve().parent / "results"


def random_batches(task, batch_size: int):
    """(split, start_step) -> endless random batches with the task's shapes (a fixed pool of 4)."""
    shapes = {k: v.shape[1:] for k, v in task.dummy_batch(1).items()}
    rng = np.random.default_rng(0)
    pool = [{k: (0.1 * rng.normal(size=(batch_size,) + s)).astype(np.float32) for k, s in shapes.items()}
            for _ in range(4)]

    def batches(split, start_step):
        step = start_step
        while True:
            yield pool[step % len(pool)]
            step += 1

    return batches


def throughput(config, steps: int) -> dict:
    config.train.update(num_steps=steps, log_every=steps, eval_batches=0, ckpt_every=10 * steps,
                        tensorboard=False)
    task = make_task(config)
    with tempfile.TemporaryDirectory() as workdir:
        start = time.perf_counter()
        result = loop.train(config, workdir, task=task, batches=random_batches(task, int(config.train.batch_size)))
        total = time.perf_counter() - start
    metrics = result.metrics
    return {"batch_size": int(config.train.batch_size), "steps": steps, "steps_per_s": metrics["steps_per_s"],
            "examples_per_s": metrics["examples_per_s"], "mfu": metrics.get("mfu"),
            "flops_per_example": task.flops_per_example(), "wall_s_incl_compile": total,
            "compute_dtype": config.train.compute_dtype}


def paper_checkpoint() -> dict:
    config = ldm_configs.get_config("paper")
    task = make_task(config)
    shapes = jax.eval_shape(task.init_params, jax.random.PRNGKey(0))
    rng = np.random.default_rng(0)
    params = jax.tree.map(lambda s: rng.standard_normal(s.shape, np.float32) * 0.02, shapes)
    count = sum(int(np.prod(s.shape)) for s in jax.tree.leaves(shapes))
    directory = Path(tempfile.mkdtemp())
    try:
        start = time.perf_counter()
        ckpt.save_release(directory / "release", config, params)
        saved = time.perf_counter() - start
        size = sum(p.stat().st_size for p in (directory / "release").rglob("*") if p.is_file())
        start = time.perf_counter()
        _, restored = ckpt.load_for_inference(str(directory / "release"), kind="ldm")
        jax.block_until_ready(restored)
        loaded = time.perf_counter() - start
        leaf = jax.tree.leaves(params)[0]
        assert np.array_equal(np.asarray(jax.tree.leaves(restored)[0]), leaf)
    finally:
        shutil.rmtree(directory)
    return {"params": count, "bytes_on_disk": size, "save_s": saved, "restore_s": loaded}


def paper_step(batch: int, steps: int) -> dict:
    config = ldm_configs.get_config("paper")
    config.train.update(batch_size=batch, compute_dtype="bfloat16")
    return throughput(config, steps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--skip-cae", action="store_true")
    parser.add_argument("--skip-paper", action="store_true")
    parser.add_argument("--only-paper-step", action="store_true")
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()
    device = jax.devices()[0]
    meta = {"device": getattr(device, "device_kind", str(device)), "devices": jax.device_count(),
            "machine": platform.machine(), "jax": jax.__version__}
    results: dict = {"meta": meta}
    if args.only_paper_step:
        results["paper_ldm_step"] = paper_step(args.batch, args.steps)
        name = "train_speed_paper_step.json"
    else:
        results["tiny_ldm"] = throughput(ldm_configs.get_config("tiny"), args.steps)
        if not args.skip_cae:
            results["tiny_cae"] = throughput(cae_configs.get_config("tiny"), args.steps)
        if not args.skip_paper:
            results["paper_ldm_checkpoint_cpu"] = paper_checkpoint()
        name = "train_speed.json"
    print(f"device: {meta['device']} x{meta['devices']}")
    for key, value in results.items():
        if key == "meta":
            continue
        print(f"{key:28s} " + "  ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                        for k, v in value.items()))
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / name).write_text(json.dumps(results, indent=1, sort_keys=True) + "\n")


if __name__ == "__main__":
    main()
