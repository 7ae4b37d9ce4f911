"""Train the CAE or the LDM: the one entry point for 1 CPU, a GPU node or a TPU pod slice.

    python -m diffariff_jax.train --config configs/cae.py:tiny --workdir runs/cae
    python -m diffariff_jax.train --config configs/ldm.py:tiny --workdir runs/ldm \
        --config.data.records_dir=DIR --config.train.batch_size=64

Every process of a multi-host job runs the same command; the JAX coordinator is found from SLURM, the TPU
metadata, JAX_COORDINATOR_ADDRESS or --coordinator_address. Bad input (unknown config key, a workdir
of another model kind, a data dir with no records) fails with one line before anything compiles. The LDM
takes config.model.clap_dim from the records' latents.json unless --config.model.clap_dim is given.
Exit status: 0 when the run reached train.num_steps, 75 when it stopped for preemption after saving,
1 on a user-facing error (one line: fix the input, do not retry), 70 on any other failure (traceback; a
lost host, a storage hiccup: launch/tpu_babysit.sh relaunches on everything but 0, 1 and 2).
"""
from __future__ import annotations

import sys
import traceback

from absl import app, flags, logging
from ml_collections import config_flags

from diffariff_jax import absl_cli

PREEMPTED_EXIT = 75
INTERNAL_EXIT = 70  # EX_SOFTWARE: not the user's input, so worth a relaunch (Python's own default is 1)

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file and variant, e.g. configs/ldm.py:tiny")
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (local or gs://): config, checkpoints, logs")
_COORDINATOR = flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (multi-host without "
                                   "SLURM/TPU auto-detection)")
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "processes in the job (with --coordinator_address)")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index (with --coordinator_address)")
flags.mark_flags_as_required(["config", "workdir"])


# Config fields holding paths, where a config has them: (key, only local files work there). Resolved once, at
# the command line's boundary, so config.json records absolute paths that mean the same after a chdir.
_CONFIG_PATHS = (("data.records_dir", True), ("data.val_records_dir", True), ("data.root", True),
                 ("train.sample_cae", False))


def resolve_paths(config, workdir: str) -> str:
    """Resolves the workdir and every path in `config` in place (paths.resolve / paths.local); returns the
    workdir. Latent records and stems must be local files (ArrayRecord and soundfile read no gs://): a
    bucket there fails in one line naming gcsfuse or a local copy (docs/training.md)."""
    from diffariff_jax import paths

    for key, local_only in _CONFIG_PATHS:
        section, name = key.split(".")
        value = config[section].get(name) if section in config else None
        if value:
            resolve = paths.local if local_only else paths.resolve
            config[section][name] = str(resolve(value, f"--config.{key}"))
    return str(paths.resolve(workdir, "--workdir"))


def main(argv: list[str]) -> None:
    try:
        _main(argv)
    except Exception:  # noqa: BLE001 -- anything that is not a one-line user error: keep it apart from exit 1
        traceback.print_exc()
        print(f"error: internal failure (exit {INTERNAL_EXIT}; see the traceback above)", file=sys.stderr, flush=True)
        sys.exit(INTERNAL_EXIT)


def _main(argv: list[str]) -> None:
    logging.get_absl_handler().addFilter(absl_cli.QuietOrbax())
    if len(argv) > 1:
        absl_cli.fail(f"unexpected arguments {' '.join(argv[1:])}; settings go through --config.KEY=VALUE")
    # JAX's distributed runtime first: nothing may touch a backend before it.
    from diffariff_jax.training import mesh as mesh_lib

    mesh_lib.maybe_initialize_distributed(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)

    import jax

    from diffariff_jax import paths
    from diffariff_jax.training import checkpoint as ckpt
    from diffariff_jax.training import loop, tasks

    config = _CONFIG.value
    workdir = _WORKDIR.value
    try:
        kind = config.kind
    except OSError as err:  # config_flags reports a config file it could not load only when it is used
        absl_cli.fail(f"cannot load the --config file: {str(err).strip().splitlines()[-1].strip()}")
    try:
        workdir = resolve_paths(config, workdir)
        ckpt.check_kind(workdir, kind)
        # The records fix the CLAP width; an explicit --config.model.clap_dim is kept (check_data compares).
        if not any(arg.startswith("--config.model.clap_dim") for arg in sys.argv):
            clap_dim = tasks.adopt_records_clap_dim(config)
            if clap_dim is not None:
                logging.info("config.model.clap_dim=%d, from %s/latents.json", clap_dim, config.data.records_dir)
        tasks.check_data(config)
        mesh_lib.mesh_shape(config.mesh, jax.device_count())
        result = loop.train(config, workdir)
    except (paths.PathError, ckpt.CheckpointError, mesh_lib.MeshError, tasks.DataSetupError,
            loop.TrainingError) as err:
        absl_cli.fail(str(err))
    if result.preempted:
        sys.exit(PREEMPTED_EXIT)


def run() -> None:
    app.run(main, flags_parser=absl_cli.parse_flags)


if __name__ == "__main__":
    run()
