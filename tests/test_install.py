"""What `make install` leaves a user: `import jax` on a CPU host is quiet (libtpu is kept out of the
importable packages), and the AOT command still finds libtpu."""
import os
import subprocess
import sys

from diffariff_jax.training import aot_report


def test_plain_jax_import_does_not_probe_a_tpu():
    env = {k: v for k, v in os.environ.items() if k not in ("JAX_PLATFORMS", "TPU_LIBRARY_PATH")}
    out = subprocess.run([sys.executable, "-c", "import jax; print(jax.devices()[0].platform)"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "cpu"
    assert "tpu" not in out.stderr.lower(), out.stderr[-400:]


def test_the_aot_command_finds_the_bundled_libtpu(monkeypatch):
    monkeypatch.delenv("TPU_LIBRARY_PATH", raising=False)
    aot_report.find_libtpu()
    path = os.environ.get("TPU_LIBRARY_PATH")
    assert path and os.path.exists(path) and path.startswith(sys.prefix)
