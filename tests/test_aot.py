"""Ahead-of-time compile for a TPU topology on the CPU (libtpu): memory, FLOPs, collectives, fit, CLI errors."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")  # pytest workers each load libtpu
os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")

from configs import ldm  # noqa: E402
from diffariff_jax.models.unet1d_cost import unet1d_cost  # noqa: E402
from diffariff_jax.training import aot_compile, aot_report, tasks  # noqa: E402
from diffariff_jax.training import mesh as mesh_lib  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
TOPOLOGY = "v5p:2x2x1"  # 4 chips, one host
DOES_NOT_FIT_EXIT = 3  # diffariff_jax.aot's (not imported here: its absl flags would clash with train.py's)


def _cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, JAX_PLATFORMS="cpu")
    return subprocess.run([sys.executable, "-m", "diffariff_jax.aot", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=900)


def test_collectives_counts_and_bytes_from_hlo_text():
    hlo = "\n".join([
        "ENTRY %main.1 (p: f32[1024]) -> f32[1024] {",
        "  %all-reduce.1 = (f32[1024]{0}, bf16[8,128]{1,0}) all-reduce(%a, %b), channel_id=1, to_apply=%add",
        "  %all-gather-start.2 = (bf16[4,8]{1,0}, bf16[16,8]{1,0}) all-gather-start(%c), dimensions={0}",
        "  %all-gather-done.2 = bf16[16,8]{1,0} all-gather-done(%all-gather-start.2)",
        "  %reduce-scatter.3 = f32[256]{0} reduce-scatter(%d), dimensions={0}, to_apply=%add",
        "  ROOT %add.4 = f32[1024]{0} add(%e, %f)",
        "}",
    ])
    found = aot_report.collectives(hlo)
    assert found["all-reduce"] == {"count": 1, "bytes": 1024 * 4 + 8 * 128 * 2}
    assert found["all-gather"] == {"count": 1, "bytes": 16 * 8 * 2}  # the gathered result, not its operand too
    assert found["reduce-scatter"] == {"count": 1, "bytes": 256 * 4}
    assert found["all-to-all"]["count"] == 0


def test_tpu_all_reduce_scatter_fusions_count_as_reduce_scatters():
    """What libtpu writes for a reduce-scatter: an all-reduce sliced to this chip's shard in a fusion."""
    hlo = "\n".join([
        "%all-reduce-scatter.1 (input.1: f32[3,96,32]) -> f32[3,24,32] {",
        "  %input.1 = f32[3,96,32]{2,1,0} parameter(0)",
        "  %all-reduce.2 = f32[3,96,32]{2,1,0} all-reduce(%input.1), channel_id=5, replica_groups={{0,1,2,3}}, "
        "to_apply=%add",
        "  ROOT %dynamic-slice.3 = f32[3,24,32]{2,1,0} dynamic-slice(%all-reduce.2, %a, %b, %c)",
        "}",
        "%all-reduce-scatter.2 (input.2: f32[64]) -> f32[8] {",
        "  %all-reduce.4 = f32[64]{0} all-reduce(%input.2), replica_groups=[2,8]<=[16], to_apply=%add",
        "}",
        "ENTRY %main.5 (p: f32[3,96,32]) -> f32[3,24,32] {",
        "  %all-reduce.6 = f32[16]{0} all-reduce(%q), replica_groups={{0,1,2,3}}, to_apply=%add",
        "  ROOT %fusion.7 = f32[3,24,32]{2,1,0} fusion(%p), kind=kCustom, calls=%all-reduce-scatter.1",
        "}",
    ])
    found = aot_report.collectives(hlo)
    assert found["reduce-scatter"] == {"count": 2, "bytes": 3 * 24 * 32 * 4 + 8 * 4}
    assert found["all-reduce"] == {"count": 1, "bytes": 16 * 4}


def _report(total_gib: float, hbm_gib: float) -> aot_report.ProgramReport:
    gib = aot_report.GIB
    return aot_report.ProgramReport(
        name="train", compile_s=1.0, argument_bytes=int(total_gib * gib), output_bytes=0, alias_bytes=0,
        temp_bytes=0, code_bytes=0, hbm_bytes=int(hbm_gib * gib), xla_flops=1.0, analytic_flops=1.0,
        bytes_accessed=1.0, estimated_s=None, estimated_mfu=None, collectives={}, time_shares={})


