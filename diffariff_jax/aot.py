"""Know before you pay: compile a config for a TPU topology on this (CPU-only) machine and report per chip.

    python -m diffariff_jax.aot --config configs/ldm.py:paper --topology v5p:4x4x4 \
        [--config.mesh.fsdp=N] [--config.train.batch_size=B] [--sample_batch=1] [--out report.json]

Compiles the trainer's own train step (its shardings and donation), the eval step and, for the LDM, the
compiled sampling loop, with libtpu's description of the topology (`pip install libtpu`, the jax[tpu]
pin): nothing is allocated and no TPU is needed. Prints, per program and chip: memory (arguments, outputs,
temporaries, code) against the chip's HBM ("fits" / "short by X GiB"), XLA's FLOPs against the analytic
count, XLA's estimated time and the MFU it implies (estimates, not measurements), the collectives in the
compiled HLO, where the TPU cost model's cycles go, and compile times; writes the same as JSON.
Exit status: 0 when every program fits with --headroom to spare, 3 when one does not, 1 on a bad input.
"""
from __future__ import annotations

import json
import os
import sys

from absl import app, flags
from ml_collections import config_flags

from diffariff_jax import absl_cli

DOES_NOT_FIT_EXIT = 3

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file and variant, e.g. configs/ldm.py:paper")
_TOPOLOGY = flags.DEFINE_string("topology", None, "TPU topology to compile for, e.g. v5p:2x2x2, v4:2x2x4, "
                                "v5e:8x8, v6e:4x4 (chips per dimension), or a Cloud TPU accelerator type "
                                "(v4-32, v5p-64, v5litepod-64, v6e-64)")
_PROGRAMS = flags.DEFINE_list("programs", [], "programs to compile: train, eval, sample (LDM); default all")
_SAMPLE_BATCH = flags.DEFINE_integer("sample_batch", 1, "clips per call of the compiled sampling loop")
_HBM_GIB = flags.DEFINE_float("hbm_gib", 0.0, "HBM per chip in GiB; 0 = the datasheet value of the chip")
_HEADROOM = flags.DEFINE_float("headroom", 0.10, "share of HBM that must stay free for 'fits'")
_OUT = flags.DEFINE_string("out", "", "JSON report path; default aot-<kind>-<variant>-<topology>.json here")
_HLO_DIR = flags.DEFINE_string("hlo_dir", "", "also write each program's compiled HLO text into this folder")
flags.mark_flags_as_required(["config", "topology"])


def _gib(n: float) -> str:
    return f"{n / 2**30:.2f}"


