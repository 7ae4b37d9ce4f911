"""2-D convolution of the CAE, with a fast path for layers of very few channels.

    y[b, i, j, o] = bias[o] + sum_{dy, dx, c} x_pad[b, s_f i + dy, s_t j + dx, c] kernel[dy, dx, c, o]

Parameters and semantics are those of `flax.linen.Conv` (NHWC, HWIO kernel, "SAME" or explicit padding,
strides), so checkpoints are interchangeable. The CAE's first and last levels run at the full 1024 STFT
bins with 2 to 4 channels (the `tiny`/`demo` recipes): there a convolution's matrix multiply has an inner
size of 9 x 4 and 4 outputs, mostly overhead on every backend (XLA:CPU measured 1.5 to 9 GFLOP/s). When
in_channels x out_channels <= SHIFTED_SUM_MAX, the sum above is written out as kh x kw x C x O scalar
multiply-adds of shifted slices, which XLA fuses into one elementwise loop (2x to 6.7x faster on CPU for
2->4, 4->4 and 4->2 channels; benchmarks/cae_conv_speed.py); its gradient is the convolution's. Wider
layers use lax.conv_general_dilated.
"""
from __future__ import annotations

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

SHIFTED_SUM_MAX = 16  # in x out channels at or below which the shifted-sum form is used

Padding = str | Sequence[tuple[int, int]]


def same_padding(size: int, kernel: int, stride: int) -> tuple[int, int]:
    """XLA's "SAME" padding of one spatial axis: out = ceil(size / stride), extra on the high side."""
    out = -(-size // stride)
    total = max((out - 1) * stride + kernel - size, 0)
    return total // 2, total - total // 2


def shifted_sum_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                     padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
    """x: [b, h, w, c], kernel: [kh, kw, c, o] -> [b, h', w', o] as explicit shifted multiply-adds."""
    kh, kw, cin, cout = kernel.shape
    (p0, p1), (q0, q1) = padding
    xp = jnp.pad(x, ((0, 0), (p0, p1), (q0, q1), (0, 0)))
    h_out = (x.shape[1] + p0 + p1 - kh) // strides[0] + 1
    w_out = (x.shape[2] + q0 + q1 - kw) // strides[1] + 1
    outs = [None] * cout
    for dy in range(kh):
        for dx in range(kw):
            patch = xp[:, dy:dy + strides[0] * (h_out - 1) + 1:strides[0],
                       dx:dx + strides[1] * (w_out - 1) + 1:strides[1], :]
            for c in range(cin):
                plane = patch[..., c]
                for o in range(cout):
                    term = plane * kernel[dy, dx, c, o]
                    outs[o] = term if outs[o] is None else outs[o] + term
    return jnp.stack(outs, axis=-1)


def _lax_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
              padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
    return jax.lax.conv_general_dilated(x, kernel, strides, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"))


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3))
def few_channel_conv(x: jax.Array, kernel: jax.Array, strides: tuple[int, int],
                     padding: tuple[tuple[int, int], tuple[int, int]]) -> jax.Array:
    """The convolution computed as shifted sums, differentiated as the lax convolution: the shifted-sum
    form's weight gradient is kh x kw x C x O separate reductions over every position, slower than the
    convolution's own (a CAE training step measured 0.75x with it)."""
    return shifted_sum_conv(x, kernel, strides, padding)


def _few_channel_fwd(x, kernel, strides, padding):
    return shifted_sum_conv(x, kernel, strides, padding), (x, kernel)


def _few_channel_bwd(strides, padding, residuals, grad):
    x, kernel = residuals
    _, vjp = jax.vjp(lambda a, b: _lax_conv(a, b, strides, padding), x, kernel)
    return vjp(grad)


few_channel_conv.defvjp(_few_channel_fwd, _few_channel_bwd)


class Conv2d(nn.Module):
    """`nn.Conv` for [batch, freq, time, channels] inputs (same params, init and results up to rounding)."""

    features: int
    kernel_size: tuple[int, int]
    strides: tuple[int, int] = (1, 1)
    padding: Padding = "SAME"
    dtype: Any = None
    kernel_init: Any = nn.linear.default_kernel_init
    bias_init: Any = nn.initializers.zeros_init()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kh, kw = self.kernel_size
        cin = x.shape[-1]
        kernel = self.param("kernel", self.kernel_init, (kh, kw, cin, self.features), jnp.float32)
        bias = self.param("bias", self.bias_init, (self.features,), jnp.float32)
        dtype = self.dtype or jnp.result_type(x, jnp.float32)
        x, kernel, bias = (a.astype(dtype) for a in (x, kernel, bias))
        strides = tuple(self.strides)
        if isinstance(self.padding, str):
            if self.padding != "SAME":
                raise ValueError(f"Conv2d: padding {self.padding!r}; use 'SAME' or explicit pairs")
            padding = (same_padding(x.shape[1], kh, strides[0]), same_padding(x.shape[2], kw, strides[1]))
        else:
            padding = tuple(tuple(p) for p in self.padding)
        conv = few_channel_conv if cin * self.features <= SHIFTED_SUM_MAX else _lax_conv
        return conv(x, kernel, strides, padding) + bias
