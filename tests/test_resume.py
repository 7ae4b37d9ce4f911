"""SIGTERM a tiny LDM run (the real CLI, latent records, tiny UNet) mid-way, corrupt its newest checkpoint,
restart: the restarted run falls back to the previous checkpoint and its losses equal an uninterrupted run's."""
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np

from diffariff_jax.training.logging import read_metrics
from scenario_tasks import CLI_OVERRIDES, write_tiny_latents

REPO = Path(__file__).resolve().parents[1]
STEPS = 12


def _command(workdir, records, num_steps):
    # constant LR after warmup: the interrupted run may be given more steps without changing the schedule
    return [sys.executable, "-m", "diffariff_jax.train", "--config", "configs/ldm.py:tiny", "--workdir", str(workdir),
            f"--config.data.records_dir={records}", f"--config.train.num_steps={num_steps}",
            "--config.train.batch_size=4", "--config.train.lr_schedule=constant", "--config.train.warmup_steps=2",
            "--config.train.log_every=1", "--config.train.ckpt_every=2", "--config.train.eval_batches=0",
            "--config.train.tensorboard=False", *CLI_OVERRIDES]


def _losses(workdir):
    return {r["step"]: r["loss"] for r in read_metrics(str(workdir), "train")}  # a re-run step: the last wins


def test_sigterm_restart_and_corrupt_newest_checkpoint_reproduce_losses(tmp_path):
    records = write_tiny_latents(tmp_path / "latents")
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    full = subprocess.run(_command(tmp_path / "full", records, STEPS), cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    assert full.returncode == 0, full.stderr[-3000:]

    # The interrupted run is allowed many more steps so it cannot finish before the signal arrives.
    cut = tmp_path / "cut"
    proc = subprocess.Popen(_command(cut, records, 10_000), cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    for line in proc.stdout:
        if line.startswith("step 3 train"):
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 75, err[-3000:]  # saved, then exited with the "preempted" status
    saved = sorted(int(p.name) for p in (cut / "checkpoints").iterdir() if p.name.isdigit())
    stopped = saved[-1]
    assert 3 <= stopped < STEPS and f"preempted: saved step {stopped}" in out
    assert saved[-2] == 2 * ((stopped - 1) // 2)  # the interval checkpoint before it

    # Damage the newest checkpoint: the restart must fall back to the one before.
    state_dir = cut / "checkpoints" / str(stopped) / "state"
    for path in state_dir.iterdir():
        if path.is_dir():
            shutil.rmtree(path)
    resumed = subprocess.run(_command(cut, records, STEPS), cwd=REPO, env=env, capture_output=True, text=True,
                             timeout=300)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"checkpoint step {stopped} in" in resumed.stderr and "unreadable" in resumed.stderr
    reference, restarted = _losses(tmp_path / "full"), _losses(cut)
    assert sorted(reference) == sorted(restarted) == list(range(1, STEPS + 1))
    np.testing.assert_allclose([restarted[s] for s in range(1, STEPS + 1)],
                               [reference[s] for s in range(1, STEPS + 1)], rtol=1e-5)


def test_sigterm_after_the_log_reader_died_still_saves_and_exits_75(tmp_path):
    """`train ... 2>&1 | tee log` over ssh: a preemption or a dropped session kills `tee` first. The run must
    then still save on SIGTERM and exit 75, not die of BrokenPipeError with no checkpoint written."""
    records = write_tiny_latents(tmp_path / "latents")
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    cut = tmp_path / "cut"
    proc = subprocess.Popen(_command(cut, records, 10_000), cwd=REPO, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:
        if line.startswith("step 3 train"):
            break
    proc.stdout.close()  # the reader is gone: every later write of the run hits a closed pipe
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=300) == 75
    saved = sorted(int(p.name) for p in (cut / "checkpoints").iterdir() if p.name.isdigit())
    assert saved and saved[-1] >= 3
    assert max(_losses(cut)) == saved[-1]  # metrics.jsonl still got every step up to the saved one
