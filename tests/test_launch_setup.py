"""launch/tpu_setup.sh on a worker as the default TPU image leaves it: a python3 that is 3.10 with no venv
module, a .venv half-built by a killed run. Run for real in --dry-run on a copy of the repo with fake
interpreters on PATH: the probes run, the actions are listed."""
import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FILES = ("launch/tpu_setup.sh", "requirements.txt", "setup.py")


def _fake_python(path: Path, version: str, pip: bool) -> None:
    """A `python` answering the script's probes as an interpreter of `version` (with or without pip)."""
    major, minor = version.split(".")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"""#!/bin/sh
case "$*" in
  *version_info*) [ {minor} -ge 11 ] && [ {major} -ge 3 ] && exit 0; exit 1 ;;
  *"-m pip"*) {"exit 0" if pip else "echo 'No module named pip' >&2; exit 1"} ;;
  *ensurepip*) exit 1 ;;
  *--version*) echo "Python {version}.12" ;;
esac
""")
    path.chmod(0o755)


def _worker(tmp_path: Path, system_python: str | None) -> tuple[Path, dict]:
    root = tmp_path / "worker"
    for name in FILES:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, root / name)
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    if system_python == "3.10":
        _fake_python(bin_dir / "python3", "3.10", pip=True)
    elif system_python == "good":
        (bin_dir / "python3").write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')  # >= 3.11, has venv
        (bin_dir / "python3").chmod(0o755)
    env = dict(os.environ, PATH=f"{bin_dir}:/usr/bin:/bin", HOME=str(tmp_path / "home"),
               UV=str(tmp_path / "home" / ".local" / "bin" / "uv"))
    return root, env


def _setup(root: Path, env: dict) -> tuple[int, list[str]]:
    proc = subprocess.run(["bash", "launch/tpu_setup.sh", "--dry-run"], cwd=root, env=env, capture_output=True,
                          text=True, timeout=60)
    return proc.returncode, proc.stdout.splitlines() + proc.stderr.splitlines()


def _stamp(root: Path) -> Path:
    digest = hashlib.sha256(b"".join((root / name).read_bytes()
                                     for name in ("requirements.txt", "setup.py", "launch/tpu_setup.sh")))
    return root / ".venv" / f".tpu-setup-{digest.hexdigest()[:16]}"


def test_python_310_and_a_half_built_venv_are_rebuilt_with_uv(tmp_path):
    root, env = _worker(tmp_path, "3.10")
    _fake_python(root / ".venv" / "bin" / "python", "3.11", pip=False)  # killed before pip was installed
    _stamp(root).touch()  # even a stamp does not make a broken .venv "set up"
    rc, lines = _setup(root, env)
    assert rc == 0, lines
    actions = [line for line in lines if line.startswith("+ ")]
    assert actions[0] == "+ rm -rf .venv"
    assert actions[1] == "+ sh -c curl -LsSf https://astral.sh/uv/install.sh | sh"
    assert actions[2] == f"+ {env['UV']} venv --seed --python 3.11 .venv"
    assert not any("python3 -m venv" in line for line in actions)
    assert any("python3 on" in line and "Python 3.10.12" in line for line in lines)
    reqs = next(line for line in lines if line.startswith("# TPU requirements: "))
    assert "jax==0.10.2" in reqs and "orbax-checkpoint==" in reqs and "tensorflow-cpu==" in reqs
    assert "torch==" not in reqs and "transformers==" not in reqs
    assert any('jax[tpu]==0.10.2' in line for line in actions) and actions[-1].startswith("+ touch .venv/.tpu-setup-")


def test_a_recent_system_python_makes_the_venv_itself(tmp_path):
    root, env = _worker(tmp_path, "good")
    rc, lines = _setup(root, env)
    assert rc == 0, lines
    actions = [line for line in lines if line.startswith("+ ")]
    assert actions[0] == "+ python3 -m venv .venv" and not any(" uv " in line or "/uv" in line for line in actions)


def test_a_working_venv_with_its_stamp_is_skipped(tmp_path):
    root, env = _worker(tmp_path, "3.10")
    _fake_python(root / ".venv" / "bin" / "python", "3.11", pip=True)
    _stamp(root).touch()
    rc, lines = _setup(root, env)
    assert rc == 0 and any("already set up" in line for line in lines)
    assert not [line for line in lines if line.startswith("+ ")]
