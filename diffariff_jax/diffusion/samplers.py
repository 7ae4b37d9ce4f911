"""EDM samplers with two-scale classifier-free guidance and every inference mode, in one compiled loop.

`sample(...)` is the public entry point (the `generate` CLI and eval call it); `outpaint(...)` extends it
to any length window by window. Inside, the whole solver loop is one `lax.fori_loop` in one jitted
program; guidance scales, strengths and noise-schedule numbers are traced arrays, so changing them
never recompiles. Euler and Heun share one signature: step(denoise, x, t_cur, t_next) -> x_next.

Guidance (SPEC.md section 2, nested form), the three branches batched into one network call:
    D = D(0, null) + w_ctx (D(c, null) - D(0, null)) + w_clap (D(c, a) - D(c, null))
"""
from __future__ import annotations

import functools
import math
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from diffariff_jax.diffusion import modes
from diffariff_jax.diffusion.edm import Denoiser

DenoiseFn = Callable[[jax.Array, jax.Array], jax.Array]  # (x [b, t, c], sigma scalar) -> D(x; sigma)


def karras_sigmas(steps: int, sigma_min: jax.Array, sigma_max: jax.Array, rho: jax.Array) -> jax.Array:
    """EDM time steps: (s_max^(1/rho) + i/(N-1) (s_min^(1/rho) - s_max^(1/rho)))^rho, i < N, then 0.

    Returns [steps + 1] float32, decreasing, last entry 0.
    """
    i = jnp.arange(steps, dtype=jnp.float32) / max(steps - 1, 1)
    inv_rho = 1.0 / rho
    sig = (sigma_max**inv_rho + i * (sigma_min**inv_rho - sigma_max**inv_rho)) ** rho
    return jnp.concatenate([sig, jnp.zeros((1,), jnp.float32)])


def euler_step(denoise: DenoiseFn, x: jax.Array, t_cur: jax.Array, t_next: jax.Array) -> jax.Array:
    """First-order step of the probability-flow ODE dx/dt = (x - D(x; t)) / t."""
    d = (x - denoise(x, t_cur)) / t_cur
    return x + (t_next - t_cur) * d


def heun_step(denoise: DenoiseFn, x: jax.Array, t_cur: jax.Array, t_next: jax.Array) -> jax.Array:
    """EDM Algorithm 2's second-order step; the correction is skipped when t_next = 0 (last step)."""
    d = (x - denoise(x, t_cur)) / t_cur
    x_euler = x + (t_next - t_cur) * d

    def correct(x_euler):
        d_next = (x_euler - denoise(x_euler, t_next)) / t_next
        return x + (t_next - t_cur) * 0.5 * (d + d_next)

    return jax.lax.cond(t_next > 0, correct, lambda x_e: x_e, x_euler)


SOLVERS = {"euler": euler_step, "heun": heun_step}


class SamplerParams(NamedTuple):
    """Traced sampler numbers (changing any of them does not recompile)."""

    sigma_min: jax.Array
    sigma_max: jax.Array
    rho: jax.Array
    churn: jax.Array
    churn_sigma_min: jax.Array
    churn_sigma_max: jax.Array
    churn_noise: jax.Array
    cfg_context: jax.Array
    cfg_clap: jax.Array


def guided_denoiser(denoiser: Denoiser, params: Any, context: jax.Array | None, clap: jax.Array | None,
                    cfg_context: jax.Array, cfg_clap: jax.Array) -> DenoiseFn:
    """D_cfg(x; sigma) with nested two-scale guidance; absent conditions drop their branches statically.

    context: [b, t, c] or None; clap: [b, d] or None. All branches go through ONE denoiser call.
    """

    def denoise(x: jax.Array, sigma: jax.Array) -> jax.Array:
        b = x.shape[0]
        zeros_ctx = jnp.zeros_like(x)
        null_clap = jnp.zeros((b, denoiser.clap_dim), jnp.float32)
        # (context, clap, clap_dropped) of each branch: unconditional, context only, context + CLAP.
        branches = [(zeros_ctx, null_clap, True)]
        if context is not None:
            branches.append((context, null_clap, True))
        if clap is not None:
            branches.append((context if context is not None else zeros_ctx, clap, False))
        n = len(branches)
        out = denoiser(params, jnp.concatenate([x] * n), jnp.full((n * b,), sigma, jnp.float32),
                       context=jnp.concatenate([br[0] for br in branches]),
                       clap=jnp.concatenate([br[1] for br in branches]),
                       clap_dropped=jnp.repeat(jnp.array([br[2] for br in branches]), b))
        outs = jnp.split(out, n)
        result = outs[0]
        if context is not None:
            result = result + cfg_context * (outs[1] - outs[0])
        if clap is not None:
            result = result + cfg_clap * (outs[-1] - outs[-2])
        return result

    return denoise


