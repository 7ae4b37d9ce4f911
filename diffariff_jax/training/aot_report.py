"""What a compiled program costs on one chip of a target topology: memory, FLOPs, time estimate, collectives.

`jax.jit(f).lower(abstract_args).compile()` for devices of a TPU topology that is not attached (libtpu's
`get_topology_desc`, see `topology_devices`) returns the TPU compiler's own analyses, per chip:
    memory_analysis():  argument, output, alias (donated inputs reused as outputs), temporary, code bytes;
                        in use at once  total = argument + output - alias + temp (+ code);
    cost_analysis():    "flops" and "bytes accessed" of the SPMD-partitioned module (one chip's share), and
                        "optimal_seconds": a per-op roofline  sum_op max(flops_op / peak, bytes_op / HBM bw);
    as_text():          the compiled HLO; collectives are counted from it, and every scheduled op carries
                        the TPU cost model's "estimated_cycles", which `time_shares` sums by kind of work.
Nothing is allocated and nothing runs: a report is what the compiler predicts, and is labelled so.
Loops (the sampler's fori_loop) appear once in the HLO: their collectives and cycles are counted once.
"""
from __future__ import annotations

import dataclasses
import importlib.util
import math
import os
import re
import sys
from pathlib import Path
from typing import Any, Sequence

import jax

GIB = 2**30
# HBM per chip by jax `device_kind` (datasheets): v4 32 GiB, v5e 16 GiB, v5p 95 GiB, v6e 32 GiB.
HBM_BYTES = {"TPU v4": 32 * GIB, "TPU v5 lite": 16 * GIB, "TPU v5e": 16 * GIB, "TPU v5p": 95 * GIB,
             "TPU v5": 95 * GIB, "TPU v6 lite": 32 * GIB, "TPU v6e": 32 * GIB}
COLLECTIVES = ("all-gather", "reduce-scatter", "all-reduce", "all-to-all", "collective-permute")
_BYTES_PER = {"pred": 1, "s8": 1, "u8": 1, "s16": 2, "u16": 2, "f16": 2, "bf16": 2, "s32": 4, "u32": 4,
              "f32": 4, "s64": 8, "u64": 8, "f64": 8, "c64": 8, "c128": 16}
_ARRAY = re.compile(r"\b(" + "|".join(_BYTES_PER) + r")\[([0-9,]*)\]")
# "  %name = SHAPE opcode(operands), attributes" -- SHAPE may be a tuple with /*index=N*/ comments.
_INSTRUCTION = re.compile(r"^\s*(?:ROOT )?%\S+ = (?P<shape>.*?) (?P<op>[a-z][a-z0-9-]*)\((?P<rest>.*)$")
_COMPUTATION = re.compile(r"^(?:ENTRY )?%(?P<name>\S+) .*\{$")


class AotError(ValueError):
    """A topology or program that cannot be compiled ahead of time (one-line message)."""


def find_libtpu() -> None:
    """Points JAX at libtpu when it is not an importable package: `make install` keeps it in
    .venv/aot-libtpu (see the Makefile) so that plain `import jax` never probes a TPU. JAX reads
    TPU_LIBRARY_PATH when the topology is first asked for, so setting it here, after import, works."""
    if importlib.util.find_spec("libtpu") is not None or os.environ.get("TPU_LIBRARY_PATH"):
        return
    bundled = Path(sys.prefix) / "aot-libtpu" / "libtpu" / "libtpu.so"
    if not bundled.exists():
        raise AotError(f"libtpu is not installed (looked for {bundled}): run `make install`, or "
                       "pip install libtpu==0.0.42.1 (the jax[tpu]==0.10.2 pin)")
    os.environ["TPU_LIBRARY_PATH"] = str(bundled)


# Cloud TPU accelerator types count TensorCores for v4 and v5p (two per chip), chips for v5e and v6e;
# libtpu names the chip grid. The grids are the ones Cloud TPU allocates for each slice size.
_CORES_PER_CHIP = {"v4": 2, "v5p": 2, "v5litepod": 1, "v5e": 1, "v6e": 1}
_GRIDS_3D = {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8", 256: "4x8x8",
             512: "8x8x8", 1024: "8x8x16", 2048: "8x16x16", 4096: "16x16x16"}
