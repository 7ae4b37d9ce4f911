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

    from diffariff_jax.train import _QuietOrbax

    def record(level, path):
        return logging.LogRecord("absl", level, path, 1, "msg", None, None)

    quiet = _QuietOrbax()
    assert not quiet.filter(record(logging.INFO, "/venv/site-packages/orbax/checkpoint/manager.py"))
    assert quiet.filter(record(logging.WARNING, "/venv/site-packages/orbax/checkpoint/manager.py"))
    assert quiet.filter(record(logging.INFO, "/repo/diffariff_jax/training/loop.py"))
