"""Band matching at decode (inference.band_renorm, the `demo` recipe): the band readout predicts the input's
band energies from the latent, and the decoded spectrogram's bands are scaled onto that prediction.
Closed forms and numpy references (np.interp for the gain between latent-frame centres)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.cae import get_config
from diffariff_jax.autoencoder import Autoencoder
from diffariff_jax.models.cae import CAE, CAEShape, band_energies, match_band_energies
from diffariff_jax.testing.random_cae import random_params_like
from diffariff_jax.training.cae_task import CAETask

SHAPE = CAEShape.from_config(get_config("demo").model)  # 1024 bins, 64 bands, 8 STFT frames per latent frame


def random_spec(seed: int, latent_frames: int = 3) -> jax.Array:
    """[1, freq, frames, 2], a coloured spectrum whose level changes from frame to frame."""
    rng = np.random.default_rng(seed)
    frames = latent_frames * SHAPE.time_reduction
    tilt = np.linspace(0.0, -3.0, SHAPE.freq_bins)[:, None, None]
    level = rng.uniform(-1.0, 0.5, (1, frames, 1))
    spec = rng.standard_normal((1, SHAPE.freq_bins, frames, 2)) * 10.0 ** (tilt + level)
    return jnp.asarray(spec, jnp.float32)


def test_a_uniform_band_shift_scales_every_covered_bin_by_the_closed_form():
    spec = random_spec(0)
    target = band_energies(SHAPE, spec) + 0.25
    out = np.asarray(match_band_energies(SHAPE, spec, target))
    # +0.25 in band units (log10 power / 2) is 10^0.5 in power, so 10^0.25 in magnitude, in every bin a band
    # covers (bin 0, the DC bin, lies outside every triangle and is left as it was).
    np.testing.assert_allclose(out[:, 1:], 10.0 ** 0.25 * np.asarray(spec)[:, 1:], rtol=1e-4)
    np.testing.assert_allclose(out[:, 0], np.asarray(spec)[:, 0])
    audible = np.asarray(target) > 0.0  # far above the 1e-6 power floor, which does not scale
    assert audible.mean() > 0.5
    np.testing.assert_allclose(np.asarray(band_energies(SHAPE, jnp.asarray(out)))[audible],
                               np.asarray(target)[audible], atol=1e-3)


def test_no_band_is_raised_past_the_cap_nor_cut_past_60_db():
    spec = random_spec(3)
    energies = band_energies(SHAPE, spec)
    for shift, cap_db, want_db in ((2.0, 12.0, 12.0), (0.25, 12.0, 5.0), (-5.0, 12.0, -60.0)):
        # shift in band units is 20 x shift dB of magnitude: +40 dB asked, 12 given; +5 within the cap.
        out = np.asarray(match_band_energies(SHAPE, spec, energies + shift, max_gain_db=cap_db))
        np.testing.assert_allclose(out[:, 1:], 10.0 ** (want_db / 20.0) * np.asarray(spec)[:, 1:], rtol=1e-4)


def test_the_gain_is_linear_between_latent_frame_centres_and_held_at_the_edges():
    frames = 4 * SHAPE.time_reduction
    spec = jnp.ones((1, SHAPE.freq_bins, frames, 2), jnp.float32)
    shifts = np.array([0.0, 0.4, -0.2, 0.1], np.float32)  # per latent frame, the same for every band
    target = band_energies(SHAPE, spec) + shifts[None, :, None]
    out = np.asarray(match_band_energies(SHAPE, spec, target))
    centres = SHAPE.time_reduction * np.arange(4) + (SHAPE.time_reduction - 1) / 2.0
    want = 10.0 ** np.interp(np.arange(frames), centres, shifts)  # np.interp holds the end values
    np.testing.assert_allclose(out[0, 500, :, 0], want, rtol=1e-5)


def test_matching_moves_a_changing_envelope_onto_the_target():
    spec = random_spec(1)
    rng = np.random.default_rng(2)
    energies = band_energies(SHAPE, spec)
    # Per latent frame a level change and a spectral tilt. (A target that jumps from band to band is met only
    # part of the way: neighbouring bands share bins.)
    tilt = np.linspace(-1.0, 1.0, SHAPE.band_shortcut)[None, None]
    shift = rng.uniform(-0.5, 0.5, (1, 3, 1)) + rng.uniform(-0.5, 0.5, (1, 3, 1)) * tilt
    target = energies + jnp.asarray(shift, jnp.float32)
    audible = np.asarray(energies) > 0.0
    before = np.median(np.abs(np.asarray(energies - target))[audible])
    after = np.median(np.abs(np.asarray(band_energies(SHAPE, match_band_energies(SHAPE, spec, target)) - target))[audible])
    assert before > 0.2 and after < 0.05 * before


@pytest.fixture(scope="module")
def demo():
    config = get_config("demo")
    task = CAETask(config)
    params = random_params_like(jax.eval_shape(task.init_params, jax.random.PRNGKey(0)), seed=1)
    return config, task, params


def test_the_readout_starts_as_the_linearised_inverse_of_the_shortcut():
    config = get_config("demo")
    task = CAETask(config)
    spec = random_spec(4, latent_frames=2)

    def encode_and_read(model: CAE, spec):  # initialises only the encoder and the readout: the rest is not read
        return model.readout(model.encode(spec))

    init = jax.jit(functools.partial(task.model.init, method=encode_and_read))(jax.random.PRNGKey(0), spec)
    params = jax.tree_util.tree_map(np.asarray, init)
    out = params["params"]["encoder"]["conv_out"]
    out["kernel"], out["bias"] = np.zeros_like(out["kernel"]), np.zeros_like(out["bias"])  # the learned path off
    readout = jax.jit(functools.partial(task.model.apply, method=encode_and_read))(params, spec)
    # The untrained encoder writes tanh(E / 2); the readout starts at 2 z.
    np.testing.assert_allclose(readout, 2.0 * np.tanh(0.5 * np.asarray(band_energies(SHAPE, spec))), atol=1e-4)


def test_the_readout_trains_without_touching_the_codec(demo):
    """Its loss term has stop-gradient inputs: the encoder's and decoder's gradients do not depend on it."""
    config, task, params = demo
    batch = {"audio": jnp.asarray(0.1 * np.random.default_rng(5).standard_normal((2, task.crop_samples)), jnp.float32)}
    grad = jax.jit(jax.grad(lambda p: task.loss(p, batch, jax.random.PRNGKey(0), jnp.asarray(10))[0]))
    other = jax.tree_util.tree_map(lambda x: x, params)
    other["params"]["band_readout"] = jax.tree_util.tree_map(lambda x: x + 0.3, params["params"]["band_readout"])
    g1, g2 = grad(params)["params"], grad(other)["params"]
    assert float(jnp.abs(g1["band_readout"]["dense"]["kernel"]).max()) > 0
    for part in ("encoder", "up_path", "unet"):
        for a, b in zip(jax.tree_util.tree_leaves(g1[part]), jax.tree_util.tree_leaves(g2[part])):
            np.testing.assert_array_equal(a, b)


def test_decode_follows_the_readout_with_band_renorm_and_ignores_it_without(demo):
    """A readout that predicts 0 in every band, then -0.5 (10 dB less power in the compressed spectrogram):
    the matched decode gets 10^-0.5 times the compressed magnitude, so 10^(-0.5 / alpha) times the waveform,
    sample for sample (same noise); without band_renorm nothing changes."""
    config, task, params = demo
    latents = np.tanh(np.random.default_rng(6).standard_normal((1, 4, 64))).astype(np.float32)
    latents /= config.inference.latent_scale

    def with_readout(bias: float):
        p = jax.tree_util.tree_map(lambda x: x, params)
        kernel = params["params"]["band_readout"]["dense"]["kernel"]
        p["params"]["band_readout"] = {"dense": {"kernel": np.zeros_like(kernel),
                                                 "bias": np.full(SHAPE.band_shortcut, bias, np.float32)}}
        return p

    off_config = get_config("demo")
    off_config.inference.band_renorm = False
    for cfg, ratio in ((config, 10.0 ** (-0.5 / task.stft.alpha)), (off_config, 1.0)):
        base, low = (Autoencoder(cfg, with_readout(b)).decode(latents, jax.random.PRNGKey(0)) for b in (0.0, -0.5))
        assert 1e-3 < np.sqrt(np.mean(base ** 2)) and np.abs(base).max() < 1.0  # audible, unclipped
        # The STFT's DC bin, which no band covers, keeps its level (this random decoder puts much there):
        # compare above 30 Hz, to 1 % of the peak (the DC bin leaks a little past 30 Hz).
        low, base = above_30_hz(low), above_30_hz(base)
        np.testing.assert_allclose(low, ratio * base, atol=1e-2 * ratio * np.abs(base).max())


def above_30_hz(wav: np.ndarray) -> np.ndarray:
    spectrum = np.fft.rfft(wav, axis=-1)
    spectrum[..., : int(30.0 * wav.shape[-1] / 48000) + 1] = 0.0
    return np.fft.irfft(spectrum, n=wav.shape[-1], axis=-1)


def test_band_renorm_needs_the_shortcut_and_the_readouts_weights(demo):
    config, _, params = demo
    bad = get_config("tiny")
    bad.inference.band_renorm = True
    with pytest.raises(ValueError, match=r"^config: inference.band_renorm needs the band-energy shortcut"):
        Autoencoder(bad, params)
    old = {"params": {k: v for k, v in params["params"].items() if k != "band_readout"}}
    with pytest.raises(ValueError, match=r"^Autoencoder: these CAE weights have no band readout"):
        Autoencoder(config, old)
