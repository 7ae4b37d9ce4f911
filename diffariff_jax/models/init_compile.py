"""How a model's initialisation is compiled: without XLA's backend optimisations.

An init runs once per run, so optimising its machine code only costs start-up: on this project's 2-core CPU
the `tiny` CAE's init compiled in 16 s at XLA's default level (the partitionable threefry draws of its 325
leaves are most of it) and in 6 s at level 0. The parameters differ from a default-level compile by at most
one float32 ulp (measured), so an init is as reproducible as before, run to run and device to device. The trainer's sharded init
(training/loop.py) is a jit of its own, with the init nested in it, and compiles as it always did.
"""
from __future__ import annotations

import functools
from typing import Any, Callable

import jax

INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def jit_init(fn: Callable[..., Any]) -> Callable[..., Any]:
    """jax.jit(fn) compiled with INIT_COMPILER_OPTIONS. Called inside another trace (the
    trainer's sharded init, eval_shape) it is a plain nested jit: JAX takes compiler options only on a
    top-level jit, and there the outer one decides how the whole program compiles."""
    compiled = jax.jit(fn, compiler_options=INIT_COMPILER_OPTIONS)
    nested = jax.jit(fn)

    @functools.wraps(fn)
    def init(*args: Any) -> Any:
        traced = any(isinstance(leaf, jax.core.Tracer) for leaf in jax.tree.leaves(args))
        return (nested if traced else compiled)(*args)

    return init