def test_fit_verdicts():
    assert _report(20.0, 16.0).fit(0.1) == "short by 4.00 GiB"
    assert not _report(20.0, 16.0).fits(0.1)
    assert _report(15.0, 16.0).fit(0.1).startswith("tight")
    assert _report(8.0, 16.0).fit(0.1) == "fits (50% free)" and _report(8.0, 16.0).fits(0.1)


def test_a_negative_cost_model_estimate_is_reported_as_none():
    """libtpu's v6e cost model gave optimal_seconds = -118 s for the paper LDM: no step time, no MFU."""

    class Compiled:
        def __init__(self, seconds):
            self.seconds = seconds

        def memory_analysis(self):
            return type("Memory", (), dict(argument_size_in_bytes=1, output_size_in_bytes=1, alias_size_in_bytes=0,
                                           temp_size_in_bytes=1, generated_code_size_in_bytes=1))()

        def cost_analysis(self):
            return {"flops": 2e12, "bytes accessed": 1e9, "optimal_seconds": self.seconds}

        def as_text(self):
            return ""

    args = dict(name="train", compile_s=1.0, device=None, num_chips=4, analytic_total_flops=8e12, hbm=2**34,
                peak_flops=1e15)
    bad = aot_report.report(compiled=Compiled(-117.98), **args)
    assert bad.estimated_s is None and bad.estimated_mfu is None
    good = aot_report.report(compiled=Compiled(0.004), **args)
    assert good.estimated_s == 0.004 and good.estimated_mfu == pytest.approx(2e12 / (0.004 * 1e15))


def test_gather_params_runs_every_convolution_on_whole_weights():
    """mesh.gather_params: the tiny LDM on data=1 x fsdp=4 compiles without the activation exchanges the
    partitioner otherwise adds (19 all-to-all and 22 collective-permutes without the gather, measured)."""
    config = ldm.get_config("tiny")
    config.train.batch_size = 16
    config.mesh.update(data=1, fsdp=4, min_fsdp_size=2**10, gather_params=True)
    reports, _ = aot_compile.compile_programs(config, aot_report.topology_devices(TOPOLOGY), ["train"])
    found = reports[0].collectives
    assert found["all-gather"]["count"] > 0
    assert found["all-to-all"]["count"] == 0 and found["collective-permute"]["count"] == 0, found
    # The gradients go back to the parameters' shards (for this model XLA makes that a reduce-scatter; for
    # the paper LDM it combines them into whole all-reduces and slices). Every gradient crosses once, reduce-scattered
    # (a quarter of it lands on each chip) or all-reduced (the replicated parameters', and XLA's choice for a
    # few small sharded ones, combined into one message); most of the sharded ones are reduce-scattered.
    # Measured without the scatter: no reduce-scatter, 1.52 MB all-reduced, the whole gradient on every chip.
    shapes = jax.eval_shape(tasks.make_task(config).init_params, jax.random.PRNGKey(0))
    sharded, replicated = 0, 0
    for leaf in jax.tree.leaves(shapes):
        spec = mesh_lib.param_spec(leaf.shape, 4, int(config.mesh.min_fsdp_size))
        if spec == jax.sharding.PartitionSpec():
            replicated += leaf.size * 4
        else:
            sharded += leaf.size * 4
    scattered, reduced = 4 * found["reduce-scatter"]["bytes"], found["all-reduce"]["bytes"]
    assert scattered + reduced == pytest.approx(sharded + replicated, rel=0.01), (found, sharded, replicated)
    assert scattered > 0.5 * sharded, (found, sharded)


@pytest.fixture(scope="module")
def wide_train():
    """The tiny UNet's two scales made wide and long, without attention, 8 examples per chip (convolutions
    dominate): its train step compiled for 4 v5p chips on a data=2 x fsdp=2 mesh (256 channels: the FLOPs
    ratio is the same at 512)."""
    config = ldm.get_config("tiny")
    config.model.update(channels=256, clap_dim=64, attn_levels=())
    config.data.crop_frames = 128
    config.train.batch_size = 32
    config.mesh.update(data=2, fsdp=2)
    devices = aot_report.topology_devices(TOPOLOGY)
    reports, _ = aot_compile.compile_programs(config, devices, ["train"])
    return config, reports[0]


def test_train_step_flops_match_the_analytic_count_where_convolutions_dominate(wide_train):
    config, report = wide_train
    analytic_per_chip = 3 * unet1d_cost(config.model, 128).flops * 32 / 4  # forward + backward, 4 chips
    assert report.analytic_flops == pytest.approx(analytic_per_chip)
    # Measured: 1.080 here at 256 and at 512 channels alike (so not elementwise work, which would shrink
    # with width), 0.998 for `paper` at batch 256 on v5p:2x2x2, 1.317 for `tiny` (optimizer-dominated).
    assert report.xla_flops == pytest.approx(analytic_per_chip, rel=0.10)
    assert report.estimated_s and report.estimated_s > 0 and 0 < report.estimated_mfu < 1


