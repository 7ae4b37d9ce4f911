"""Test-wide settings: CPU only, deterministic, JAX configured before anything imports TensorFlow."""
import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("CUDA_VISIBLE_DEVICES", "")


def pytest_configure(config):
    # End-to-end runs of the user's pipeline (the quick demo, README's commands as typed) take minutes each:
    # `make test` leaves them out to stay under 15 minutes on two cores; `make test-pipeline` runs them, and
    # .ci/run runs both targets.
    config.addinivalue_line("markers", "pipeline: end-to-end pipeline runs (make test-pipeline)")
