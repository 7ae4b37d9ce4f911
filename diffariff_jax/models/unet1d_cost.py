"""Analytic parameter count and forward FLOPs of the DDPM++ 1-D UNet (models/unet1d.py), from its config.

Written from the architecture description, not from the module, so benchmarks/ldm_size.py can check
one against the other (jax.eval_shape for params, XLA's cost analysis for FLOPs). FLOPs count the
multiply-adds of convolutions, dense layers and attention (2 per MAC); norms and activations are
left out, which is why XLA reports a few percent more.
"""
from __future__ import annotations

from typing import NamedTuple

import ml_collections


class Cost(NamedTuple):
    params: int
    flops: float  # forward pass, per example


def _conv(cin: int, cout: int, kernel: int, frames: int) -> Cost:
    return Cost(kernel * cin * cout + cout, 2.0 * kernel * cin * cout * frames)


def _dense(cin: int, cout: int) -> Cost:
    return Cost(cin * cout + cout, 2.0 * cin * cout)


def _sum(*costs: Cost) -> Cost:
    return Cost(sum(c.params for c in costs), sum(c.flops for c in costs))


def _block(cin: int, cout: int, emb: int, frames_out: int, resample: bool, attention: bool) -> Cost:
    """One UNetBlock; frames_out is its output length."""
    parts = [Cost(2 * cin, 0.0), _conv(cin, cout, 3, frames_out), _dense(emb, cout), Cost(2 * cout, 0.0),
             _conv(cout, cout, 3, frames_out)]
    if cin != cout or resample:
        parts.append(_conv(cin, cout, 1, frames_out))
    if attention:
        scores = 2.0 * 2.0 * frames_out * frames_out * cout  # q.k^T and weights.v
        parts += [Cost(2 * cout, scores), _conv(cout, 3 * cout, 1, frames_out),
                  _conv(cout, cout, 1, frames_out)]
    return _sum(*parts)


def unet1d_cost(model_cfg: ml_collections.ConfigDict, frames: int) -> Cost:
    """Parameters and forward FLOPs per example of UNet1D(model_cfg) on `frames` latent frames."""
    ch, mult = model_cfg.channels, tuple(model_cfg.channel_mult)
    levels = len(mult)
    padded = -(-frames // 2 ** (levels - 1)) * 2 ** (levels - 1)
    noise_ch, emb = model_cfg.noise_channels_mult * ch, model_cfg.emb_mult * ch
    attn = set(model_cfg.attn_levels)
    parts = [_dense(model_cfg.clap_dim, noise_ch), _dense(noise_ch, noise_ch), Cost(noise_ch, 0.0),
             _dense(noise_ch, emb), _dense(emb, emb)]
    skips, c_prev = [], 2 * model_cfg.latent_dim
    for level, m in enumerate(mult):
        c, length = ch * m, padded >> level
        if level == 0:
            parts.append(_conv(c_prev, c, 3, length))
        else:
            parts.append(_block(c_prev, c_prev, emb, length, True, False))
        skips.append(c_prev if level else c)
        c_prev = c if level == 0 else c_prev
        for _ in range(model_cfg.num_res_blocks):
            parts.append(_block(c_prev, c, emb, length, False, level in attn))
            c_prev = c
            skips.append(c)
    for level in reversed(range(levels)):
        c, length = ch * mult[level], padded >> level
        if level == levels - 1:
            parts += [_block(c_prev, c_prev, emb, length, False, True),
                      _block(c_prev, c_prev, emb, length, False, False)]
        else:
            parts.append(_block(c_prev, c_prev, emb, length, True, False))
        for i in range(model_cfg.num_res_blocks + 1):
            attention = i == model_cfg.num_res_blocks and level in attn
            parts.append(_block(c_prev + skips.pop(), c, emb, length, False, attention))
            c_prev = c
    parts += [Cost(2 * c_prev, 0.0), _conv(c_prev, model_cfg.latent_dim, 3, padded)]
    return _sum(*parts)
