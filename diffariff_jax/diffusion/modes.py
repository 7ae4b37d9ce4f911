"""Inference modes of Diff-A-Riff (SPEC.md section 4) as small pure functions the sampler calls.

  - CLAP interpolation: CLAP_r = (1 - r) CLAP_audio + r CLAP_text.
  - Inpainting: before every denoising step, the kept frames are overwritten by the known latents noised
    to that step's level; after the last step they are set to the known latents exactly.
  - Variations / pseudo-stereo: start from given latents noised to the level of step (1 - s) T and run
    the remaining steps (strength s = 1 is a fresh sample, s = 0 returns the input unchanged).
  - Loops: during the first s_loop T steps the latent is forced to repeat its first block n times.
  - Outpainting: windows of fixed length, each inpainted with the previous window's tail as known part,
    so any length is generated window by window with one compiled sampler.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def interpolate_clap(clap_audio: jax.Array, clap_text: jax.Array, r: float | jax.Array) -> jax.Array:
    """(1 - r) * audio + r * text. clap_*: [batch, dim] (or [dim]); r = 0 is pure audio, 1 pure text."""
    return (1.0 - r) * clap_audio + r * clap_text


def start_index(strength: jax.Array, steps: int) -> jax.Array:
    """First solver step for a variation of strength s: round((1 - s) * steps), clipped to [0, steps]."""
    idx = jnp.round((1.0 - jnp.asarray(strength, jnp.float32)) * steps).astype(jnp.int32)
    return jnp.clip(idx, 0, steps)


def renoise(latents: jax.Array, sigma: jax.Array, noise: jax.Array) -> jax.Array:
    """Latents noised to level sigma: x + sigma * eps (the start of a variation or of the stereo pass)."""
    return latents + sigma * noise


def expand_mask(mask: jax.Array, shape: tuple[int, ...]) -> jax.Array:
    """Frame mask [frames] or [batch, frames] (1 = keep known) -> float32 broadcastable to [b, frames, c]."""
    mask = jnp.asarray(mask, jnp.float32)
    if mask.ndim == 1:
        mask = mask[None, :]
    return jnp.broadcast_to(mask[:, :, None], shape)


def inpaint(x: jax.Array, known: jax.Array, mask: jax.Array, sigma: jax.Array, noise: jax.Array) -> jax.Array:
    """Overwrites the kept frames of x (noise level sigma) by the known latents noised to sigma.

    x, known, noise: [batch, frames, c]; mask: [batch, frames, c] float (1 = keep known).
    """
    return mask * (known + sigma * noise) + (1.0 - mask) * x


def loop_force(x: jax.Array, repeats: int) -> jax.Array:
    """Repeats the first ceil(frames / repeats) frames `repeats` times (cropped to frames).

    Copying one block (rather than averaging the blocks) keeps the noise level of x unchanged.
    x: [batch, frames, c] -> same shape.
    """
    frames = x.shape[1]
    block = -(-frames // repeats)
    return jnp.tile(x[:, :block], (1, repeats, 1))[:, :frames]


def loop_steps(loop_strength: jax.Array, steps: int) -> jax.Array:
    """Number of initial steps with loop forcing: round(s_loop * steps)."""
    return jnp.clip(jnp.round(jnp.asarray(loop_strength, jnp.float32) * steps), 0, steps).astype(jnp.int32)


def outpaint_windows(total_frames: int, window_frames: int, overlap_frames: int,
                     prefix_frames: int = 0) -> list[tuple[int, int]]:
    """Plan of (start, known) per window: the window covers [start, start + window) and its first `known`
    frames are already generated (or given as a prefix). Every window has the same length, so one
    compiled sampler serves all; the last one is shifted back to end exactly at total_frames.
    """
    if window_frames <= 0 or total_frames <= 0:
        raise ValueError(f"outpainting needs positive lengths, got total={total_frames}, "
                         f"window={window_frames}")
    if not 0 <= overlap_frames < window_frames:
        raise ValueError(f"outpaint overlap must be in [0, window={window_frames}), got {overlap_frames}")
    if not 0 <= prefix_frames <= total_frames:
        raise ValueError(f"prefix of {prefix_frames} frames does not fit in {total_frames} frames")
    window = min(window_frames, total_frames)
    plan, filled = [], prefix_frames
    while filled < total_frames:
        start = 0 if filled == 0 else max(filled - overlap_frames, 0)
        start = min(start, total_frames - window)
        plan.append((start, filled - start))
        filled = start + window
    return plan
