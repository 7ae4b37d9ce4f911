"""The tiny CAE through the public Autoencoder API: shapes (mono, stereo, odd lengths, 10 s at 48 kHz),
chunking, the consistency boundary with the real decoder, release round trip and bad input."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs.cae import get_config
from diffariff_jax.audio.io import AudioError
from diffariff_jax.autoencoder import Autoencoder
from diffariff_jax.models.cae import CAE, analytic_flops
from diffariff_jax.testing.random_cae import random_params_like
from diffariff_jax.training.cae_task import CAETask
from diffariff_jax.training.checkpoint import CheckpointError, save_release


@pytest.fixture(scope="module")
def ae():
    config = get_config("tiny")
    config.inference.chunk_frames = 118  # 10 s windows: the 10 s test and the 35 s test share compilations
    # Random weights (no layer zero-initialised, so the decoder is not the identity and tests see it), drawn
    # in numpy: compiling the Flax init took 18 s here and these tests do not depend on it.
    shapes = jax.eval_shape(CAETask(config).init_params, jax.random.PRNGKey(0))
    return Autoencoder(config, random_params_like(shapes))


def noise(shape, seed=0):
    return (0.3 * np.random.default_rng(seed).standard_normal(shape)).astype(np.float32)


def test_frame_arithmetic(ae):
    assert ae.frames_for(480000) == 118  # 10 s at 48 kHz: ceil(480000 / 4096)
    assert [ae.frames_for(n) for n in (1, 4096, 4097, 8192)] == [1, 1, 2, 2]
    assert abs(ae.frames_per_second - 11.71875) < 1e-9


def test_mono_odd_length_round_trip_shapes(ae):
    x = noise((2, 12345))
    z = ae.encode(x)
    assert z.shape == (2, 4, 64) and z.dtype == np.float32
    assert np.all(np.abs(z) <= 1 / 0.06 + 1e-4)  # tanh / latent_scale
    y = ae.decode(z, jax.random.PRNGKey(0), num_samples=12345)
    assert y.shape == (2, 12345) and np.all(np.abs(y) <= 1)
    assert ae.decode(z, jax.random.PRNGKey(0)).shape == (2, 4 * 4096)


def test_stereo_is_encoded_channel_by_channel(ae):
    x = noise((1, 2, 12345), seed=1)
    z = ae.encode(x)
    assert z.shape == (1, 2, 4, 64)
    np.testing.assert_allclose(z[0], ae.encode(x[0]), atol=1e-5)  # the channels as a mono batch
    y = ae.decode(z, jax.random.PRNGKey(0), num_samples=12345)
    assert y.shape == (1, 2, 12345)


def test_ten_seconds_at_48k(ae):
    z = ae.encode(noise((1, 480000), seed=2))
    assert z.shape == (1, 118, 64)


def test_chunked_encoding_of_35_seconds(ae):
    x = noise((1, 35 * 48000), seed=3)
    frames = ae.frames_for(x.shape[-1])  # 411 = 3 * 118 + 57
    z = ae.encode(x)
    assert z.shape == (1, frames, 64) and frames == 411 and ae.chunk_frames == 118
    w = 118 * 4096
    for k, start in enumerate(range(0, frames, 118)):
        window = ae.encode(x[:, k * w: (k + 1) * w])
        assert window.shape[1] == min(118, frames - start)
        np.testing.assert_allclose(z[:, start: start + 118], window, atol=1e-5)


def test_decoder_is_exact_at_sigma_min(ae):
    spec = jax.random.normal(jax.random.PRNGKey(4), (2, 1024, 16, 2))

    @jax.jit
    def f(x, sigma):
        raw = ae.model.apply(ae.params, x, method=CAE.encode)
        pyramid = ae.model.apply(ae.params, raw, method=CAE.pyramid)
        return ae.consistency.precondition(
            lambda x_in, s: ae.model.apply(ae.params, x_in, s, pyramid, method=CAE.network))(x, sigma)

    np.testing.assert_array_equal(np.asarray(f(spec, jnp.full((2,), 0.002))), np.asarray(spec))
    assert not np.allclose(np.asarray(f(spec, jnp.full((2,), 1.0))), np.asarray(spec), atol=1e-3)


def test_decoding_depends_on_the_key(ae):
    z = ae.encode(noise((2, 12345), seed=5))
    a, b = (ae.decode(z, jax.random.PRNGKey(k)) for k in (0, 1))
    np.testing.assert_array_equal(a, ae.decode(z, jax.random.PRNGKey(0)))
    assert not np.array_equal(a, b)
    assert ae.decode(z, jax.random.PRNGKey(0), steps=2).shape == a.shape


def test_release_round_trip(ae, tmp_path):
    save_release(tmp_path / "rel", ae.config, ae.params)
    loaded = Autoencoder.load(str(tmp_path / "rel"))
    x = noise((2, 12345), seed=6)
    np.testing.assert_allclose(loaded.encode(x), ae.encode(x), atol=1e-6)
    with pytest.raises(CheckpointError, match="does not exist"):
        Autoencoder.load(str(tmp_path / "missing"))


def test_task_batch_loss_and_flops():
    task = CAETask(get_config("tiny"))
    batch = task.dummy_batch(2)
    frames = task.config.data.crop_frames
    assert batch["audio"].shape == (2, frames * 4096) and batch["audio"].dtype == np.float32
    fl = analytic_flops(task.shape, frames * 8)
    assert task.flops_per_example() == pytest.approx(3 * (fl["encode"] + fl["pyramid"] + fl["network"]) + fl["network"])
    assert fl["encode"] > 0 and fl["network"] > fl["encode"]


@pytest.mark.parametrize("bad, match", [
    (np.zeros((1, 0), np.float32), "0 samples"),
    (np.array([[0.1, np.nan, 0.2] * 100], np.float32), "NaN or inf"),
    (np.array([[0.1, np.inf, 0.2] * 100], np.float32), "NaN or inf"),
    (np.zeros((1, 1000), np.int16), "dtype int16"),
    (np.zeros(1000, np.float32), "expected \\[batch, samples\\]"),
])
def test_bad_audio_is_refused_in_one_line(ae, bad, match):
    with pytest.raises(AudioError, match=match) as err:
        ae.encode(bad)
    assert "\n" not in str(err.value) and "encode input" in str(err.value)


def test_wrong_sample_rate_is_refused(ae):
    with pytest.raises(AudioError, match="sample rate 44100 Hz, this autoencoder expects 48000 Hz") as err:
        ae.encode(noise((1, 1000)), sample_rate=44100)
    assert "\n" not in str(err.value)


def test_bad_latents_are_refused(ae):
    with pytest.raises(ValueError, match="latents"):
        ae.decode(np.zeros((1, 4, 32), np.float32), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="NaN or inf"):
        ae.decode(np.full((1, 4, 64), np.nan, np.float32), jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match="num_samples"):
        ae.decode(np.zeros((1, 2, 64), np.float32), jax.random.PRNGKey(0), num_samples=9000)


def test_configs_of_another_kind_or_inconsistent_sizes_are_refused():
    from configs import ldm as ldm_configs

    with pytest.raises(ValueError, match="Autoencoder needs a config of kind 'cae', got 'ldm'"):
        Autoencoder(ldm_configs.get_config("tiny"), params={})
    with pytest.raises(ValueError, match="CAETask needs a config of kind 'cae', got 'ldm'"):
        CAETask(ldm_configs.get_config("tiny"))
    config = get_config("tiny")
    config.model.freq_bins = config.model.freq_bins // 2
    with pytest.raises(ValueError, match=r"config: stft gives \d+ bins, model.freq_bins is \d+"):
        CAETask(config)
