"""What the generic loop needs per model kind: the task, its per-host batches, a data check, LDM sampling.

    make_task(config)                       -> LDMTask | CAETask (by config.kind)
    adopt_records_clap_dim(config)          -> LDM: config.model.clap_dim from the records' latents.json
    check_data(config)                      -> raises DataSetupError before anything compiles
    make_batches(config, split, start_step, process_index=, process_count=) -> iterator of host batches
    make_sample_fn(config, task)            -> (ema_params, step, workdir) -> writes audio (LDM)

Data order is a function of (seed, step, process): a resumed run reads exactly the batches it would have.
"""
from __future__ import annotations

import logging
from typing import Any, Callable, Iterator

import ml_collections
import numpy as np

KINDS = ("ldm", "cae")


class DataSetupError(ValueError):
    """Training data that cannot be read (missing dir, no records/songs): a one-line message."""


def make_task(config: ml_collections.ConfigDict) -> Any:
    """The training task for config.kind."""
    if config.kind == "ldm":
        from diffariff_jax.training.ldm_task import LdmTask

        return LdmTask(config)
    if config.kind == "cae":
        from diffariff_jax.training.cae_task import CAETask

        return CAETask(config)
    raise ValueError(f"config.kind={config.kind!r}; choose one of {', '.join(KINDS)}")


def _cae_val_split(config: ml_collections.ConfigDict) -> str:
    """"validation" when the dataset has validation songs, else "train" (tiny demo sets), with a warning."""
    from diffariff_jax.data import layouts

    songs = layouts.scan(config.data.root, config.data.layout, layouts.Skips())
    if layouts.songs_in_split(songs, "validation", tuple(config.data.split_fractions)):
        return "validation"
    logging.warning("%s has no validation songs; the validation loss uses training songs", config.data.root)
    return "train"


def _check_records_fit_model(config: ml_collections.ConfigDict, directory: str, info: dict) -> None:
    """The records' CLAP/latent widths must be the model's (the CLAP used by precompute fixes clap_dim), and a
    crop must fit in a record; otherwise the first train step would fail deep inside jit."""
    for key in ("clap_dim", "latent_dim"):
        if key in info and int(info[key]) != int(config.model[key]):
            raise DataSetupError(f"LDM data: {directory} holds {key}={info[key]} records but config.model.{key}="
                                 f"{config.model[key]}; pass --config.model.{key}={info[key]}")
    if "frames" in info and int(config.data.crop_frames) > int(info["frames"]):
        raise DataSetupError(f"LDM data: config.data.crop_frames={config.data.crop_frames} is longer than the "
                             f"{info['frames']} frames of each record in {directory}; pass "
                             f"--config.data.crop_frames={info['frames']} or less")


def adopt_records_clap_dim(config: ml_collections.ConfigDict) -> int | None:
    """LDM: sets config.model.clap_dim to the records' clap_dim (the CLAP that precompute ran fixes it, e.g.
    512 for LAION's or the `small` trained CLAP) and returns it; None (config untouched) for the CAE or when
    records_dir holds no readable latents.json, which check_data then reports."""
    if config.kind != "ldm" or not config.data.records_dir:
        return None
    from diffariff_jax.data import latents

    try:
        info = latents.read_info(config.data.records_dir)
    except (FileNotFoundError, ValueError):
        return None
    if "clap_dim" not in info:
        return None
    config.model.clap_dim = int(info["clap_dim"])
    return config.model.clap_dim


def check_data(config: ml_collections.ConfigDict) -> None:
    """Fails in one line when the training data named by the config is missing or holds no records."""
    if config.kind == "ldm":
        from diffariff_jax.data import latents

        root = config.data.records_dir
        if not root:
            raise DataSetupError("config.data.records_dir is not set; pass --config.data.records_dir=DIR "
                                 "(written by python -m diffariff_jax.precompute)")
        for directory in (root, config.data.val_records_dir or root):
            try:
                info = latents.read_info(directory)
                latents.list_shards(directory)
            except (FileNotFoundError, ValueError) as err:
                raise DataSetupError(f"LDM data: {err}") from None
            _check_records_fit_model(config, directory, info)
    elif config.kind == "cae":
        from diffariff_jax.data import layouts

        root = config.data.root
        if not root:
            raise DataSetupError("config.data.root is not set; pass --config.data.root=DIR (multitrack songs)")
        try:
            songs = layouts.scan(root, config.data.layout, layouts.Skips())
        except (FileNotFoundError, ValueError) as err:
            raise DataSetupError(f"CAE data: {str(err).splitlines()[0]}") from None
        if not layouts.songs_in_split(songs, config.data.split, tuple(config.data.split_fractions)):
            raise DataSetupError(f"CAE data: {root} has no song in split {config.data.split!r}")


def make_batches(config: ml_collections.ConfigDict, split: str, start_step: int, *, process_index: int,
                 process_count: int) -> Iterator[dict[str, np.ndarray]]:
    """Endless per-host numpy batches of `split` ("train" | "val") from batch `start_step` on.

    Each host reads batch_size / process_count examples of its own shard. Data that turns out unusable
    when the reader opens it (every song skipped, records with no examples) raises DataSetupError.
    """
    per_host = int(config.train.batch_size) // process_count
    seed = int(config.train.seed) + (0 if split == "train" else 1)
    if config.kind == "ldm":
        from diffariff_jax.data.latents import LatentReader

        root = config.data.records_dir if split == "train" else (config.data.val_records_dir
                                                                  or config.data.records_dir)
        try:
            reader = LatentReader(root, per_host, int(config.data.crop_frames), seed=seed,
                                  process_index=process_index, process_count=process_count,
                                  workers=int(config.data.get("reader_workers", 1)),
                                  max_open=int(config.data.get("max_open_shards", 256)))
        except (FileNotFoundError, ValueError) as err:  # e.g. shards with no examples: every song was skipped
            raise DataSetupError(f"LDM data: {str(err).splitlines()[0]}") from None
        return reader.iterate(start_step)
    from diffariff_jax.data.pipeline import cae_dataset

    cfg = ml_collections.ConfigDict(config.data.to_dict())
    if split != "train":
        cfg.split = _cae_val_split(config)
    try:
        dataset = cae_dataset(cfg, per_host, seed=seed, process_index=process_index, process_count=process_count,
                              start_step=start_step)
    except (FileNotFoundError, ValueError) as err:  # e.g. every stem unreadable: no usable song for this host
        raise DataSetupError(f"CAE data: {str(err).splitlines()[0]}") from None
    return ({"audio": batch["audio"]} for batch in dataset.as_numpy_iterator())


def make_sample_fn(config: ml_collections.ConfigDict, task: Any) -> Callable | None:
    """LDM: a function writing `train.sample_count` decoded validation samples to workdir/samples/<step>/.

    Needs train.sample_cae (a CAE workdir or release dir) to turn latents into audio; returns None for the CAE.
    """
    if config.kind != "ldm":
        return None
    from diffariff_jax.training.sampling import make_ldm_sample_fn

    return make_ldm_sample_fn(config, task)
