"""The CAE's band-energy shortcut (model.band_shortcut, the `demo` recipe): log band energies of the input
reach the latent through one identity-initialised map, and a per-bin gain from the latent scales the
decoder's output. Random weights; closed forms for what each part must do."""
import functools

import jax
import jax.numpy as jnp
import librosa
import numpy as np
import pytest

from configs.cae import get_config
from diffariff_jax.audio.stft import Stft
from diffariff_jax.models.cae import CAE, CAEShape, band_energies
from diffariff_jax.testing.random_cae import random_params_like
from diffariff_jax.training.cae_task import CAETask

RATE = 48000


@pytest.fixture(scope="module")
def demo():
    config = get_config("demo")
    task = CAETask(config)
    params = random_params_like(jax.eval_shape(task.init_params, jax.random.PRNGKey(0)), seed=1)
    return task, params


def spectrogram(task: CAETask, wav: np.ndarray) -> jax.Array:
    return task.spectrogram(jnp.asarray(wav, jnp.float32))


def test_band_energies_follow_the_level_and_the_pitch(demo):
    task, _ = demo
    t = np.arange(4 * 4096) / RATE
    tone = 0.1 * np.sin(2 * np.pi * 1000.0 * t)[None]
    quiet, loud = (np.asarray(band_energies(task.shape, spectrogram(task, g * tone)))[0] for g in (1.0, 10.0))
    assert quiet.shape == (4, 64)
    # The compressed spectrogram's power goes as |X|^(2 alpha): a 20 dB louder input moves every band well
    # above the floor by alpha * log10(10) / 2 * 2 = alpha in the normalised units (log10 / 2).
    audible = quiet > -1.0
    assert audible.sum() >= 8
    np.testing.assert_allclose((loud - quiet)[audible], task.stft.alpha, atol=2e-3)
    centres = librosa.mel_frequencies(66, fmax=RATE / 2)[1:-1]
    assert abs(centres[int(np.argmax(quiet[1]))] - 1000.0) < 60.0  # the loudest band is the tone's


def test_at_init_the_shortcut_alone_puts_tanh_of_half_the_band_energies_in_the_latent(demo):
    task, _ = demo
    wav = 0.2 * np.random.default_rng(0).standard_normal((2, 3 * 4096))
    spec = spectrogram(task, wav)
    # The encoder's own initialisation (only its params: the decoder's init is the costly part).
    init = jax.jit(functools.partial(task.model.init, method=CAE.encode))(jax.random.PRNGKey(0), spec)
    params = jax.tree_util.tree_map(np.asarray, init)
    out = params["params"]["encoder"]["conv_out"]
    out["kernel"], out["bias"] = np.zeros_like(out["kernel"]), np.zeros_like(out["bias"])  # the learned path off
    latents = jax.jit(functools.partial(task.model.apply, method=CAE.encode))(params, spec)
    np.testing.assert_allclose(latents, np.tanh(0.5 * np.asarray(band_energies(task.shape, spec))), atol=1e-5)


def test_the_band_gain_scales_the_decoder_output_bin_by_bin(demo):
    task, params = demo
    rng = np.random.default_rng(2)
    latents = jnp.asarray(np.tanh(rng.standard_normal((1, 2, 64))), jnp.float32)
    x_in = jnp.asarray(rng.standard_normal((1, 1024, 16, 2)), jnp.float32)
    sigma = jnp.full((1,), 3.0)

    @jax.jit
    def network(p):
        return task.model.apply(p, x_in, sigma, task.model.apply(p, latents, method=CAE.pyramid), method=CAE.network)

    base = np.asarray(network(params))
    shifted = jax.tree_util.tree_map(lambda x: x, params)
    bias = np.zeros(1024, np.float32)
    bias[:512] = np.log(2.0)  # the lower half of the bins twice as loud, the rest as it was
    shifted["params"]["up_path"]["band_gain"]["bias"] = params["params"]["up_path"]["band_gain"]["bias"] + bias
    out = np.asarray(network(shifted))
    assert np.abs(base).max() > 0
    np.testing.assert_allclose(out[:, :512], 2.0 * base[:, :512], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(out[:, 512:], base[:, 512:], rtol=1e-5, atol=1e-6)


def test_a_shortcut_wider_than_the_latent_is_refused():
    with pytest.raises(ValueError, match=r"model: band_shortcut 65 outside 0..latent_dim \(64\)"):
        CAEShape(band_shortcut=65, latent_dim=64)


def test_the_shortcut_is_off_outside_the_demo_recipe():
    for variant in ("tiny", "base", "m2l"):
        assert CAEShape.from_config(get_config(variant).model).band_shortcut == 0
    assert Stft().bins == CAEShape.from_config(get_config("demo").model).freq_bins
