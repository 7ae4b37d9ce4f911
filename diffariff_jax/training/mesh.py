"""Device mesh ("data", "fsdp"), sharding rules over parameter shapes, global batches, multi-host start-up.

The same code runs on 1 CPU, 8 GPUs or a TPU pod slice: `jax.jit` with NamedShardings, no pmap.
Parameters (and everything shaped like them: Adam moments, EMA) are split along the `fsdp` axis on their
largest dimension divisible by its size when they hold at least `min_fsdp_size` values, and replicated
otherwise; batches are split on dim 0 over both axes.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Mapping, Sequence

import jax
import ml_collections
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

AXES = ("data", "fsdp")
BATCH_SPEC = P(AXES)  # dim 0 split over data x fsdp; fsdp also splits the batch (ZeRO-3 style)


class MeshError(ValueError):
    """A mesh/batch size that cannot fit the devices at hand (one-line message)."""


def mesh_shape(mesh_cfg: ml_collections.ConfigDict, num_devices: int) -> tuple[int, int]:
    """(data, fsdp) sizes for `num_devices`; one of them may be -1 = all remaining devices."""
    sizes = [int(mesh_cfg.data), int(mesh_cfg.fsdp)]
    if sizes.count(-1) > 1:
        raise MeshError(f"mesh data={sizes[0]} fsdp={sizes[1]}: at most one axis may be -1")
    if -1 in sizes:
        known = sizes[1 - sizes.index(-1)]
        if known <= 0 or num_devices % known:
            raise MeshError(f"mesh axis of size {known} does not divide the {num_devices} devices")
        sizes[sizes.index(-1)] = num_devices // known
    if sizes[0] * sizes[1] != num_devices or min(sizes) <= 0:
        raise MeshError(f"mesh data={sizes[0]} x fsdp={sizes[1]} != {num_devices} devices")
    return sizes[0], sizes[1]


def make_mesh(mesh_cfg: ml_collections.ConfigDict, devices: Sequence[jax.Device] | None = None) -> Mesh:
    """A ("data", "fsdp") mesh over `devices` (default: all devices of all processes), Auto axes.

    Auto axes keep GSPMD propagation inside jit (on JAX 0.10 make_mesh would default to Explicit).
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(mesh_cfg, len(devices))
    return jax.make_mesh(shape, AXES, axis_types=(jax.sharding.AxisType.Auto,) * 2, devices=devices)


def param_spec(shape: Sequence[int], fsdp_size: int, min_fsdp_size: int) -> P:
    """fsdp on the largest dimension divisible by the axis size (ties: the later dim), else replicated."""
    if fsdp_size <= 1 or int(np.prod(shape, dtype=np.int64)) < min_fsdp_size:
        return P()
    for dim in sorted(range(len(shape)), key=lambda d: (shape[d], d), reverse=True):
        if shape[dim] % fsdp_size == 0:
            spec = [None] * len(shape)
            spec[dim] = "fsdp"
            return P(*spec)
    return P()


def tree_shardings(tree: Any, mesh: Mesh, min_fsdp_size: int = 2**14) -> Any:
    """NamedShardings for every leaf of `tree` (params, optimizer state, EMA or a whole TrainState)."""
    fsdp_size = mesh.shape["fsdp"]
    return jax.tree.map(
        lambda x: NamedSharding(mesh, param_spec(np.shape(x), fsdp_size, min_fsdp_size)), tree)


def batch_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, BATCH_SPEC)


def make_global_batch(per_host_batch: dict[str, np.ndarray], mesh: Mesh) -> dict[str, jax.Array]:
    """Per-host numpy batch {name: [B_host, ...]} -> global jax.Arrays [B_host * processes, ...] on dim 0.

    Each process passes its own rows (its data shard); rows are laid out in process order.
    """
    sharding = batch_sharding(mesh)
    local = mesh.local_mesh.size
    out = {}
    for name, value in per_host_batch.items():
        value = np.asarray(value)
        if value.shape[0] % local:
            raise MeshError(f"per-host batch {name!r} of {value.shape[0]} rows does not split over the "
                            f"{local} local devices; use a per-host batch size that is a multiple of {local}")
        global_shape = (value.shape[0] * jax.process_count(),) + value.shape[1:]
        out[name] = jax.make_array_from_process_local_data(sharding, value, global_shape)
    return out


def per_host_batch_size(global_batch_size: int, mesh: Mesh) -> int:
    """The rows each process loads per step; the global batch must split evenly over the mesh's devices."""
    if global_batch_size <= 0 or global_batch_size % mesh.size:
        raise MeshError(f"train.batch_size={global_batch_size} is not a positive multiple of the {mesh.size} "
                        f"devices of the mesh")
    return global_batch_size // jax.process_count()