def _solve(denoise: DenoiseFn, x: jax.Array, sigmas: jax.Array, key: jax.Array, start: jax.Array,
           sp: SamplerParams, solver: str, inpaint: tuple[jax.Array, jax.Array] | None,
           loop: tuple[int, jax.Array] | None) -> jax.Array:
    """Runs solver steps start..N-1 in one fori_loop, with churn and the per-step mode hooks."""
    steps = sigmas.shape[0] - 1
    step_fn = SOLVERS[solver]
    gamma_max = jnp.minimum(sp.churn / steps, math.sqrt(2.0) - 1.0)

    def body(i, x):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        k_churn, k_inpaint = jax.random.split(jax.random.fold_in(key, i))
        in_range = (t_cur >= sp.churn_sigma_min) & (t_cur <= sp.churn_sigma_max)
        gamma = jnp.where(in_range, gamma_max, 0.0)
        t_hat = t_cur * (1.0 + gamma)
        # sqrt(t_hat^2 - t_cur^2) written as t_cur sqrt(gamma (2 + gamma)): exactly 0 for gamma = 0, where
        # the difference of squares becomes a fused multiply-add that leaves a small positive residual.
        churn_std = t_cur * jnp.sqrt(gamma * (2.0 + gamma)) * sp.churn_noise
        x = x + churn_std * jax.random.normal(k_churn, x.shape)
        if inpaint is not None:
            x = modes.inpaint(x, inpaint[0], inpaint[1], t_hat, jax.random.normal(k_inpaint, x.shape))
        x = step_fn(denoise, x, t_hat, t_next)
        if loop is not None:  # forces the input of step i + 1: steps 0..L-1 see a loop, L = loop[1]
            x = jnp.where(i + 1 < loop[1], modes.loop_force(x, loop[0]), x)
        return x

    x = jax.lax.fori_loop(start, steps, body, x)
    if inpaint is not None:
        x = inpaint[1] * inpaint[0] + (1.0 - inpaint[1]) * x
    return x


@functools.partial(jax.jit,
                   static_argnames=("denoiser", "shape", "steps", "solver", "loop_repeats", "stereo"))
def _sample_jit(denoiser, params, key, sp, context, clap, inpaint_latents, inpaint_mask, init_latents,
                variation_strength, loop_strength, stereo_width, *, shape, steps, solver, loop_repeats,
                stereo):
    """The compiled sampler: one program per (denoiser, shape, steps, solver, modes present)."""
    k_init, k_loop, k_stereo, k_stereo_loop = jax.random.split(key, 4)
    sigmas = karras_sigmas(steps, sp.sigma_min, sp.sigma_max, sp.rho)
    denoise = guided_denoiser(denoiser, params, context, clap, sp.cfg_context, sp.cfg_clap)
    inpaint = None
    if inpaint_latents is not None:
        inpaint = (inpaint_latents, modes.expand_mask(inpaint_mask, shape))
    loop = None if loop_repeats is None else (loop_repeats, modes.loop_steps(loop_strength, steps))

    noise = jax.random.normal(k_init, shape, jnp.float32)
    if init_latents is None:
        start, x = jnp.int32(0), sigmas[0] * noise
    else:
        start = modes.start_index(variation_strength, steps)
        x = modes.renoise(init_latents, sigmas[start], noise)
    if loop is not None:
        x = jnp.where(loop[1] > start, modes.loop_force(x, loop_repeats), x)
    x = _solve(denoise, x, sigmas, k_loop, start, sp, solver, inpaint, loop)
    if not stereo:
        return x
    # Pseudo-stereo: the second channel is a variation of the first with strength = width.
    start2 = modes.start_index(stereo_width, steps)
    x2 = modes.renoise(x, sigmas[start2], jax.random.normal(k_stereo, shape, jnp.float32))
    x2 = _solve(denoise, x2, sigmas, k_stereo_loop, start2, sp, solver, inpaint, loop)
    return jnp.stack([x, x2], axis=1)