def test_train_step_memory_is_the_fsdp_sharded_state_and_donation_reuses_it(wide_train):
    config, report = wide_train
    task = tasks.make_task(config)
    n_params = sum(int(np.prod(p.shape)) for p in jax.tree.leaves(jax.eval_shape(task.init_params,
                                                                                   jax.random.PRNGKey(0))))
    state_bytes = 16 * n_params  # float32 params, Adam mu and nu, EMA
    assert state_bytes / 2 <= report.argument_bytes < 0.75 * state_bytes  # most of it split over fsdp=2
    assert report.alias_bytes >= 0.95 * (report.argument_bytes - 2**20)  # the donated state is written in place
    assert report.total_bytes < report.hbm_bytes and report.fits(0.1)
    assert report.collectives["all-gather"]["count"] >= 1  # fsdp gathers the sharded params
    assert report.collectives["all-reduce"]["count"] + report.collectives["reduce-scatter"]["count"] >= 1
    assert sum(report.time_shares.values()) == pytest.approx(1.0) and "matmul/conv" in report.time_shares


def test_cli_reports_short_by_when_the_compiler_runs_out_of_hbm(tmp_path):
    out = tmp_path / "report.json"
    run = _cli("--config", "configs/ldm.py:tiny", "--topology", "v5e:2x2", "--programs", "eval",
               "--config.train.batch_size=1048576", "--out", str(out), cwd=ROOT)
    assert run.returncode == DOES_NOT_FIT_EXIT, run.stderr[-2000:]
    assert "short by" in run.stdout and "Traceback" not in run.stderr
    report = json.loads(out.read_text())
    evaluation = report["programs"]["eval"]
    assert report["chips"] == 4 and report["device_kind"] == "TPU v5 lite"
    assert evaluation["fits"] is False and evaluation["fit"].startswith("short by")
    assert evaluation["short_bytes"] > 0 and "RESOURCE_EXHAUSTED" in evaluation["out_of_memory"]


@pytest.mark.parametrize("args, expected", [
    (["--topology", "v9z:1x1"], "error: --topology 'v9z:1x1': libtpu cannot describe it"),
    (["--topology", TOPOLOGY, "--config.mesh.fsdp=3"], "error: mesh axis of size 3 does not divide the 4 devices"),
    (["--topology", TOPOLOGY, "--programs", "decode"], "error: --programs decode: a ldm config compiles"),
])
def test_cli_bad_input_is_one_line(tmp_path, args, expected):
    run = _cli("--config", "configs/ldm.py:tiny", *args, "--out", str(tmp_path / "r.json"), cwd=ROOT)
    assert run.returncode == 1
    lines = [line for line in run.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and lines[0].startswith(expected), run.stderr[-2000:]
    assert not (tmp_path / "r.json").exists()


@pytest.mark.parametrize("name, topology", [("v4-8", "v4:2x2x1"), ("v4-32", "v4:2x2x4"), ("v5p-64", "v5p:2x4x4"),
                                            ("v5litepod-64", "v5e:8x8"), ("v5e-8", "v5e:2x4"), ("v6e-64", "v6e:8x8"),
                                            ("v5p:2x2x2", "v5p:2x2x2")])
def test_accelerator_types_name_their_chip_grid(name, topology):
    # gcloud's --accelerator-type counts TensorCores on v4 / v5p (2 per chip) and chips on v5e / v6e
    assert aot_report.topology_name(name) == topology


def test_an_accelerator_type_gives_its_chips_and_a_wrong_size_is_one_line():
    assert len(aot_report.topology_devices("v5p-16")) == 8 and len(aot_report.topology_devices("v5litepod-8")) == 8
    # v4 as it runs (one megacore device per chip), so the trainer's mesh builds on it
    v4 = aot_report.topology_devices("v4-16")
    assert len(v4) == 8
    assert mesh_lib.make_mesh(ldm.get_config("tiny").mesh, v4).shape == {"data": 8, "fsdp": 1}
    with pytest.raises(aot_report.AotError, match=r"--topology 'v4-12': no v4 slice has 12 TensorCores; sizes are v4-8"):
        aot_report.topology_name("v4-12")
