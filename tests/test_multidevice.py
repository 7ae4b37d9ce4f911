"""8 CPU devices in a subprocess: a 4x2 (data x fsdp) mesh trains like 1 device; restore onto another mesh."""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import json, sys
    import jax, numpy as np
    sys.path.insert(0, "tests")
    from scenario_tasks import tiny_ldm_setup
    from diffariff_jax.training import checkpoint as ckpt, loop, mesh as mesh_lib
    from diffariff_jax.training.logging import read_metrics

    workdir = sys.argv[1]
    config, task, batches = tiny_ldm_setup(batch_size=8, num_steps=3, eval_batches=0)
    config.mesh.min_fsdp_size = 64  # small enough that the tiny model's kernels really get split
    out = {}
    for name, shape, devices in (("one", (1, 1), jax.devices()[:1]), ("mesh", (4, 2), jax.devices())):
        config.mesh.data, config.mesh.fsdp = shape
        mesh = mesh_lib.make_mesh(config.mesh, devices)
        loop.train(config, f"{workdir}/{name}", task=task, batches=batches, mesh=mesh)
        out[name] = [r["loss"] for r in read_metrics(f"{workdir}/{name}", "train")]
    # the 4x2 run's checkpoint restored onto a 2x4 mesh: same values, new shardings
    config.mesh.data, config.mesh.fsdp = 2, 4
    other = mesh_lib.make_mesh(config.mesh)
    with jax.set_mesh(other):
        target, _ = loop.abstract_state(task, config, other)
        manager = ckpt.make_manager(f"{workdir}/mesh", config.train)
        state, _, step = ckpt.restore_latest(manager, target)
        manager.close()
    _, ema = ckpt.load_for_inference(f"{workdir}/mesh")
    leaves = jax.tree.leaves(state.ema_params)
    out["restored_step"] = step
    out["restored_matches"] = all(np.allclose(np.asarray(a), np.asarray(b))
                                  for a, b in zip(leaves, jax.tree.leaves(ema)))
    out["fsdp_split_leaves"] = sum("fsdp" in str(x.sharding.spec) for x in leaves)
    out["restored_on_other_mesh"] = all(x.sharding.mesh.shape == other.shape for x in leaves)
    print("RESULT " + json.dumps(out))
""")


def test_4x2_mesh_matches_one_device_and_restores_on_another_mesh(tmp_path):
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    out = json.loads(lines[-1][len("RESULT "):])
    assert len(out["one"]) == len(out["mesh"]) == 3
    assert out["one"] == pytest.approx(out["mesh"], rel=1e-4, abs=1e-5)
    assert out["restored_step"] == 3 and out["restored_matches"] and out["restored_on_other_mesh"]
    assert out["fsdp_split_leaves"] > 0


GATHER_SCRIPT = textwrap.dedent("""
    import json
    import jax, jax.numpy as jnp, numpy as np
    from configs.ldm import get_config
    from diffariff_jax.training import mesh as mesh_lib, state as state_lib

    class Quadratic:
        # A least-squares task whose loss ignores the key, so one device and the mesh must agree.
        def __init__(self, config):
            self.config = config
        def init_params(self, key):
            k1, k2 = jax.random.split(key)
            return {"w": jax.random.normal(k1, (16, 64)) * 0.1, "b": jax.random.normal(k2, (64,)) * 0.1}
        def loss(self, params, batch, key, step):
            err = batch["x"] @ params["w"] + params["b"] - batch["y"]
            return jnp.mean(err ** 2), {"err_abs": jnp.mean(jnp.abs(err))}

    config = get_config("tiny")
    config.mesh.update(min_fsdp_size=256, gather_params=True)
    rng = np.random.default_rng(0)
    batch = {"x": jnp.asarray(rng.normal(size=(8, 16)), jnp.float32),
             "y": jnp.asarray(rng.normal(size=(8, 64)), jnp.float32)}
    out = {}
    for name, shape, devices in (("one", (1, 1), jax.devices()[:1]), ("mesh", (4, 2), jax.devices())):
        config.mesh.data, config.mesh.fsdp = shape
        task = Quadratic(config)
        mesh = mesh_lib.make_mesh(config.mesh, devices)
        with jax.set_mesh(mesh):
            state = state_lib.create_train_state(task, jax.random.PRNGKey(0))
            shard = lambda tree: jax.device_put(tree, mesh_lib.tree_shardings(tree, mesh, 256))
            state = state.replace(params=shard(state.params), ema_params=shard(state.ema_params),
                                  opt_state=shard(state.opt_state))
            rows = jax.device_put(batch, mesh_lib.batch_sharding(mesh))
            step = jax.jit(lambda s, b: state_lib.train_step(task, s, b))
            new, metrics = step(state, rows)
            out[name] = {"loss": float(metrics["loss"]), "err_abs": float(metrics["err_abs"]),
                         "grad_norm": float(metrics["grad_norm"]),
                         "w": np.asarray(new.params["w"]).ravel().tolist(),
                         "w_sharding": str(new.params["w"].sharding.spec)}
    print("RESULT " + json.dumps(out))
""")


def test_gather_params_makes_the_same_update_as_one_device():
    """mesh.gather_params (weights all-gathered for the forward pass, gradients constrained back onto their
    shards): on a 4x2 mesh the loss, metrics, gradient norm and updated weights are one device's, and the
    weights stay fsdp-sharded. Which collectives it compiles to: tests/test_aot.py."""
    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=8", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", GATHER_SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=600)
    lines = [line for line in proc.stdout.splitlines() if line.startswith("RESULT ")]
    assert proc.returncode == 0 and lines, proc.stderr[-3000:]
    one, mesh = (json.loads(lines[-1][len("RESULT "):])[k] for k in ("one", "mesh"))
    for key in ("loss", "err_abs", "grad_norm"):
        assert mesh[key] == pytest.approx(one[key], rel=1e-5), key
    assert mesh["w"] == pytest.approx(one["w"], rel=1e-5, abs=1e-7)
    assert "fsdp" in mesh["w_sharding"] and "fsdp" not in one["w_sharding"]
