"""Flax <-> PyTorch parameter names and layouts, and safetensors files from numpy.

The torch twins (`torch_port/`) name their modules after the Flax tree, so one rule per leaf maps a Flax
path to a torch state-dict name, and every tensor's layout follows from its rank:
  .../Conv_0/kernel [k, in, out]          -> ....weight [out, in, k]        (our Conv1d wraps nn.Conv)
  .../kernel [kh, kw, in, out]            -> ....weight [out, in, kh, kw]   (2-D convolutions)
  .../kernel [in, out]                    -> ....weight [out, in]           (Dense -> Linear)
  .../scale                               -> ....weight                     (GroupNorm / LayerNorm)
  anything else (bias, null_clap, gains)  -> the same name, the same array
Transposes are exact, so Flax -> torch -> Flax returns bit-identical params.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import numpy as np
from safetensors.numpy import load_file, save_file

WRAPPERS = ("Conv_0",)  # Flax submodule names the torch twins fold into their parent
PERMUTATIONS = {2: (1, 0), 3: (2, 1, 0), 4: (3, 2, 0, 1)}  # kernel rank -> Flax -> torch axis order


class NameTableError(ValueError):
    """A torch state dict that does not fit the model: missing, extra or misshapen tensors (named)."""


def _flatten(tree: Mapping, prefix: tuple[str, ...] = ()) -> dict[tuple[str, ...], Any]:
    out = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            out.update(_flatten(value, prefix + (str(key),)))
        else:
            out[prefix + (str(key),)] = value
    return out


def _unflatten(flat: dict[tuple[str, ...], Any]) -> dict:
    tree: dict = {}
    for path, value in flat.items():
        node = tree
        for key in path[:-1]:
            node = node.setdefault(key, {})
        node[path[-1]] = value
    return tree


def torch_name(path: tuple[str, ...], ndim: int) -> tuple[str, tuple[int, ...] | None]:
    """(torch state-dict name, Flax -> torch permutation or None) of the Flax leaf at `path`."""
    *parents, leaf = path
    parents = [p for p in parents if p not in WRAPPERS]
    if leaf == "kernel":
        if ndim not in PERMUTATIONS:
            raise NameTableError(f"{'/'.join(path)}: no torch layout for a rank-{ndim} kernel")
        return ".".join(parents + ["weight"]), PERMUTATIONS[ndim]
    if leaf == "scale":
        return ".".join(parents + ["weight"]), None
    return ".".join(parents + [leaf]), None


def _inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.argsort(perm))


def flax_to_torch(params: Mapping) -> dict[str, np.ndarray]:
    """Flax params (a nested dict of arrays, without the {"params": ...} wrapper) -> torch-named float arrays."""
    out = {}
    for path, value in _flatten(params).items():
        value = np.asarray(value)
        name, perm = torch_name(path, value.ndim)
        out[name] = np.ascontiguousarray(value if perm is None else value.transpose(perm))
    return out


def torch_to_flax(state: Mapping[str, np.ndarray], template: Mapping) -> dict:
    """A torch state dict (numpy) -> Flax params shaped like `template` (arrays or ShapeDtypeStructs).

    Raises NameTableError naming the missing, extra and misshapen tensors.
    """
    expected = {}
    for path, leaf in _flatten(template).items():
        name, perm = torch_name(path, len(leaf.shape))
        shape = tuple(leaf.shape) if perm is None else tuple(leaf.shape[i] for i in perm)
        expected[name] = (path, perm, shape, np.dtype(leaf.dtype))
    problems = []
    missing = sorted(set(expected) - set(state))
    extra = sorted(set(state) - set(expected))
    misshapen = sorted(f"{name} {tuple(np.shape(state[name]))} (model wants {expected[name][2]})"
                       for name in set(expected) & set(state) if tuple(np.shape(state[name])) != expected[name][2])
    for label, names in (("missing", missing), ("unexpected", extra), ("misshapen", misshapen)):
        if names:
            shown = ", ".join(names[:4]) + (f" and {len(names) - 4} more" if len(names) > 4 else "")
            problems.append(f"{len(names)} {label}: {shown}")
    if problems:
        raise NameTableError("state dict does not fit the model: " + "; ".join(problems))
    flat = {}
    for name, (path, perm, _, dtype) in expected.items():
        value = np.asarray(state[name])
        flat[path] = np.ascontiguousarray(value if perm is None else value.transpose(_inverse(perm))).astype(dtype)
    return _unflatten(flat)


def save_safetensors(path: str | Path, tensors: Mapping[str, np.ndarray], metadata: dict[str, str]) -> None:
    """Writes float tensors to a .safetensors file (torch's `safetensors.torch.load_file` reads it)."""
    save_file({k: np.ascontiguousarray(v) for k, v in tensors.items()}, str(path), metadata=metadata)


def load_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Reads every tensor of a .safetensors file as numpy arrays."""
    if not Path(path).is_file():
        raise NameTableError(f"{path}: no such safetensors file")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for a damaged header or body
        raise NameTableError(f"{path}: not a readable safetensors file ({e})") from None
