"""Test-wide settings: CPU only, deterministic, JAX configured before anything imports TensorFlow."""
import os
import shutil
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")
# One persistent XLA compilation cache for the whole run: the pytest-xdist workers inherit this process's
# environment, and so does every subprocess a test starts with dict(os.environ, ...). Many modules and CLI
# calls compile the same tiny programs (a tiny LDM's train step and sampler, a CAE's init); here each
# compiles once per run. A fresh directory per run, removed at the end, so no stale entry outlives it.
if "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ["JAX_COMPILATION_CACHE_DIR"] = tempfile.mkdtemp(prefix="diffariff-xla-cache-")
    os.environ["DIFFARIFF_TEST_XLA_CACHE_OWNER"] = str(os.getpid())
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0.2")
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES", "0")


def pytest_configure(config):
    # End-to-end runs of the user's pipeline (the quick demo, README's commands as typed) take minutes each:
    # `make test` leaves them out to stay under 15 minutes on two cores; `make test-pipeline` runs them, and
    # .ci/run runs both targets.
    config.addinivalue_line("markers", "pipeline: end-to-end pipeline runs (make test-pipeline)")


def pytest_unconfigure(config):
    if os.environ.get("DIFFARIFF_TEST_XLA_CACHE_OWNER") == str(os.getpid()):  # the process that made it
        shutil.rmtree(os.environ["JAX_COMPILATION_CACHE_DIR"], ignore_errors=True)