def _multihost_env(environ: Mapping[str, str]) -> bool:
    """True when the environment describes a multi-process job JAX can join (SLURM, TPU pod, explicit)."""
    if environ.get("JAX_COORDINATOR_ADDRESS") or environ.get("DIFFARIFF_DISTRIBUTED") == "1":
        return True
    if int(environ.get("SLURM_NTASKS", "1")) > 1 and "SLURM_STEP_ID" in environ:
        return True
    return "," in environ.get("TPU_WORKER_HOSTNAMES", "")


def _slurm_tasks_per_node(environ: Mapping[str, str]) -> int | None:
    """Tasks per node of the current SLURM step ("8", "8(x4)"), or None outside a step."""
    text = environ.get("SLURM_STEP_TASKS_PER_NODE") or environ.get("SLURM_TASKS_PER_NODE") or ""
    if text.split("(")[0].isdigit():
        return int(text.split("(")[0])
    nodes = environ.get("SLURM_STEP_NUM_NODES") or environ.get("SLURM_NNODES")
    if nodes and environ.get("SLURM_NTASKS"):
        return int(environ["SLURM_NTASKS"]) // max(int(nodes), 1)
    return None


def _node_gpu_count(environ: Mapping[str, str]) -> int | None:
    if environ.get("SLURM_GPUS_ON_NODE", "").isdigit():
        return int(environ["SLURM_GPUS_ON_NODE"])
    visible = [d for d in environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if d.strip()]
    return len(visible) or None


def distributed_kwargs(coordinator_address: str | None = None, num_processes: int | None = None,
                       process_id: int | None = None, environ: Mapping[str, str] = os.environ) -> dict | None:
    """The arguments for jax.distributed.initialize, or None for a single-process run.

    One process per node owns all its GPUs (launch/gpu_train.sh), or one task per GPU when SLURM starts
    several tasks per node. JAX's SLURM detection alone would restrict every process to the GPU numbered
    SLURM_LOCALID, even when it was given the coordinator, count and id explicitly, so a `-N 4
    --gpus-per-node 8` job with one task per node trained on 4 GPUs:
      - all of coordinator, count and id given: detection is switched off, every local GPU stays visible;
      - SLURM detection with one task per node: local_device_ids = all the node's GPUs;
      - SLURM detection with several tasks per node: JAX's one-GPU-per-task default (SLURM_LOCALID).
    """
    coordinator_address = coordinator_address or environ.get("JAX_COORDINATOR_ADDRESS") or None
    if num_processes is None and environ.get("JAX_NUM_PROCESSES"):
        num_processes = int(environ["JAX_NUM_PROCESSES"])
    if process_id is None and environ.get("JAX_PROCESS_ID"):
        process_id = int(environ["JAX_PROCESS_ID"])
    if coordinator_address is None and not _multihost_env(environ):
        return None
    kwargs: dict[str, Any] = dict(coordinator_address=coordinator_address, num_processes=num_processes,
                                  process_id=process_id)
    if None not in (coordinator_address, num_processes, process_id):
        kwargs["cluster_detection_method"] = "deactivate"
    elif "SLURM_LOCALID" in environ and _slurm_tasks_per_node(environ) == 1 and not environ.get("JAX_LOCAL_DEVICE_IDS"):
        gpus = _node_gpu_count(environ)
        if gpus:
            kwargs["local_device_ids"] = list(range(gpus))
        else:
            logging.warning("one SLURM task per node but its GPU count is unknown (no SLURM_GPUS_ON_NODE or "
                            "CUDA_VISIBLE_DEVICES): JAX will use one GPU per task")
    return kwargs


def maybe_initialize_distributed(coordinator_address: str | None = None, num_processes: int | None = None,
                                 process_id: int | None = None) -> bool:
    """Calls jax.distributed.initialize() for multi-process runs; returns whether it did.

    Explicit arguments win; otherwise JAX_COORDINATOR_ADDRESS (+ JAX_NUM_PROCESSES, JAX_PROCESS_ID), a
    multi-task SLURM step, a multi-worker TPU slice or DIFFARIFF_DISTRIBUTED=1 (set by launch/tpu_train.sh)
    trigger JAX's own cluster detection (see `distributed_kwargs` for which GPUs each process gets). Must
    run before anything touches a JAX backend. CPU runs use gloo collectives.
    """
    kwargs = distributed_kwargs(coordinator_address, num_processes, process_id)
    if kwargs is None:
        return False
    if "cpu" in os.environ.get("JAX_PLATFORMS", "").split(","):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")
    jax.distributed.initialize(**kwargs)
    logging.info("joined a %d-process job as process %d", jax.process_count(), jax.process_index())
    return True
