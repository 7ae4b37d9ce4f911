"""Mesh sizes with -1, fsdp sharding rules over shapes, global batches (1 CPU device in-process)."""
import jax
import ml_collections
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from diffariff_jax.training import mesh as mesh_lib


def _cfg(data, fsdp):
    return ml_collections.ConfigDict({"data": data, "fsdp": fsdp})


@pytest.mark.parametrize("data,fsdp,expected", [(-1, 1, (8, 1)), (-1, 2, (4, 2)), (2, -1, (2, 4)), (4, 2, (4, 2))])
def test_mesh_shape_fills_minus_one(data, fsdp, expected):
    assert mesh_lib.mesh_shape(_cfg(data, fsdp), 8) == expected


@pytest.mark.parametrize("data,fsdp", [(3, 2), (-1, 3), (-1, -1), (0, -1)])
def test_mesh_shape_rejects_sizes_that_do_not_fit(data, fsdp):
    with pytest.raises(mesh_lib.MeshError, match="mesh|divide"):
        mesh_lib.mesh_shape(_cfg(data, fsdp), 8)


def test_make_mesh_axes_and_types():
    mesh = mesh_lib.make_mesh(_cfg(-1, 1))
    assert mesh.axis_names == ("data", "fsdp")
    assert mesh.shape["data"] == len(jax.devices()) and mesh.shape["fsdp"] == 1
    assert all(t == jax.sharding.AxisType.Auto for t in mesh.axis_types)


def test_param_spec_rules():
    # largest divisible dimension wins; a non-divisible largest dim falls through to the next one
    assert mesh_lib.param_spec((256, 512), 4, 1024) == P(None, "fsdp")
    assert mesh_lib.param_spec((3, 3, 64, 130), 4, 1024) == P(None, None, "fsdp", None)
    # below the size threshold, not divisible at all, or no fsdp axis: replicated
    assert mesh_lib.param_spec((16, 16), 4, 1024) == P()
    assert mesh_lib.param_spec((3, 5, 7, 9, 11), 4, 1) == P()
    assert mesh_lib.param_spec((4096, 4096), 1, 1024) == P()
    assert mesh_lib.param_spec((), 4, 0) == P()
    # ties go to the later dimension
    assert mesh_lib.param_spec((64, 64), 2, 1) == P(None, "fsdp")


def test_tree_shardings_follow_shapes():
    mesh = mesh_lib.make_mesh(_cfg(1, -1))
    tree = {"kernel": np.zeros((8, 32)), "bias": np.zeros(32), "count": np.zeros((), np.int32)}
    shardings = mesh_lib.tree_shardings(tree, mesh, min_fsdp_size=0)
    assert set(shardings) == set(tree)
    assert all(s.mesh is mesh for s in shardings.values())


def test_make_global_batch_values_and_sharding():
    mesh = mesh_lib.make_mesh(_cfg(-1, 1))
    n = len(jax.devices())
    batch = {"target": np.arange(2 * n * 3, dtype=np.float32).reshape(2 * n, 3)}
    out = mesh_lib.make_global_batch(batch, mesh)
    np.testing.assert_array_equal(np.asarray(out["target"]), batch["target"])
    assert out["target"].sharding.spec == P(("data", "fsdp"))


def test_maybe_initialize_distributed_is_a_no_op_on_one_host(monkeypatch):
    for name in ("JAX_COORDINATOR_ADDRESS", "SLURM_NTASKS", "TPU_WORKER_HOSTNAMES", "DIFFARIFF_DISTRIBUTED"):
        monkeypatch.delenv(name, raising=False)
    assert mesh_lib.maybe_initialize_distributed() is False


def test_per_host_batch_size_checks_divisibility():
    mesh = mesh_lib.make_mesh(_cfg(-1, 1))
    n = mesh.size
    assert mesh_lib.per_host_batch_size(4 * n, mesh) == 4 * n
    with pytest.raises(mesh_lib.MeshError, match="not a positive multiple"):
        mesh_lib.per_host_batch_size(0, mesh)


def _slurm_env(tasks_per_node, nodes=4, gpus=8, procid=5):
    """The variables srun sets in one task of `-N nodes --gpus-per-node gpus --ntasks-per-node tasks_per_node`."""
    ntasks = nodes * tasks_per_node
    return {"SLURM_JOB_ID": "4242", "SLURM_STEP_ID": "0", "SLURM_NTASKS": str(ntasks), "SLURM_PROCID": str(procid),
            "SLURM_LOCALID": str(procid % tasks_per_node), "SLURM_STEP_NODELIST": "gpu[01-04]",
            "SLURM_STEP_NUM_NODES": str(nodes), "SLURM_STEP_TASKS_PER_NODE": f"{tasks_per_node}(x{nodes})",
            "SLURM_GPUS_ON_NODE": str(gpus),
            "CUDA_VISIBLE_DEVICES": ",".join(map(str, range(gpus))) if tasks_per_node == 1 else str(procid % gpus)}


def _resolved_by_jax(kwargs):
    """(coordinator, count, id, local_device_ids) as jax.distributed.initialize resolves `kwargs` (its own
    cluster detection unless switched off; local_device_ids None = every local device visible)."""
    from jax._src.clusters import ClusterEnv

    args = (kwargs["coordinator_address"], kwargs["num_processes"], kwargs["process_id"],
            kwargs.get("local_device_ids"))
    if kwargs.get("cluster_detection_method") == "deactivate" or None not in args:
        return args
    return ClusterEnv.auto_detect_unset_distributed_params(*args, kwargs.get("cluster_detection_method"), 300)


@pytest.mark.parametrize("explicit", [False, True])
def test_slurm_one_task_per_node_sees_all_its_gpus(monkeypatch, explicit):
    for name, value in _slurm_env(tasks_per_node=1).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("JAX_LOCAL_DEVICE_IDS", raising=False)
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    captured = {}
    monkeypatch.setattr(mesh_lib.jax.distributed, "initialize", lambda **kw: captured.update(kw))
    args = ("gpu01:12355", 4, 1) if explicit else (None, None, None)  # gpu_train.sh passes all three
    assert mesh_lib.maybe_initialize_distributed(*args)
    coordinator, count, pid, local_ids = _resolved_by_jax(captured)
    assert local_ids in (None, list(range(8)))  # was [0]: one GPU per node
    assert (count, pid) == ((4, 1) if explicit else (4, 5))
    assert coordinator == "gpu01:12355" if explicit else coordinator.startswith("gpu01:")  # first host


def test_slurm_one_task_per_gpu_keeps_one_gpu_per_task(monkeypatch):
    for name, value in _slurm_env(tasks_per_node=8, procid=13).items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("JAX_LOCAL_DEVICE_IDS", raising=False)
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    kwargs = mesh_lib.distributed_kwargs()
    assert _resolved_by_jax(kwargs)[1:] == (32, 13, [5])
