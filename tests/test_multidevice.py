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
