"""Two processes on localhost (jax.distributed, loopback coordinator, gloo CPU collectives) train the tiny
LDM together, each reading its own shard of the latent records; both end with the same params."""
import json
import os
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np

from scenario_tasks import write_tiny_latents

REPO = Path(__file__).resolve().parents[1]

SCRIPT = textwrap.dedent("""
    import hashlib, json, sys
    from diffariff_jax.training import mesh as mesh_lib

    coordinator, process_id, workdir, records = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    assert mesh_lib.maybe_initialize_distributed(coordinator, 2, process_id)
    import jax, numpy as np
    from configs.ldm import get_config
    from diffariff_jax.training import loop, tasks

    config = get_config("tiny")
    config.model.update(channels=16, channel_mult=(1,), attn_levels=(), clap_dim=16)
    config.data.update(records_dir=records, crop_frames=8)
    config.train.update(batch_size=4, num_steps=3, log_every=1, eval_batches=0, ckpt_every=3, tensorboard=False)
    config.mesh.update(data=2, fsdp=1)
    seen = []
    def batches(split, start):  # the production reader, recording which rows this host reads
        for batch in tasks.make_batches(config, split, start, process_index=jax.process_index(),
                                        process_count=jax.process_count()):
            seen.append(float(batch["target"].sum()))
            yield batch
    result = loop.train(config, workdir, batches=batches)
    local = [np.asarray(x.addressable_data(0)) for x in jax.tree.leaves(result.state.params)]
    digest = hashlib.sha256(b"".join(a.tobytes() for a in local)).hexdigest()
    print("RESULT " + json.dumps({"process": jax.process_index(), "count": jax.process_count(),
                                  "params": digest, "step": result.step, "rows": seen[:3]}))
""")


def _free_port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_processes_train_together_and_agree(tmp_path):
    records = write_tiny_latents(tmp_path / "latents")
    coordinator = f"127.0.0.1:{_free_port()}"
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    procs = [subprocess.Popen([sys.executable, "-c", SCRIPT, coordinator, str(i), str(tmp_path / "run"), str(records)],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=400) for p in procs]
    results = []
    for proc, (out, err) in zip(procs, outputs):
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, err[-3000:]
        results.append(json.loads(lines[-1][len("RESULT "):]))
    assert sorted(r["process"] for r in results) == [0, 1] and all(r["count"] == 2 for r in results)
    assert all(r["step"] == 3 for r in results)
    assert results[0]["params"] == results[1]["params"]
    assert results[0]["rows"] != results[1]["rows"]  # each host read its own shard of the records
    # process 0 alone wrote the metrics and the checkpoint holds the shared step
    assert (tmp_path / "run" / "checkpoints" / "3").is_dir()
    losses = [json.loads(line)["loss"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(losses) == 3 and np.all(np.isfinite(losses))


LOAD_SCRIPT = textwrap.dedent("""
    import json, sys
    from diffariff_jax.training import mesh as mesh_lib

    coordinator, process_id = sys.argv[1], int(sys.argv[2])
    assert mesh_lib.maybe_initialize_distributed(coordinator, 2, process_id)
    import jax, numpy as np
    from diffariff_jax.training import checkpoint as ckpt

    out = {"process": jax.process_index()}
    for name in sys.argv[3:]:  # a training workdir, then a release dir
        config, params = ckpt.load_for_inference(name, kind="ldm")
        kernel = params["dense"]["kernel"]
        out[name] = {"sum": float(np.asarray(kernel).sum()),
                     "local": all(d.process_index == jax.process_index() for d in kernel.devices())}
    print("RESULT " + json.dumps(out))
""")


def test_every_process_loads_a_checkpoint_for_inference(tmp_path):
    """Multi-host precompute and in-training sampling call load_for_inference on every process; each must get
    the params on a device of its own (jax.devices()[0] is process 0's, not addressable on process 1)."""
    from test_checkpoint import _config, _save_steps

    from diffariff_jax.training import checkpoint as ckpt

    config = _config()
    _save_steps(tmp_path / "run", config, [3]).close()
    ckpt.save_release(tmp_path / "release", config, {"dense": {"kernel": np.ones((3, 4), np.float32)}})
    coordinator = f"127.0.0.1:{_free_port()}"
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    procs = [subprocess.Popen([sys.executable, "-c", LOAD_SCRIPT, coordinator, str(i), str(tmp_path / "run"),
                               str(tmp_path / "release")], cwd=REPO, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    for proc, (out, err) in zip(procs, outputs):
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, err[-3000:]
        result = json.loads(lines[-1][len("RESULT "):])
        assert result[str(tmp_path / "run")] == {"sum": 13.0 * 12, "local": True}  # EMA of step 3: 1*10+3
        assert result[str(tmp_path / "release")] == {"sum": 12.0, "local": True}


AGREE_SCRIPT = textwrap.dedent("""
    import json, sys
    from diffariff_jax.training import mesh as mesh_lib

    coordinator, process_id, workdir = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    assert mesh_lib.maybe_initialize_distributed(coordinator, 2, process_id)
    import jax
    from jax.sharding import NamedSharding, PartitionSpec as P
    sys.path.insert(0, "tests")
    from test_checkpoint import _config, _state
    from diffariff_jax.training import checkpoint as ckpt

    config = _config()
    mesh = jax.make_mesh((2, 1), ("data", "fsdp"), axis_types=(jax.sharding.AxisType.Auto,) * 2)
    shapes = jax.eval_shape(lambda: _state(0))
    target = ckpt.abstract_like(shapes, jax.tree.map(lambda _: NamedSharding(mesh, P()), shapes))
    manager = ckpt.make_manager(workdir, config.train)
    if jax.process_index() == 1:  # only this host cannot see the newest step's files (e.g. a stale mount)
        real = ckpt.precheck
        ckpt.precheck = lambda manager, step: (1, "state/_METADATA is missing") if step == 3 else real(manager, step)
    state, position, step = ckpt.restore_latest(manager, target)
    manager.close()
    print("RESULT " + json.dumps({"process": jax.process_index(), "step": step, "state_step": int(state.step)}))
""")


def test_hosts_agree_on_the_newest_step_all_can_read(tmp_path):
    """A step one host cannot read is skipped by all (else the hosts would start from different states)
    and set aside once, by process 0."""
    from test_checkpoint import _config, _save_steps

    _save_steps(tmp_path / "run", _config(), [2, 3]).close()
    coordinator = f"127.0.0.1:{_free_port()}"
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    procs = [subprocess.Popen([sys.executable, "-c", AGREE_SCRIPT, coordinator, str(i), str(tmp_path / "run")],
                              cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for i in range(2)]
    outputs = [p.communicate(timeout=300) for p in procs]
    results = []
    for proc, (out, err) in zip(procs, outputs):
        lines = [line for line in out.splitlines() if line.startswith("RESULT ")]
        assert proc.returncode == 0 and lines, err[-3000:]
        results.append(json.loads(lines[-1][len("RESULT "):]))
    assert sorted((r["process"], r["step"], r["state_step"]) for r in results) == [(0, 2, 2), (1, 2, 2)]
    assert not (tmp_path / "run" / "checkpoints" / "3").exists()
    assert (tmp_path / "run" / "unreadable_checkpoints" / "3").is_dir()
