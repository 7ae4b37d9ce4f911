"""Compile the trainer's own programs ahead of time for devices that are not attached (a TPU topology).

    reports = compile_programs(config, devices, programs=("train", "eval", "sample"), sample_batch=1)

"train" is `loop.make_train_step`: the trainer's jitted `state.train_step` with its state shardings,
batch sharding and donation (not a copy of it). "eval" is `loop.make_eval_fn`. "sample" is the LDM's
`diffusion.samplers.sample` (config.sampler: 30 Heun steps, the three CFG branches in one call) on the
EMA parameters' shardings, for `sample_batch` clips. Every input is a ShapeDtypeStruct carrying its
sharding (`loop.abstract_state`), so nothing is allocated on any device.
"""
from __future__ import annotations

import time
from typing import Any, Callable, Sequence

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


def _ldm_sampling(task: Any, config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh, state: Any,
                  state_shardings: Any, batch: int) -> tuple[Callable, tuple, float]:
    """(jitted sampler, abstract args, analytic FLOPs) for `batch` clips of config.data.crop_frames frames."""
    from diffariff_jax.diffusion import samplers
    from diffariff_jax.models.unet1d_cost import unet1d_cost

    frames, sampler_cfg = task.crop_frames, config.sampler
    replicated = NamedSharding(mesh, P())
    rows = mesh_lib.batch_sharding(mesh) if batch % mesh.size == 0 else replicated

    def generate(params, key, context, clap):  # context: [batch, frames, 64], clap: [batch, clap_dim]
        return samplers.sample(task.denoiser, params, key, num_frames=frames, sampler_cfg=sampler_cfg,
                               context=context, clap=clap)

    fn = jax.jit(generate, in_shardings=(state_shardings.ema_params, replicated, rows, rows), out_shardings=rows)
    inputs = task.dummy_batch(batch)
    args = (state.ema_params, jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=replicated),
            jax.ShapeDtypeStruct(inputs["context"].shape, jnp.float32, sharding=rows),
            jax.ShapeDtypeStruct(inputs["clap"].shape, jnp.float32, sharding=rows))
    steps = int(sampler_cfg.steps)
    evaluations = 2 * steps - 1 if sampler_cfg.solver == "heun" else steps  # Heun's last step is Euler
    branches = 3  # unconditional, context, context + CLAP: one batched call
    return fn, args, unet1d_cost(config.model, frames).flops * evaluations * branches * batch


# Kinds with an inference program to compile as "sample" (the CAE's decoder runs inside `Autoencoder`).
SAMPLING = {"ldm": _ldm_sampling}


def default_programs(config: ml_collections.ConfigDict) -> tuple[str, ...]:
    return tuple(p for p in PROGRAMS if p != "sample" or config.kind in SAMPLING)


def compile_programs(config: ml_collections.ConfigDict, devices: Sequence[jax.Device],
                     programs: Sequence[str] | None = None, sample_batch: int = 1, hbm_gib: float = 0.0,
                     keep_hlo: bool = False) -> tuple[list[aot_report.ProgramReport], dict[str, str]]:
    """Lowers and compiles `programs` for `devices` (config.mesh over all of them); nothing is allocated.

    Returns the per-chip reports and, with keep_hlo, the compiled HLO text of each program.
    Raises mesh_lib.MeshError for a mesh or batch that does not fit the devices, AotError for an
    unknown program.
    """
    programs = tuple(programs or default_programs(config))
    unknown = [p for p in programs if p not in default_programs(config)]
    if unknown:
        raise aot_report.AotError(f"--programs {','.join(unknown)}: a {config.kind} config compiles "
                                  f"{', '.join(default_programs(config))}")
    mesh = mesh_lib.make_mesh(config.mesh, devices)
    batch_size = int(config.train.batch_size)
    mesh_lib.per_host_batch_size(batch_size, mesh)
    task = tasks.make_task(config)
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
                fn, args, flops = SAMPLING[config.kind](task, config, mesh, state, shardings, sample_batch)
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