def _host_checked(name: str, value: Any, shape: tuple[int | None, ...]) -> jax.Array | None:
    """Validates shape (None = any size) and finiteness of a user input; one-line ValueError otherwise."""
    if value is None:
        return None
    if not isinstance(value, jax.core.Tracer):
        host = np.asarray(value)
        if host.dtype != bool and not np.all(np.isfinite(host)):
            raise ValueError(f"{name} contains NaN or Inf values")
    arr = jnp.asarray(value, jnp.float32)
    if arr.ndim != len(shape) or any(want is not None and got != want for got, want in zip(arr.shape, shape)):
        want = ", ".join("?" if s is None else str(s) for s in shape)
        raise ValueError(f"{name} must have shape [{want}], got {tuple(arr.shape)}")
    return arr


def _batch_size(batch_size: int | None, named: dict[str, Any]) -> int:
    """The one batch size implied by the explicit value and by every given batched input."""
    sizes = {name: int(np.shape(v)[0]) for name, v in named.items() if v is not None and np.ndim(v) > 0}
    if batch_size is not None:
        sizes["batch_size"] = int(batch_size)
    if len(set(sizes.values())) > 1:
        raise ValueError("mismatched batch sizes: " + ", ".join(f"{k}={v}" for k, v in sizes.items()))
    return next(iter(sizes.values()), 1)


def sample(denoiser: Denoiser, params: Any, key: jax.Array, *, num_frames: int,
           sampler_cfg: ml_collections.ConfigDict, batch_size: int | None = None,
           context: jax.Array | None = None, clap: jax.Array | None = None,
           cfg_context: float | None = None, cfg_clap: float | None = None,
           inpaint_latents: jax.Array | None = None, inpaint_mask: jax.Array | None = None,
           init_latents: jax.Array | None = None, variation_strength: float | None = None,
           loop_repeats: int | None = None, loop_strength: float | None = None,
           stereo_width: float | None = None) -> jax.Array:
    """Generates latents with the EDM sampler of `sampler_cfg` (steps, solver, schedule, churn, CFG).

    context: [batch, num_frames, 64] or None (no context); clap: [batch, clap_dim] or None (no CLAP;
      use modes.interpolate_clap for text/audio mixes). cfg_*: override sampler_cfg's guidance scales.
    inpaint_latents: [batch, num_frames, 64] with inpaint_mask [num_frames] or [batch, num_frames]
      (1 = keep): those frames equal inpaint_latents in the result.
    init_latents + variation_strength s in [0, 1]: a variation (defaults to sampler_cfg.variation_strength).
    loop_repeats n + loop_strength s_loop: the first s_loop*steps steps repeat one block n times.
    stereo_width s: also generate a second channel as a variation of strength s of the first.
    Returns [batch, num_frames, 64] float32, or [batch, 2, num_frames, 64] when stereo_width is given.
    """
    width = denoiser.latent_dim
    batch = _batch_size(batch_size, {"context": context, "clap": clap, "inpaint_latents": inpaint_latents,
                                     "init_latents": init_latents})
    latent_shape = (batch, num_frames, width)
    context = _host_checked("context", context, latent_shape)
    clap = _host_checked("clap", clap, (batch, denoiser.clap_dim))
    init_latents = _host_checked("init_latents", init_latents, latent_shape)
    if (inpaint_latents is None) != (inpaint_mask is None):
        raise ValueError("inpainting needs both inpaint_latents and inpaint_mask")
    inpaint_latents = _host_checked("inpaint_latents", inpaint_latents, latent_shape)
    if inpaint_mask is not None:
        inpaint_mask = _host_checked("inpaint_mask", inpaint_mask, (num_frames,) if np.ndim(inpaint_mask) == 1
                                     else (batch, num_frames))
    if loop_repeats is not None and not 1 <= int(loop_repeats) <= num_frames:
        raise ValueError(f"loop_repeats must be in [1, {num_frames}], got {loop_repeats}")
    if sampler_cfg.solver not in SOLVERS:
        raise ValueError(f"sampler.solver={sampler_cfg.solver!r}; choose one of {', '.join(SOLVERS)}")
    if int(sampler_cfg.steps) < 1:
        raise ValueError(f"sampler.steps must be >= 1, got {sampler_cfg.steps}")
    f32 = lambda v: jnp.asarray(v, jnp.float32)  # noqa: E731
    sp = SamplerParams(
        sigma_min=f32(sampler_cfg.sigma_min), sigma_max=f32(sampler_cfg.sigma_max), rho=f32(sampler_cfg.rho),
        churn=f32(sampler_cfg.churn), churn_sigma_min=f32(sampler_cfg.churn_sigma_min),
        churn_sigma_max=f32(sampler_cfg.churn_sigma_max), churn_noise=f32(sampler_cfg.churn_noise),
        cfg_context=f32(sampler_cfg.cfg_context if cfg_context is None else cfg_context),
        cfg_clap=f32(sampler_cfg.cfg_clap if cfg_clap is None else cfg_clap))
    strength = sampler_cfg.variation_strength if variation_strength is None else variation_strength
    loop_s = sampler_cfg.loop_strength if loop_strength is None else loop_strength
    return _sample_jit(
        denoiser, params, key, sp, context, clap, inpaint_latents, inpaint_mask, init_latents,
        None if init_latents is None else f32(strength), None if loop_repeats is None else f32(loop_s),
        None if stereo_width is None else f32(stereo_width),
        shape=latent_shape, steps=int(sampler_cfg.steps), solver=sampler_cfg.solver,
        loop_repeats=None if loop_repeats is None else int(loop_repeats), stereo=stereo_width is not None)


