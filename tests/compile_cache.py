"""A persistent XLA compilation cache for the training tests: the same tiny programs compile once per worker.

Use `use_compile_cache(tmp_path_factory)` from a module-scoped fixture; subprocess tests pass `cache_env(dir)`.
"""
import contextlib

import jax

_SETTINGS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
             "jax_persistent_cache_min_entry_size_bytes")


@contextlib.contextmanager
def use_compile_cache(tmp_path_factory):
    directory = str(tmp_path_factory.getbasetemp() / "xla_cache")
    previous = {name: getattr(jax.config, name) for name in _SETTINGS}
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    try:
        yield directory
    finally:
        for name, value in previous.items():
            jax.config.update(name, value)


def cache_env(directory):
    """Environment variables giving a subprocess the same cache."""
    return {"JAX_COMPILATION_CACHE_DIR": directory, "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
            "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0"}
