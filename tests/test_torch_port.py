"""PyTorch twin vs the JAX model on random tiny weights (float32, JAX at matmul precision "highest"):
the UNet forward, and 30-step Heun samples with two-scale CFG and with inpainting from the same noise.

The JAX side is the reference: `samplers.sample` with a key; the torch side gets the very noise that
sample draws from that key (recomputed here with jax.random), through the twin's `noise` hook."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from diffariff_jax.diffusion import samplers
from diffariff_jax.export import names
from diffariff_jax.export.torch_port import LatentDiffusion, sampling
from diffariff_jax.training.checkpoint import config_to_dict
from export_fixture import tiny_ldm

B, T = 2, 13  # 13 frames: not a multiple of the UNet's frame multiple, so padding and cropping are exercised


@pytest.fixture(scope="module", autouse=True)
def highest_precision():
    with jax.default_matmul_precision("highest"):
        yield


@pytest.fixture(scope="module")
def models():
    config, denoiser, params = tiny_ldm(seed=0)
    twin = LatentDiffusion(config_to_dict(config))
    twin.denoiser.model.load_state_dict({k: torch.from_numpy(v) for k, v in names.flax_to_torch(params).items()})
    return config, denoiser, params, twin.eval()


def inputs(seed: int, clap_dim: int):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((B, T, 64)).astype(np.float32), rng.standard_normal((B, clap_dim)).astype(np.float32))


def jax_noise(key: jax.Array, shape: tuple):
    """The noise `samplers.sample(key=key)` draws from four keys: initial noise, the first pass's per-step
    (churn, inpaint) keys, the stereo re-noising, the stereo pass's per-step keys."""
    k_init, k_steps, k_stereo, k_stereo_steps = jax.random.split(key, 4)

    def noise(kind, shape_, pass_index, step):
        assert tuple(shape_) == tuple(shape)
        if kind in ("init", "stereo"):
            return torch.from_numpy(np.array(jax.random.normal(k_init if kind == "init" else k_stereo, shape)))
        k_churn, k_inpaint = jax.random.split(jax.random.fold_in((k_steps, k_stereo_steps)[pass_index], step))
        return torch.from_numpy(np.array(jax.random.normal(k_inpaint if kind == "inpaint" else k_churn, shape)))

    return noise


def test_unet_forward_matches(models):
    config, denoiser, params, twin = models
    context, clap = inputs(0, config.model.clap_dim)
    x = np.random.default_rng(1).standard_normal((B, T, 64)).astype(np.float32)
    c_noise = np.log(np.array([0.3, 12.0], np.float32)) / 4
    dropped = np.array([False, True])
    ours = np.asarray(denoiser.model.apply({"params": params}, jnp.asarray(x), jnp.asarray(c_noise),
                                           jnp.asarray(context), jnp.asarray(clap), jnp.asarray(dropped)))
    with torch.no_grad():
        theirs = twin.denoiser.model(*(torch.from_numpy(a) for a in (x, c_noise, context, clap, dropped))).numpy()
    scale = np.abs(ours).max()
    err = np.abs(ours - theirs).max()
    print(f"UNet forward: max |jax - torch| = {err:.3g}, output scale {scale:.3g}, ratio {err / scale:.3g}")
    assert scale > 0.1 and err <= 1e-5 * scale


