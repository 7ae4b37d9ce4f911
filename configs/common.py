"""Pieces shared by every config file: variant parsing, mesh, optimiser and checkpoint defaults.

Config files are ml_collections `get_config(arg)` functions; `arg` names a variant (`tiny`, `base`,
`paper`, ...). Every value can be overridden on the command line, e.g. `--config.train.batch_size=64`.
"""
from __future__ import annotations

import ml_collections


def parse_variant(arg: str | None, variants: tuple[str, ...], default: str) -> str:
    """Returns the variant named by `arg` (None or "" -> default); raises on an unknown name."""
    name = arg or default
    if name not in variants:
        raise ValueError(f"unknown config variant {name!r}; choose one of {', '.join(variants)}")
    return name


def mesh_config(data: int = -1, fsdp: int = 1) -> ml_collections.ConfigDict:
    """Device mesh sizes; -1 means 'all remaining devices'. fsdp=1 is plain data parallelism.

    min_fsdp_size: arrays with fewer values than this stay replicated (sharding them costs more than it saves).
    gather_params: all-gather the fsdp-sharded params once per train step before the forward pass
    (training/state.py `_fsdp_gather`), instead of letting the partitioner split convolutions over them.
    """
    return ml_collections.ConfigDict({"data": data, "fsdp": fsdp, "min_fsdp_size": 2**14, "gather_params": False})


def train_config(**overrides) -> ml_collections.ConfigDict:
    """Optimiser, EMA, schedule, logging and checkpoint defaults shared by the CAE and the LDM."""
    cfg = ml_collections.ConfigDict(
        {
            "seed": 0,
            "batch_size": 8,
            "num_steps": 1000,
            "optimizer": "adamw",
            "lr": 1e-4,
            "lr_schedule": "cosine",  # "cosine" | "constant"
            "warmup_steps": 100,
            "final_lr_ratio": 0.01,
            "b1": 0.9,
            "b2": 0.999,
            "weight_decay": 0.0,
            "grad_clip": 1.0,
            "ema_decay": 0.999,
            "compute_dtype": "float32",  # "bfloat16" on accelerators; params stay float32
            "log_every": 50,
            "eval_every": 1000,
            "ckpt_every": 1000,
            "keep_checkpoints": 3,
            "keep_best": 1,  # also keep the n checkpoints with the lowest validation loss (EMA params)
            "async_checkpoints": True,
            "eval_batches": 4,  # validation batches per evaluation (the same ones every time); 0 = none
            "tensorboard": True,  # tf.summary events beside metrics.jsonl
            "peak_flops": 0.0,  # per-device peak FLOP/s for MFU; 0 = look up the device kind
            "sample_every": 0,  # LDM: decode a few validation contexts to audio every N steps; 0 = off
            "sample_count": 2,  # LDM: how many validation examples to sample
            "sample_cae": "",  # LDM: CAE workdir or release dir used to decode samples to audio
        }
    )
    cfg.update(overrides)
    return cfg
