"""EDM sampling with two-scale classifier-free guidance and Diff-A-Riff's inference modes, in PyTorch:
the twin of `diffariff_jax/diffusion/samplers.py` and `modes.py`.

Guidance (nested form), the three branches batched into one denoiser call:
    D = D(0, null) + w_ctx (D(c, null) - D(0, null)) + w_clap (D(c, a) - D(c, null))
Time steps: sigma_i = (s_max^(1/rho) + i/(N-1) (s_min^(1/rho) - s_max^(1/rho)))^rho, i < N, then 0.
Modes: inpainting (kept frames overwritten by the known latents noised to the step's level, exact at the
end), variations (start at step round((1 - s) N) from the given latents noised to that level),
pseudo-stereo (the second channel is a variation of strength = width of the first), loops (the inputs
of the first round(s_loop N) steps repeat one block). Churn gamma = 0 adds exactly no noise.

Randomness comes from a `noise(kind, shape, pass_index, step)` callable (kinds: "init", "stereo",
"churn", "inpaint"); the default draws from a torch.Generator. Passing another one reproduces the noise
of another implementation exactly. This file imports only torch and numpy.
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch

from .edm import Denoiser

NoiseFn = Callable[[str, tuple, int, int], torch.Tensor]
DenoiseFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]

DEFAULTS = {"steps": 30, "solver": "heun", "sigma_min": 0.002, "sigma_max": 80.0, "rho": 7.0, "churn": 0.0,
            "churn_sigma_min": 0.0, "churn_sigma_max": 1e9, "churn_noise": 1.0, "cfg_context": 1.25,
            "cfg_clap": 1.25, "variation_strength": 0.5, "loop_strength": 0.3}


def generator_noise(generator: torch.Generator | None = None, device: torch.device | str = "cpu") -> NoiseFn:
    """Standard normal noise drawn in call order from `generator` (torch's default one when None)."""
    def noise(kind: str, shape: tuple, pass_index: int, step: int) -> torch.Tensor:
        return torch.randn(shape, generator=generator, device=device)
    return noise


def karras_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float) -> torch.Tensor:
    """[steps + 1] float32 noise levels, decreasing, last entry 0."""
    i = torch.arange(steps, dtype=torch.float32) / max(steps - 1, 1)
    s_min, s_max, inv_rho = (torch.tensor(v, dtype=torch.float32) for v in (sigma_min, sigma_max, 1.0 / rho))
    sig = (s_max**inv_rho + i * (s_min**inv_rho - s_max**inv_rho)) ** rho
    return torch.cat([sig, torch.zeros(1)])