@pytest.mark.parametrize("mode", ["cfg", "inpaint"])
def test_30_step_heun_sample_matches(models, mode):
    config, denoiser, params, twin = models
    context, clap = inputs(2, config.model.clap_dim)
    key = jax.random.key(5)
    extra = {}
    if mode == "inpaint":
        known = np.random.default_rng(3).standard_normal((B, T, 64)).astype(np.float32)
        mask = (np.arange(T) < 5).astype(np.float32)
        extra = {"inpaint_latents": known, "inpaint_mask": mask}
    cfg = config.sampler
    assert (cfg.steps, cfg.solver, cfg.cfg_context, cfg.cfg_clap, cfg.churn) == (30, "heun", 1.25, 1.25, 0.0)
    ours = np.asarray(samplers.sample(denoiser, params, key, num_frames=T, sampler_cfg=cfg, context=context,
                                      clap=clap, **extra))
    theirs = twin.sample(num_frames=T, context=torch.from_numpy(context), clap=torch.from_numpy(clap),
                         noise=jax_noise(key, (B, T, 64)),
                         **{k: torch.from_numpy(v) for k, v in extra.items()}).numpy()
    err, scale = np.abs(ours - theirs).max(), np.abs(ours).max()
    print(f"30-step Heun, CFG 1.25/1.25, {mode}: max |jax - torch| = {err:.3g}, sample scale {scale:.3g}")
    assert np.isfinite(ours).all() and err <= 1e-4 * max(scale, 1.0)
    if mode == "inpaint":
        np.testing.assert_array_equal(theirs[:, :5], known[:, :5])


def test_guidance_uses_three_branches_in_one_call(models):
    """Nested CFG: with scales (a, b) the result is D0 + a (Dc - D0) + b (Dca - Dc) of the three branches."""
    config, _, _, twin = models
    context, clap = inputs(4, config.model.clap_dim)
    ctx, cl = torch.from_numpy(context), torch.from_numpy(clap)
    x = torch.randn(B, T, 64, generator=torch.Generator().manual_seed(0))
    sigma = torch.tensor(1.5)
    calls = []
    hook = twin.denoiser.register_forward_hook(lambda m, a, out: calls.append(a[0].shape[0]))
    guided = sampling.guided_denoiser(twin.denoiser, ctx, cl, 1.25, 2.0)(x, sigma)
    hook.remove()
    assert calls == [3 * B]
    with torch.no_grad():
        d = twin.denoiser
        d0 = d(x, sigma, torch.zeros_like(x), torch.zeros_like(cl), torch.ones(B, dtype=torch.bool))
        dc = d(x, sigma, ctx, torch.zeros_like(cl), torch.ones(B, dtype=torch.bool))
        dca = d(x, sigma, ctx, cl, torch.zeros(B, dtype=torch.bool))
    torch.testing.assert_close(guided, d0 + 1.25 * (dc - d0) + 2.0 * (dca - dc), rtol=1e-5, atol=1e-5)


def test_variation_loop_stereo_and_churn_match(models):
    """Euler with churn, a variation of given latents, loop forcing and pseudo-stereo (whose second pass
    starts inside the loop-forced steps): every noise kind and both passes."""
    config, denoiser, params, twin = models
    context, clap = inputs(6, config.model.clap_dim)
    init = np.random.default_rng(7).standard_normal((B, T, 64)).astype(np.float32)
    cfg = config.sampler.copy_and_resolve_references()
    cfg.steps, cfg.solver, cfg.churn, cfg.churn_sigma_max = 12, "euler", 6.0, 20.0
    kw = dict(variation_strength=0.9, loop_repeats=3, loop_strength=0.5, stereo_width=0.75)
    key = jax.random.key(11)
    ours = np.asarray(samplers.sample(denoiser, params, key, num_frames=T, sampler_cfg=cfg, context=context,
                                      clap=clap, init_latents=init, **kw))
    theirs = twin.sample(num_frames=T, context=torch.from_numpy(context), clap=torch.from_numpy(clap),
                         init_latents=torch.from_numpy(init), noise=jax_noise(key, (B, T, 64)), steps=12,
                         solver="euler", churn=6.0, churn_sigma_max=20.0, **kw).numpy()
    err, scale = np.abs(ours - theirs).max(), np.abs(ours).max()
    print(f"12-step Euler, churn, variation, loop, stereo: max |jax - torch| = {err:.3g}, scale {scale:.3g}")
    assert ours.shape == theirs.shape == (B, 2, T, 64) and err <= 1e-4 * max(scale, 1.0)