def outpaint(denoiser: Denoiser, params: Any, key: jax.Array, *, total_frames: int, window_frames: int,
             sampler_cfg: ml_collections.ConfigDict, overlap_frames: int | None = None,
             batch_size: int | None = None, context: jax.Array | None = None, clap: jax.Array | None = None,
             prefix: jax.Array | None = None, cfg_context: float | None = None,
             cfg_clap: float | None = None) -> jax.Array:
    """Generates `total_frames` frames window by window (any length), each window inpainted with the
    already generated tail (overlap_frames, default sampler_cfg.outpaint_overlap_frames) as known part.

    context: [batch, total_frames, 64] or None; clap: [batch, clap_dim] or None; prefix: [batch, P, 64]
    latents kept as the start of the result. Every window has the same shape: one compilation.
    Returns [batch, total_frames, 64] float32.
    """
    overlap = sampler_cfg.outpaint_overlap_frames if overlap_frames is None else overlap_frames
    batch = _batch_size(batch_size, {"context": context, "clap": clap, "prefix": prefix})
    width = denoiser.latent_dim
    context = _host_checked("context", context, (batch, total_frames, width))
    prefix = _host_checked("prefix", prefix, (batch, None, width))
    prefix_frames = 0 if prefix is None else prefix.shape[1]
    plan = modes.outpaint_windows(total_frames, window_frames, overlap, prefix_frames)
    window = min(window_frames, total_frames)
    out = jnp.zeros((batch, total_frames, width), jnp.float32)
    if prefix is not None:
        out = out.at[:, :prefix_frames].set(prefix)
    for n, (start, known) in enumerate(plan):
        mask = (jnp.arange(window) < known).astype(jnp.float32)
        latents = sample(denoiser, params, jax.random.fold_in(key, n), num_frames=window,
                         sampler_cfg=sampler_cfg, batch_size=batch, clap=clap, cfg_context=cfg_context,
                         cfg_clap=cfg_clap, inpaint_latents=out[:, start:start + window], inpaint_mask=mask,
                         context=None if context is None else context[:, start:start + window])
        out = out.at[:, start:start + window].set(latents)
    return out