def euler_step(denoise: DenoiseFn, x: torch.Tensor, t_cur: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
    """First-order step of the probability-flow ODE dx/dt = (x - D(x; t)) / t."""
    return x + (t_next - t_cur) * ((x - denoise(x, t_cur)) / t_cur)


def heun_step(denoise: DenoiseFn, x: torch.Tensor, t_cur: torch.Tensor, t_next: torch.Tensor) -> torch.Tensor:
    """EDM Algorithm 2's second-order step; no correction on the last step (t_next = 0)."""
    d = (x - denoise(x, t_cur)) / t_cur
    x_euler = x + (t_next - t_cur) * d
    if float(t_next) == 0.0:
        return x_euler
    d_next = (x_euler - denoise(x_euler, t_next)) / t_next
    return x + (t_next - t_cur) * 0.5 * (d + d_next)


SOLVERS = {"euler": euler_step, "heun": heun_step}


def guided_denoiser(denoiser: Denoiser, context: torch.Tensor | None, clap: torch.Tensor | None,
                    cfg_context: float, cfg_clap: float) -> DenoiseFn:
    """D_cfg(x; sigma); absent conditions drop their branches. context: [b, t, c]; clap: [b, d]."""
    def denoise(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
        b = x.shape[0]
        zeros_ctx = torch.zeros_like(x)
        null_clap = torch.zeros((b, denoiser.clap_dim), device=x.device)
        branches = [(zeros_ctx, null_clap, True)]
        if context is not None:
            branches.append((context, null_clap, True))
        if clap is not None:
            branches.append((zeros_ctx if context is None else context, clap, False))
        n = len(branches)
        dropped = torch.tensor([br[2] for br in branches], device=x.device).repeat_interleave(b)
        out = denoiser(torch.cat([x] * n), sigma.expand(n * b), torch.cat([br[0] for br in branches]),
                       torch.cat([br[1] for br in branches]), dropped).chunk(n)
        result = out[0]
        if context is not None:
            result = result + cfg_context * (out[1] - out[0])
        if clap is not None:
            result = result + cfg_clap * (out[-1] - out[-2])
        return result
    return denoise


def start_index(strength: float, steps: int) -> int:
    """First step of a variation of strength s: round((1 - s) steps) in float32 (as JAX), in [0, steps]."""
    return int(np.clip(np.round(np.float32(1.0 - np.float32(strength)) * np.float32(steps)), 0, steps))


def loop_force(x: torch.Tensor, repeats: int) -> torch.Tensor:
    """Repeats the first ceil(frames / repeats) frames `repeats` times. x: [batch, frames, c]."""
    frames = x.shape[1]
    return x[:, :-(-frames // repeats)].repeat(1, repeats, 1)[:, :frames]


def _solve(denoise: DenoiseFn, x: torch.Tensor, sigmas: torch.Tensor, start: int, opts: dict, noise: NoiseFn,
           pass_index: int, inpaint: tuple[torch.Tensor, torch.Tensor] | None,
           loop: tuple[int, int] | None) -> torch.Tensor:
    """Steps start..N-1 with churn, inpainting and loop forcing. Loop forcing applies to the inputs of
    steps < round(s_loop N); the stereo pass (pass_index 1) starts from the renoised first channel
    unforced and forces from its second step on, as the JAX sampler does."""
    steps = sigmas.shape[0] - 1
    step_fn = SOLVERS[opts["solver"]]
    gamma_max = min(opts["churn"] / steps, math.sqrt(2.0) - 1.0)
    for i in range(start, steps):
        t_cur, t_next = sigmas[i], sigmas[i + 1]
        if loop is not None and i < loop[1] and (i > start or pass_index == 0):
            x = loop_force(x, loop[0])
        gamma = gamma_max if opts["churn_sigma_min"] <= float(t_cur) <= opts["churn_sigma_max"] else 0.0
        t_hat = t_cur * (1.0 + gamma)
        if gamma > 0:  # sqrt(t_hat^2 - t_cur^2), written as JAX writes it
            std = t_cur * math.sqrt(gamma * (2.0 + gamma)) * opts["churn_noise"]
            x = x + std * noise("churn", tuple(x.shape), pass_index, i).to(x.device)
        if inpaint is not None:
            known, mask = inpaint
            x = mask * (known + t_hat * noise("inpaint", tuple(x.shape), pass_index, i).to(x.device)) \
                + (1.0 - mask) * x
        x = step_fn(denoise, x, t_hat.to(x.device), t_next.to(x.device))
    if inpaint is not None:
        x = inpaint[1] * inpaint[0] + (1.0 - inpaint[1]) * x
    return x


@torch.no_grad()
def sample(denoiser: Denoiser, *, num_frames: int, batch_size: int | None = None,
           context: torch.Tensor | None = None, clap: torch.Tensor | None = None,
           inpaint_latents: torch.Tensor | None = None, inpaint_mask: torch.Tensor | None = None,
           init_latents: torch.Tensor | None = None, loop_repeats: int | None = None,
           stereo_width: float | None = None, noise: NoiseFn | None = None, **options) -> torch.Tensor:
    """Generates latents; `options` override DEFAULTS (steps, solver, sigma_*, rho, churn*, cfg_context,
    cfg_clap, variation_strength, loop_strength).

    context, inpaint_latents, init_latents: [batch, num_frames, latent_dim]; clap: [batch, clap_dim];
    inpaint_mask: [num_frames] or [batch, num_frames], 1 = keep. Returns [batch, num_frames, latent_dim],
    or [batch, 2, num_frames, latent_dim] when stereo_width is given.
    """
    unknown = set(options) - set(DEFAULTS)
    if unknown:
        raise ValueError(f"unknown sampler options: {', '.join(sorted(unknown))}")
    opts = {**DEFAULTS, **options}
    if opts["solver"] not in SOLVERS:
        raise ValueError(f"solver={opts['solver']!r}; choose one of {', '.join(SOLVERS)}")
    if (inpaint_latents is None) != (inpaint_mask is None):
        raise ValueError("inpainting needs both inpaint_latents and inpaint_mask")
    device = next(denoiser.parameters()).device
    given = [t for t in (context, clap, inpaint_latents, init_latents) if t is not None]
    batch = batch_size or (given[0].shape[0] if given else 1)
    shape = (batch, num_frames, denoiser.latent_dim)
    as_dev = lambda t: None if t is None else torch.as_tensor(t, dtype=torch.float32).to(device)  # noqa: E731
    context, clap, init_latents, inpaint_latents = map(as_dev, (context, clap, init_latents, inpaint_latents))
    noise = noise or generator_noise(device=device)
    steps = int(opts["steps"])
    sigmas = karras_sigmas(steps, opts["sigma_min"], opts["sigma_max"], opts["rho"]).to(device)
    denoise = guided_denoiser(denoiser, context, clap, opts["cfg_context"], opts["cfg_clap"])
    inpaint = None
    if inpaint_latents is not None:
        mask = as_dev(inpaint_mask)
        mask = (mask[None] if mask.ndim == 1 else mask)[:, :, None].expand(shape)
        inpaint = (inpaint_latents, mask)
    loop = None
    if loop_repeats is not None:
        loop = (int(loop_repeats), int(np.clip(np.round(np.float32(opts["loop_strength"]) * steps), 0, steps)))

    x0 = noise("init", shape, 0, 0).to(device)
    if init_latents is None:
        start, x = 0, sigmas[0] * x0
    else:
        start = start_index(opts["variation_strength"], steps)
        x = init_latents + sigmas[start] * x0
    x = _solve(denoise, x, sigmas, start, opts, noise, 0, inpaint, loop)
    if stereo_width is None:
        return x
    start2 = start_index(stereo_width, steps)
    x2 = x + sigmas[start2] * noise("stereo", shape, 1, 0).to(device)
    x2 = _solve(denoise, x2, sigmas, start2, opts, noise, 1, inpaint, loop)
    return torch.stack([x, x2], dim=1)
