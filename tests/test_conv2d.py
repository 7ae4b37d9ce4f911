"""The CAE's Conv2d (models/conv2d.py) against flax.linen.Conv: same parameters, same outputs and gradients,
in both of its forms (shifted sums for few channels, lax convolution otherwise)."""
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffariff_jax.models.conv2d import Conv2d


@pytest.mark.parametrize("cin, cout, kernel, strides, padding", [
    (2, 4, (3, 3), (1, 1), "SAME"),                       # the CAE's input conv (shifted sums)
    (4, 4, (5, 1), (4, 1), ((2, 2), (0, 0))),             # 4x frequency downsampling
    (4, 4, (3, 3), (2, 2), ((1, 1), (1, 1))),             # 2x downsampling in both
    (4, 2, (3, 3), (1, 1), "SAME"),                       # the decoder's output conv
    (8, 8, (3, 3), (1, 1), "SAME"),                       # wide enough for lax.conv
])
def test_conv2d_is_flax_conv(cin, cout, kernel, strides, padding):
    x = jax.random.normal(jax.random.key(0), (2, 16, 12, cin))
    ours = Conv2d(cout, kernel, strides, padding, name="conv")
    ref = nn.Conv(cout, kernel, strides, padding, name="conv")
    params = ours.init(jax.random.key(1), x)
    ref_params = ref.init(jax.random.key(1), x)
    jax.tree.map(np.testing.assert_array_equal, params, ref_params)  # interchangeable checkpoints
    params = jax.tree.map(lambda p: p + 0.1, params)  # a non-zero bias too
    np.testing.assert_allclose(ours.apply(params, x), ref.apply(params, x), rtol=1e-5, atol=1e-5)
    loss = lambda m: lambda p, x: jnp.sum(jnp.sin(m.apply(p, x)))  # noqa: E731
    g_ours, g_ref = jax.grad(loss(ours), argnums=(0, 1))(params, x), jax.grad(loss(ref), argnums=(0, 1))(params, x)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4), g_ours, g_ref)


def test_bfloat16_compute_dtype_like_flax():
    x = jax.random.normal(jax.random.key(0), (1, 8, 8, 2))
    ours, ref = Conv2d(4, (3, 3), dtype=jnp.bfloat16), nn.Conv(4, (3, 3), dtype=jnp.bfloat16)
    params = ref.init(jax.random.key(1), x)
    out = ours.apply(params, x)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out, np.float32), np.asarray(ref.apply(params, x), np.float32),
                               rtol=5e-2, atol=5e-2)
