"""Compile the trainer's own programs ahead of time for devices that are not attached (a TPU topology).

    reports = compile_programs(config, devices, programs=("train", "eval", "sample"), sample_batch=1)

"train" is `loop.make_train_step`: the trainer's jitted `state.train_step` with its state shardings,
batch sharding and donation (not a copy of it). "eval" is `loop.make_eval_fn`. "sample" is the task's
`sampling_program` (the LDM's compiled sampling loop on the EMA parameters' shardings, for `sample_batch`
clips; the CAE has none). Every input is a ShapeDtypeStruct carrying its
sharding (`loop.abstract_state`), so nothing is allocated on any device.
"""
from __future__ import annotations

import time
from typing import Any, Sequence

import jax
import jax.numpy as jnp
import ml_collections
from jax.sharding import NamedSharding, PartitionSpec as P

from diffariff_jax.training import aot_report, loop
from diffariff_jax.training import mesh as mesh_lib
from diffariff_jax.training import tasks

PROGRAMS = ("train", "eval", "sample")


def _abstract(tree: dict[str, Any], sharding: NamedSharding) -> dict[str, jax.ShapeDtypeStruct]:
    return {k: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=sharding) for k, v in tree.items()}


def default_programs(task: Any) -> tuple[str, ...]:
    """Every program the task's kind has: "sample" only where the task has a compiled inference loop."""
    return tuple(p for p in PROGRAMS if p != "sample" or task.sampling_program is not None)


def compile_programs(config: ml_collections.ConfigDict, devices: Sequence[jax.Device],
                     programs: Sequence[str] | None = None, sample_batch: int = 1, hbm_gib: float = 0.0,
                     keep_hlo: bool = False) -> tuple[list[aot_report.ProgramReport], dict[str, str]]:
    """Lowers and compiles `programs` for `devices` (config.mesh over all of them); nothing is allocated.

    Returns the per-chip reports and, with keep_hlo, the compiled HLO text of each program.
    Raises mesh_lib.MeshError for a mesh or batch that does not fit the devices, AotError for an
    unknown program.
    """
    task = tasks.make_task(config)
    programs = tuple(programs or default_programs(task))
    unknown = [p for p in programs if p not in default_programs(task)]
    if unknown:
        raise aot_report.AotError(f"--programs {','.join(unknown)}: a {config.kind} config compiles "
                                  f"{', '.join(default_programs(task))}")
    mesh = mesh_lib.make_mesh(config.mesh, devices)
    batch_size = int(config.train.batch_size)
    mesh_lib.per_host_batch_size(batch_size, mesh)
    # Outside set_mesh: abstract_state makes a concrete PRNG key on the host, which the mesh's devices
    # (absent here) could not hold.
    state, shardings = loop.abstract_state(task, config, mesh)
    device = mesh.devices.flat[0]
    hbm = aot_report.hbm_bytes(device, hbm_gib)
    peak = loop.peak_flops_per_device(device, float(config.train.peak_flops))
    batch = _abstract(task.dummy_batch(batch_size), mesh_lib.batch_sharding(mesh))
    key = jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=NamedSharding(mesh, P()))
    reports, texts = [], {}
    with jax.set_mesh(mesh):
        for name in programs:
            if name == "train":
                fn, args = loop.make_train_step(task, shardings, mesh), (state, batch)
                flops = float(task.flops_per_example()) * batch_size
            elif name == "eval":
                fn, args, flops = loop.make_eval_fn(task, shardings, mesh), (state, batch, key), None
            else:
                fn, args, flops = task.sampling_program(mesh, state.ema_params, shardings.ema_params, sample_batch)
            start = time.perf_counter()
            try:
                compiled = fn.lower(*args).compile()
            except Exception as err:  # jax.errors.JaxRuntimeError; anything but running out of HBM propagates
                if not aot_report.is_out_of_memory(err):
                    raise
                reports.append(aot_report.out_of_memory_report(name, err, time.perf_counter() - start, hbm))
                continue
            seconds = time.perf_counter() - start
            reports.append(aot_report.report(name, compiled, seconds, device, mesh.size, flops, hbm, peak))
            if keep_hlo:
                texts[name] = compiled.as_text()
    return reports, texts
