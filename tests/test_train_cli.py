"""`python -m diffariff_jax.train`: bad input fails with one clear line before anything compiles."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def _train(*args, workdir):
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run([sys.executable, "-m", "diffariff_jax.train", "--workdir", str(workdir), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    return proc.returncode, lines, proc.stderr


@pytest.mark.parametrize("override,message", [
    ("--config.train.no_such_key=1", "error: unknown config key --config.train.no_such_key: the config has no "
                                     "field 'no_such_key'"),
    ("--config.trian.lr=1", "error: unknown config key --config.trian.lr: the config has no field 'trian' "
                            "(did you mean 'train'?)"),
])
def test_unknown_config_key(tmp_path, override, message):
    rc, errors, stderr = _train("--config", "configs/ldm.py:tiny", override, workdir=tmp_path / "run")
    assert rc == 1 and errors == [message], stderr[-2000:]
    assert "Traceback" not in stderr


def test_workdir_of_another_model_kind(tmp_path):
    workdir = tmp_path / "cae_run"
    workdir.mkdir()
    (workdir / "config.json").write_text(json.dumps({"kind": "cae"}))
    rc, errors, stderr = _train("--config", "configs/ldm.py:tiny", f"--config.data.records_dir={tmp_path}",
                                workdir=workdir)
    assert rc == 1 and errors == [f"error: workdir {workdir} holds a 'cae' model, not 'ldm'; use another --workdir"]
    assert "Traceback" not in stderr


def test_data_dir_without_records_fails_before_compiling(tmp_path):
    empty = tmp_path / "latents"
    empty.mkdir()
    rc, errors, stderr = _train("--config", "configs/ldm.py:tiny", f"--config.data.records_dir={empty}",
                                workdir=tmp_path / "run")
    assert rc == 1 and len(errors) == 1 and errors[0].startswith(f"error: LDM data: {empty}: no latents.json")
    assert "Traceback" not in stderr
    # nothing was started: no config, no checkpoint written
    assert not (tmp_path / "run").exists()


def test_ldm_takes_clap_dim_from_records_unless_overridden(tmp_path):
    from scenario_tasks import write_tiny_latents

    records = write_tiny_latents(tmp_path / "latents", frames=12, clap_dim=16)  # tiny: clap_dim 32, crops of 16
    # Not overridden: clap_dim 16 is taken from latents.json, so the next problem reported is the crop length.
    rc, errors, stderr = _train("--config", "configs/ldm.py:tiny", f"--config.data.records_dir={records}",
                                workdir=tmp_path / "run")
    assert rc == 1 and len(errors) == 1 and "crop_frames=16 is longer than the 12 frames" in errors[0], stderr[-2000:]
    rc, errors, stderr = _train("--config", "configs/ldm.py:tiny", f"--config.data.records_dir={records}",
                                "--config.model.clap_dim=32", workdir=tmp_path / "run")
    assert rc == 1 and errors == [f"error: LDM data: {records} holds clap_dim=16 records but config.model.clap_dim=32;"
                                  " pass --config.model.clap_dim=16"], stderr[-2000:]
    assert "Traceback" not in stderr and not (tmp_path / "run").exists()


def test_orbax_info_chatter_is_filtered_but_its_warnings_stay():
    import logging

    from diffariff_jax.absl_cli import QuietOrbax

    def record(level, path):
        return logging.LogRecord("absl", level, path, 1, "msg", None, None)

    quiet = QuietOrbax()
    assert not quiet.filter(record(logging.INFO, "/venv/site-packages/orbax/checkpoint/manager.py"))
    assert quiet.filter(record(logging.WARNING, "/venv/site-packages/orbax/checkpoint/manager.py"))
    assert quiet.filter(record(logging.INFO, "/repo/diffariff_jax/training/loop.py"))


def test_relative_workdir_from_another_cwd_trains_and_resumes(tmp_path):
    """README's `--workdir runs/ldm`: relative paths are made absolute at the command line (orbax refuses
    relative ones at the first save), so a run started from any cwd saves, and rerunning it resumes."""
    from diffariff_jax.training.logging import read_metrics
    from scenario_tasks import CLI_OVERRIDES, write_tiny_latents

    elsewhere = tmp_path / "elsewhere"
    write_tiny_latents(elsewhere / "latents")
    env = dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3")

    def run(steps):
        return subprocess.run([sys.executable, "-m", "diffariff_jax.train", "--config", f"{REPO}/configs/ldm.py:tiny",
                               "--workdir", "runs/ldm", "--config.data.records_dir=latents",
                               f"--config.train.num_steps={steps}", "--config.train.batch_size=4",
                               "--config.train.ckpt_every=2", "--config.train.eval_batches=0",
                               "--config.train.log_every=1", "--config.train.tensorboard=False", *CLI_OVERRIDES],
                              cwd=elsewhere, env=env, capture_output=True, text=True, timeout=300)

    first = run(2)
    assert first.returncode == 0, first.stderr[-3000:]
    workdir = elsewhere / "runs" / "ldm"
    assert (workdir / "checkpoints" / "2").is_dir()
    assert json.loads((workdir / "config.json").read_text())["data"]["records_dir"] == str(elsewhere / "latents")
    second = run(3)
    assert second.returncode == 0, second.stderr[-3000:]
    assert "resumed from step 2" in second.stderr
    assert [r["step"] for r in read_metrics(str(workdir), "train")] == [1, 2, 3]


def test_records_on_a_bucket_fail_at_start_in_one_line(tmp_path):
    rc, errors, stderr = _train("--config", "configs/ldm.py:tiny", "--config.data.records_dir=gs://bucket/latents",
                                workdir=tmp_path / "run")
    assert rc == 1 and errors == ["error: --config.data.records_dir gs://bucket/latents: only a local path works "
                                  "here (mount the bucket with gcsfuse or copy it to local disk; see "
                                  "docs/training.md)"], stderr[-2000:]
    assert "Traceback" not in stderr and not (tmp_path / "run").exists()


def test_an_unexpected_failure_exits_70_not_the_user_error_status(tmp_path):
    """launch/tpu_babysit.sh stops on exit 1 (the input is wrong) and relaunches on anything else: a crash
    that is not a user error (here the loop raising) must not look like one."""
    from scenario_tasks import write_tiny_latents

    records = write_tiny_latents(tmp_path / "latents")
    script = ("import sys\n"
              "from diffariff_jax.training import loop\n"
              "def crash(*args, **kwargs):\n"
              "    raise RuntimeError('lost the coordinator')\n"
              "loop.train = crash\n"
              "from diffariff_jax import train\n"
              f"sys.argv = ['train', '--config', 'configs/ldm.py:tiny', '--workdir', {str(tmp_path / 'run')!r},\n"
              f"            '--config.data.records_dir={records}', '--config.data.crop_frames=8',\n"
              "            '--config.model.clap_dim=16']\n"
              "train.run()\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=dict(os.environ, JAX_PLATFORMS="cpu", TF_CPP_MIN_LOG_LEVEL="3"))
    assert proc.returncode == 70, proc.stderr[-2000:]
    assert "RuntimeError: lost the coordinator" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == "error: internal failure (exit 70; see the traceback above)"
