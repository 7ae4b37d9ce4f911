"""The LDM training task: EDM loss of the preconditioned 1-D UNet on precomputed latent batches.

Used by the generic `training/state.train_step` and the training loop through the task interface:
`.config`, `init_params(key)`, `loss(params, batch, key, step)`, `eval_metrics(params, batch, key)`,
`dummy_batch(batch_size)`, `flops_per_example()`, and for ahead-of-time compiles `sampling_program(...)`.
Batches are {"target": [B, T, 64], "context": [B, T, 64], "clap": [B, D]} float32.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P

from diffariff_jax.diffusion.edm import Denoiser, conditioning_losses, edm_loss
from diffariff_jax.models.unet1d_cost import unet1d_cost

BATCH_KEYS = ("target", "context", "clap")


class LdmTask:
    """Diff-A-Riff latent diffusion: target stem latents given context latents and CLAP."""

    def __init__(self, config: ml_collections.ConfigDict):
        if config.kind != "ldm":
            raise ValueError(f"LdmTask needs an ldm config, got kind={config.kind!r}")
        self.config = config
        self.denoiser = Denoiser.from_config(config)

    @property
    def crop_frames(self) -> int:
        return int(self.config.data.crop_frames)

    def init_params(self, key: jax.Array) -> Any:
        """Fresh float32 UNet params."""
        return self.denoiser.init(key, self.crop_frames)

    def check_batch(self, batch: dict[str, jax.Array]) -> None:
        """One-line ValueError for a missing key or shapes that do not fit the model (trace-time check)."""
        missing = [k for k in BATCH_KEYS if k not in batch]
        if missing:
            raise ValueError(f"LDM batch is missing {', '.join(missing)}; it needs {', '.join(BATCH_KEYS)}")
        target, context, clap = (batch[k] for k in BATCH_KEYS)
        width, clap_dim = self.denoiser.latent_dim, self.denoiser.clap_dim
        if target.ndim != 3 or target.shape[-1] != width:
            raise ValueError(f"batch['target'] must be [batch, frames, {width}], got {tuple(target.shape)}")
        if tuple(context.shape) != tuple(target.shape):
            raise ValueError(f"batch['context'] {tuple(context.shape)} must match batch['target'] "
                             f"{tuple(target.shape)}")
        if tuple(clap.shape) != (target.shape[0], clap_dim):
            raise ValueError(f"batch['clap'] must be [{target.shape[0]}, {clap_dim}], "
                             f"got {tuple(clap.shape)}")

    def loss(self, params: Any, batch: dict[str, jax.Array], key: jax.Array,
             step: jax.Array) -> tuple[jax.Array, dict[str, jax.Array]]:
        """EDM weighted denoising loss with 50/50 context and CLAP dropout. Returns (loss, metrics)."""
        del step  # the EDM loss does not depend on the training step
        self.check_batch(batch)
        f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
        return edm_loss(self.denoiser, params, key, f32(batch["target"]), f32(batch["context"]),
                        f32(batch["clap"]), self.config.diffusion)

    def eval_metrics(self, params: Any, batch: dict[str, jax.Array], key: jax.Array) -> dict[str, jax.Array]:
        """Validation loss under each conditioning pattern on shared noise (edm.conditioning_losses):
        {"loss_context_clap", "loss_context_only", "loss_clap_only", "loss_unconditional"}, batch means."""
        f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
        losses = conditioning_losses(self.denoiser, params, key, f32(batch["target"]), f32(batch["context"]),
                                     f32(batch["clap"]), self.config.diffusion)
        return {f"loss_{name}": jnp.mean(v) for name, v in losses.items()}

    def dummy_batch(self, batch_size: int) -> dict[str, np.ndarray]:
        """Zero batch with the training shapes (for init, shape inference and compile-ahead)."""
        latents = np.zeros((batch_size, self.crop_frames, self.denoiser.latent_dim), np.float32)
        return {"target": latents, "context": latents.copy(),
                "clap": np.zeros((batch_size, self.denoiser.clap_dim), np.float32)}

    def flops_per_example(self) -> float:
        """Analytic forward + backward FLOPs of one training example (backward ~ 2x forward)."""
        return 3.0 * unet1d_cost(self.config.model, self.crop_frames).flops

    def sampling_program(self, mesh: jax.sharding.Mesh, params: Any, params_shardings: Any,
                         batch: int) -> tuple[Callable, tuple, float]:
        """(jitted sampler, abstract args, analytic FLOPs) of `diffusion.samplers.sample` (config.sampler: the
        three CFG branches in one call) for `batch` clips of crop_frames frames on params' shardings; params
        may be ShapeDtypeStructs (training/aot_compile.py compiles it ahead for a TPU topology)."""
        from diffariff_jax.diffusion import samplers
        from diffariff_jax.training import mesh as mesh_lib

        frames, sampler_cfg = self.crop_frames, self.config.sampler
        replicated = NamedSharding(mesh, P())
        rows = mesh_lib.batch_sharding(mesh) if batch % mesh.size == 0 else replicated

        def generate(params, key, context, clap):  # context: [batch, frames, 64], clap: [batch, clap_dim]
            return samplers.sample(self.denoiser, params, key, num_frames=frames, sampler_cfg=sampler_cfg,
                                   context=context, clap=clap)

        fn = jax.jit(generate, in_shardings=(params_shardings, replicated, rows, rows), out_shardings=rows)
        inputs = self.dummy_batch(batch)
        args = (params, jax.ShapeDtypeStruct((2,), jnp.uint32, sharding=replicated),
                jax.ShapeDtypeStruct(inputs["context"].shape, jnp.float32, sharding=rows),
                jax.ShapeDtypeStruct(inputs["clap"].shape, jnp.float32, sharding=rows))
        steps = int(sampler_cfg.steps)
        evaluations = 2 * steps - 1 if sampler_cfg.solver == "heun" else steps  # Heun's last step is Euler
        branches = 3  # unconditional, context, context + CLAP: one batched call
        return fn, args, unet1d_cost(self.config.model, frames).flops * evaluations * branches * batch