def format_table(header: str, reports, headroom: float) -> str:
    """The report as a text table: one row per program, then collectives and cycle shares per program."""
    lines = [header, "per chip: memory in GiB; FLOPs in TFLOP; est = XLA's estimate (a roofline, not a run)",
             f"{'program':8} {'args':>7} {'out':>7} {'alias':>7} {'temp':>7} {'code':>6} {'total':>7} "
             f"{'HBM':>6}  {'fit':22} {'XLA':>8} {'analytic':>8} {'ratio':>6} {'est ms':>8} {'est MFU':>7} "
             f"{'compile':>8}"]
    for r in reports:
        if r.out_of_memory:
            lines.append(f"{r.name:8} {'-':>7} {'-':>7} {'-':>7} {'-':>7} {'-':>6} {_gib(r.total_bytes):>7} "
                         f"{_gib(r.hbm_bytes):>6}  {r.fit(headroom):22} (the compiler refused it) {r.compile_s:7.1f}s")
            continue
        analytic = f"{r.analytic_flops / 1e12:8.3f}" if r.analytic_flops else f"{'-':>8}"
        ratio = f"{r.xla_flops / r.analytic_flops:6.3f}" if r.analytic_flops else f"{'-':>6}"
        est = f"{1e3 * r.estimated_s:8.2f}" if r.estimated_s else f"{'-':>8}"
        mfu = f"{100 * r.estimated_mfu:6.1f}%" if r.estimated_mfu else f"{'-':>7}"
        lines.append(f"{r.name:8} {_gib(r.argument_bytes):>7} {_gib(r.output_bytes):>7} {_gib(r.alias_bytes):>7} "
                     f"{_gib(r.temp_bytes):>7} {_gib(r.code_bytes):>6} {_gib(r.total_bytes):>7} "
                     f"{_gib(r.hbm_bytes):>6}  {r.fit(headroom):22} {r.xla_flops / 1e12:8.3f} {analytic} "
                     f"{ratio} {est} {mfu} {r.compile_s:7.1f}s")
    for r in reports:
        if r.out_of_memory:
            lines.append(f"{r.name} compiler: {r.out_of_memory}")
            continue
        used = [f"{name} {c['count']} ({_gib(c['bytes'])} GiB)" for name, c in r.collectives.items() if c["count"]]
        lines.append(f"{r.name} collectives (static count, result GiB per chip): {', '.join(used) or 'none'}")
        shares = ", ".join(f"{kind} {100 * share:.0f}%" for kind, share in r.time_shares.items())
        lines.append(f"{r.name} cost-model cycles: {shares or 'not reported'}")
    return "\n".join(lines)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        absl_cli.fail(f"unexpected arguments {' '.join(argv[1:])}; settings go through --config.KEY=VALUE")
    # Compile for the topology from the host: never take an attached accelerator (a run may be using it).
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    os.environ.setdefault("TPU_SKIP_MDS_QUERY", "1")  # no GCE metadata server to ask off a TPU VM
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")  # one compiling host, no pod to find
    # libtpu's lockfile admits one process per host; a compile-only process may share it with others.
    os.environ.setdefault("ALLOW_MULTIPLE_LIBTPU_LOAD", "1")
    for name in ("TPU_STDERR_LOG_LEVEL", "TPU_MIN_LOG_LEVEL"):  # libtpu's start-up chatter off a TPU VM
        os.environ.setdefault(name, "3")

    from diffariff_jax import paths
    from diffariff_jax.training import aot_compile, aot_report
    from diffariff_jax.training import mesh as mesh_lib

    try:
        config = _CONFIG.value
        kind = config.kind
    except OSError as err:
        absl_cli.fail(f"cannot load the --config file: {str(err).strip().splitlines()[-1].strip()}")
    try:
        topology = aot_report.topology_name(_TOPOLOGY.value)
        out = paths.local(_OUT.value or f"aot-{kind}-{config.variant}-{topology.replace(':', '-')}.json", "--out")
        hlo_dir = paths.local(_HLO_DIR.value, "--hlo_dir") if _HLO_DIR.value else None
        if _SAMPLE_BATCH.value < 1:
            raise aot_report.AotError(f"--sample_batch={_SAMPLE_BATCH.value}: must be >= 1")
        devices = aot_report.topology_devices(topology)
        reports, texts = aot_compile.compile_programs(config, devices, _PROGRAMS.value, _SAMPLE_BATCH.value,
                                                      _HBM_GIB.value, keep_hlo=hlo_dir is not None)
    except (aot_report.AotError, mesh_lib.MeshError, paths.PathError) as err:
        absl_cli.fail(str(err))
    mesh = mesh_lib.mesh_shape(config.mesh, len(devices))
    header = (f"{kind}:{config.variant} on {topology} ({len(devices)} x {devices[0].device_kind}), mesh data={mesh[0]} "
              f"fsdp={mesh[1]}, batch {config.train.batch_size}, remat {config.train.get('remat', 'none')}, "
              f"sample batch {_SAMPLE_BATCH.value}")
    print(format_table(header, reports, _HEADROOM.value), flush=True)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "config": f"{kind}:{config.variant}", "topology": topology, "chips": len(devices),
        "device_kind": devices[0].device_kind, "mesh": {"data": mesh[0], "fsdp": mesh[1]},
        "batch_size": int(config.train.batch_size), "sample_batch": _SAMPLE_BATCH.value,
        "remat": config.train.get("remat", "none"), "headroom": _HEADROOM.value,
        "programs": {r.name: r.to_json(_HEADROOM.value) for r in reports},
        "config_json": json.loads(config.to_json()),
    }, indent=1))
    print(f"wrote {out}")
    if hlo_dir is not None:
        hlo_dir.mkdir(parents=True, exist_ok=True)
        for name, text in texts.items():
            (hlo_dir / f"{name}.hlo.txt").write_text(text)
    if not all(r.fits(_HEADROOM.value) for r in reports):
        sys.exit(DOES_NOT_FIT_EXIT)


def run() -> None:
    app.run(main, flags_parser=absl_cli.parse_flags)


if __name__ == "__main__":
    run()
