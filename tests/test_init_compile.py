"""jit_init: a model init compiled at XLA's backend optimisation level 0 gives the default compile's
parameters to within float32 rounding, and works inside another jit (the trainer's sharded init)."""
import jax
import jax.numpy as jnp
import numpy as np

from configs.ldm import get_config
from diffariff_jax.models.init_compile import jit_init
from diffariff_jax.models.unet1d import UNet1D


def _init_fn():
    model = UNet1D.from_config(get_config("tiny").model)
    x = jnp.zeros((1, 8, 64))
    return lambda key: model.init(key, x, jnp.zeros((1,)), x, jnp.zeros((1, 32)), jnp.zeros((1,), bool))


def test_level_0_init_matches_the_default_compile_and_nests_in_a_jit():
    init, key = _init_fn(), jax.random.PRNGKey(3)
    ours, default = jit_init(init)(key), jax.jit(init)(key)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(default)):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    # JAX refuses compiler options on a nested jit: there jit_init is a plain nested jit.
    nested = jax.jit(lambda k: jax.tree.map(lambda p: 2 * p, jit_init(init)(k)))(key)
    for a, b in zip(jax.tree.leaves(nested), jax.tree.leaves(default)):
        np.testing.assert_allclose(np.asarray(a), 2 * np.asarray(b), rtol=1e-6, atol=1e-7)
    assert jax.tree.structure(jax.eval_shape(jit_init(init), key)) == jax.tree.structure(default)
