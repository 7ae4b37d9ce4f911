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