_GRIDS_2D = {1: "1x1", 4: "2x2", 8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"}


def topology_name(name: str) -> str:
    """libtpu's topology name for `name`: a topology ("v5p:2x2x2") as it is, a Cloud TPU accelerator type
    ("v4-32", "v5p-64", "v5litepod-64", "v6e-64", as `gcloud ... --accelerator-type` takes it) as its chip grid."""
    match = re.fullmatch(r"(v4|v5p|v5litepod|v5e|v6e)-(\d+)", name.strip())
    if match is None:
        return name
    generation, count = match.group(1), int(match.group(2))
    chips, rest = divmod(count, _CORES_PER_CHIP[generation])
    grids = _GRIDS_3D if generation in ("v4", "v5p") else _GRIDS_2D
    if rest or chips not in grids:
        raise AotError(f"--topology {name!r}: no {generation} slice has {count} "
                       f"{'TensorCores' if _CORES_PER_CHIP[generation] == 2 else 'chips'}; sizes are "
                       f"{', '.join(f'{generation}-{c * _CORES_PER_CHIP[generation]}' for c in grids)}")
    return f"{'v5e' if generation == 'v5litepod' else generation}:{grids[chips]}"


def topology_devices(name: str) -> list[jax.Device]:
    """Abstract devices of TPU topology `name` ("v5p:2x2x2", "v4:2x2x4", "v5e:8x8", "v6e:4x4", or an
    accelerator type such as "v4-32": see topology_name), one per chip, no TPU needed."""
    from jax.experimental import topologies

    find_libtpu()
    name = topology_name(name)
    # v4 and v5p run their two TensorCores per chip as one megacore device, and jax.make_mesh refuses
    # anything else on them; libtpu's default description of v4 has a device per TensorCore.
    megacore = _CORES_PER_CHIP.get(name.split(":")[0]) == 2
    try:
        return list(topologies.get_topology_desc(platform="tpu", topology_name=name,
                                                 **({"chip_config_name": "megacore"} if megacore else {})).devices)
    except Exception as err:  # libtpu raises plain RuntimeErrors / XlaRuntimeErrors with long texts
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise AotError(f"--topology {name!r}: libtpu cannot describe it ({first}); write e.g. v5p:2x2x2, "
                       "v4:2x2x4, v5e:8x8 or v6e:4x4 (pip install libtpu, the jax[tpu] pin)") from None


def hbm_bytes(device: jax.Device, override_gib: float = 0.0) -> int:
    """HBM of one chip: `override_gib` when given, else the datasheet value for its device kind."""
    if override_gib:
        return int(override_gib * GIB)
    kind = getattr(device, "device_kind", "")
    for prefix in sorted(HBM_BYTES, key=len, reverse=True):
        if kind.startswith(prefix):
            return HBM_BYTES[prefix]
    raise AotError(f"HBM size of a {kind!r} chip is unknown; pass --hbm_gib")


def _array_bytes(text: str) -> list[int]:
    sizes = []
    for dtype, dims in _ARRAY.findall(text):
        count = math.prod(int(d) for d in dims.split(",") if d) if dims else 1
        sizes.append(count * _BYTES_PER[dtype])
    return sizes


def _instructions(hlo_text: str):
    """(computation name, opcode, result shape text, rest of line) for every instruction of the module."""
    computation = ""
    for line in hlo_text.splitlines():
        header = _COMPUTATION.match(line)
        if header:
            computation = header.group("name")
            continue
        match = _INSTRUCTION.match(line)
        if match:
            yield computation, match.group("op"), match.group("shape"), match.group("rest")


def collectives(hlo_text: str) -> dict[str, dict[str, float]]:
    """{collective: {"count", "bytes"}}: static count in the compiled HLO and bytes of its results per chip.

    Async pairs count once, at their -start; an all-gather-start's result tuple also holds its operand, so
    only its largest array counts there. The TPU compiler writes a reduce-scatter as an all-reduce whose
    result is sliced to this chip's shard inside an `all-reduce-scatter` fusion (run as one reduce-scatter):
    it counts as a reduce-scatter, with its shard's bytes (the all-reduce's over the replica group's size).
    """
    out = {name: {"count": 0, "bytes": 0.0} for name in COLLECTIVES}
    for computation, op, shape, rest in _instructions(hlo_text):
        base = op[:-len("-start")] if op.endswith("-start") else op
        if op == "async-start":
            called = re.search(r"calls=%([a-z-]+)", rest)
            base = called.group(1).rstrip("-.0123456789") if called else ""
        if base not in out:
            continue
        sizes = _array_bytes(shape)
        moved = sum(sizes) if base == "all-reduce" or op == base else max(sizes, default=0)
        if base == "all-reduce" and computation.startswith("all-reduce-scatter"):
            base, moved = "reduce-scatter", moved / _replica_group_size(rest)
        out[base]["count"] += 1
        out[base]["bytes"] += moved
    return out


def _replica_group_size(rest: str) -> int:
    """Devices per replica group of a collective: replica_groups={{0,1,2,3},...} or the iota form [G,S]<=[N]."""
    listed = re.search(r"replica_groups=\{\{([0-9,]*)\}", rest)
    if listed:
        return len(listed.group(1).split(","))
    iota = re.search(r"replica_groups=\[(\d+),(\d+)\]", rest)
    return int(iota.group(2)) if iota else 1


def _kind_of_work(op: str, rest: str, matmul_computations: set[str]) -> str:
    """The bucket an op's estimated cycles go to, from its opcode, the fused computation it calls and the
    source op_name XLA kept in its metadata (Flax module names are capitalised path segments)."""
    called = re.search(r"calls=%([^\s,]+)", rest)
    name = re.search(r'op_name="([^"]*)"', rest)
    parts = name.group(1).split("/") if name else []
    if op in ("convolution", "dot") or (called and called.group(1) in matmul_computations):
        return "matmul/conv"
    if any(op.startswith(c) for c in COLLECTIVES) or op in ("async-start", "async-done"):
        return "collectives"
    if op in ("copy", "copy-start", "copy-done", "transpose"):
        return "layout copies"
    if not any(re.search(r"(^|\()[A-Z]", part) for part in parts):
        return "outside the network (optimizer, EMA, loss, RNG)"
    if any("norm" in part for part in parts[-3:-1]):  # e.g. .../dec0_block1/norm0/reduce_sum
        return "group norm"
    return "network elementwise"


def time_shares(hlo_text: str) -> dict[str, float]:
    """Share of the TPU cost model's estimated cycles per kind of work (sums to 1; {} on other backends)."""
    matmul_computations, computation, lines = set(), "", hlo_text.splitlines()
    for line in lines:
        header = _COMPUTATION.match(line)
        if header:
            computation = header.group("name")
        elif " convolution(" in line or " dot(" in line:
            matmul_computations.add(computation)
    totals: dict[str, float] = {}
    for _, op, _, rest in _instructions(hlo_text):
        cycles = re.search(r'"estimated_cycles":"(\d+)"', rest)
        if cycles:
            kind = _kind_of_work(op, rest, matmul_computations)
            totals[kind] = totals.get(kind, 0.0) + float(cycles.group(1))
    whole = sum(totals.values())
    return {k: v / whole for k, v in sorted(totals.items(), key=lambda kv: -kv[1])} if whole else {}


@dataclasses.dataclass
class ProgramReport:
    """One compiled program on one chip of the target. Bytes and FLOPs are per chip; times are estimates."""

    name: str
    compile_s: float
    argument_bytes: int
    output_bytes: int
    alias_bytes: int
    temp_bytes: int
    code_bytes: int
    hbm_bytes: int
    xla_flops: float  # one chip's share, from cost_analysis
    analytic_flops: float | None  # the model's analytic count over all chips / number of chips
    bytes_accessed: float
    estimated_s: float | None  # XLA's per-op roofline ("optimal_seconds")
    estimated_mfu: float | None  # analytic FLOPs / (estimated_s * peak)
    collectives: dict[str, dict[str, float]]
    time_shares: dict[str, float]
    out_of_memory: str = ""  # the compiler's message when it refused the program for HBM (fields above 0)
    short_bytes: float = 0.0  # how far over HBM the compiler found it (0 when it did not say)

    @property
    def total_bytes(self) -> int:
        """Bytes in use at once on a chip: inputs, outputs not aliased onto donated inputs, temporaries, code."""
        if self.out_of_memory:
            return int(self.hbm_bytes + self.short_bytes)
        return self.argument_bytes + self.output_bytes - self.alias_bytes + self.temp_bytes + self.code_bytes

    def fit(self, headroom: float) -> str:
        """"fits (N% free)", "tight (N% free)" under `headroom`, or "short by X GiB"."""
        if self.out_of_memory and not self.short_bytes:
            return "short (the compiler ran out of HBM)"
        free = self.hbm_bytes - self.total_bytes
        if free < 0:
            return f"short by {-free / GIB:.2f} GiB"
        share = free / self.hbm_bytes
        return f"{'fits' if share >= headroom else 'tight'} ({100 * share:.0f}% free)"

    def fits(self, headroom: float) -> bool:
        return not self.out_of_memory and self.hbm_bytes - self.total_bytes >= headroom * self.hbm_bytes

    def to_json(self, headroom: float) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.update(total_bytes=self.total_bytes, fit=self.fit(headroom), fits=self.fits(headroom),
                   flops_ratio=None if not self.analytic_flops else self.xla_flops / self.analytic_flops)
        return out


_UNITS = {"": 1, "B": 1, "K": 2**10, "M": 2**20, "G": 2**30, "T": 2**40}
_REQUIRED = re.compile(r"\(([\d.]+)([KMGT]?)i?B?\) exceeds available HBM \(([\d.]+)([KMGT]?)i?B?\)")
_EXCEEDED = re.compile(r"[Ee]xceeded hbm capacity by ([\d.]+)([KMGT]?)")


def is_out_of_memory(err: Exception) -> bool:
    """True for the TPU compiler's refusal of a program that needs more HBM than the chip has."""
    text = str(err)
    return "RESOURCE_EXHAUSTED" in text and ("HBM" in text or "hbm" in text)


def out_of_memory_report(name: str, err: Exception, compile_s: float, hbm: int) -> ProgramReport:
    """A report for a program the compiler refused for HBM, short by what its message says."""
    text = str(err).strip().splitlines()[0]
    short = 0.0
    required = _REQUIRED.search(text)
    exceeded = _EXCEEDED.search(text)
    if required:
        short = (float(required.group(1)) * _UNITS[required.group(2)]
                 - float(required.group(3)) * _UNITS[required.group(4)])
    elif exceeded:
        short = float(exceeded.group(1)) * _UNITS[exceeded.group(2)]
    return ProgramReport(name=name, compile_s=compile_s, argument_bytes=0, output_bytes=0, alias_bytes=0,
                         temp_bytes=0, code_bytes=0, hbm_bytes=hbm, xla_flops=0.0, analytic_flops=None,
                         bytes_accessed=0.0, estimated_s=None, estimated_mfu=None, collectives={},
                         time_shares={}, out_of_memory=text, short_bytes=max(short, 0.0))


def report(name: str, compiled: Any, compile_s: float, device: jax.Device, num_chips: int,
           analytic_total_flops: float | None, hbm: int, peak_flops: float) -> ProgramReport:
    """Reads the compiler's analyses of `compiled` (a jax.stages.Compiled) into a ProgramReport."""
    memory = compiled.memory_analysis()
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, Sequence) and not isinstance(cost, dict) else (cost or {})
    text = compiled.as_text()
    analytic = analytic_total_flops / num_chips if analytic_total_flops else None
    # libtpu 0.0.42's cost model returns a negative optimal_seconds for v6e programs: no estimate, not a number
    estimated = float(cost.get("optimal_seconds") or 0.0)
    estimated = estimated if estimated > 0 else None
    mfu = analytic / (estimated * peak_flops) if analytic and estimated and peak_flops else None
    return ProgramReport(
        name=name, compile_s=compile_s, argument_bytes=int(memory.argument_size_in_bytes),
        output_bytes=int(memory.output_size_in_bytes), alias_bytes=int(memory.alias_size_in_bytes),
        temp_bytes=int(memory.temp_size_in_bytes), code_bytes=int(memory.generated_code_size_in_bytes),
        hbm_bytes=hbm, xla_flops=float(cost.get("flops", 0.0)), analytic_flops=analytic,
        bytes_accessed=float(cost.get("bytes accessed", 0.0)), estimated_s=estimated, estimated_mfu=mfu,
        collectives=collectives(text), time_shares=time_shares(text))
