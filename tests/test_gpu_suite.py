"""benchmarks/gpu_suite.py --smoke runs on the CPU end to end and writes a complete, consistent JSON."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_suite_smoke_runs_on_cpu(tmp_path):
    env = dict(os.environ, JAX_PLATFORMS="cpu", OUT=str(tmp_path))
    run = subprocess.run([sys.executable, "benchmarks/gpu_suite.py", "--smoke", "--batches", "4"], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads((tmp_path / "gpu_suite_smoke.json").read_text())
    assert result["smoke"] is True and result["platform"] == "cpu"
    assert result["ceilings"]["matmul_tflops"] > 0 and result["ceilings"]["copy_gbps"] > 0
    (train,) = result["train"]
    assert train["batch"] == 4 and train["ms_per_step"] > 0
    assert train["examples_per_s"] == pytest.approx(4 / (train["ms_per_step"] / 1e3))
    assert train["mfu"] is None  # no peak FLOP/s is known for a CPU: no made-up MFU
    one, many = result["sampling_one_clip"], result["sampling_64_clips"]
    assert one["network_calls"] == 2 * 30 - 1  # 30 Heun steps, the last one Euler
    assert one["batch"] == 1 and many["batch"] == 4 and one["latency_s"] > 0
    assert one["weight_read_floor_s"] == pytest.approx(
        result["optimizer_ema"]["params"] * 2 * one["network_calls"] / (result["ceilings"]["copy_gbps"] * 1e9))
    assert result["cae"]["encode_s"] > 0 and result["cae"]["decode_s"] > 0
    assert "ms/step" in run.stdout and "weight-read floor" in run.stdout
