"""The compressed complex STFT: exact round trip at any length, layout, compression law, jit."""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from diffariff_jax.audio.stft import Stft
from music_fixture import chorale

STFT = Stft()


def snr_db(ref, est):
    ref, est = np.asarray(ref, np.float64), np.asarray(est, np.float64)
    return 10 * np.log10(np.sum(ref**2) / np.sum((ref - est) ** 2))


@pytest.mark.parametrize("n", [1, 511, 4096, 48000 + 37])
def test_round_trip_noise_any_length(n):
    x = np.random.default_rng(n).uniform(-0.9, 0.9, (2, n)).astype(np.float32)
    spec = STFT.wave_to_spec(jnp.asarray(x), frames_per_block=8)
    assert spec.shape == (2, 1024, 8 * max(1, -(-n // 4096)), 2)
    y = STFT.spec_to_wave(spec, n)
    assert y.shape == x.shape
    assert snr_db(x, y) > 60


def test_round_trip_music(tmp_path):
    x = chorale(2.0, 48000, tmp_path)[None]
    y = jax.jit(lambda w: STFT.spec_to_wave(STFT.wave_to_spec(w), w.shape[-1]))(jnp.asarray(x))
    assert y.shape == x.shape
    assert snr_db(x, y) > 60


def test_matches_numpy_reference():
    """Layout, window, dropped Nyquist bin and compression against an independent numpy STFT."""
    x = np.random.default_rng(0).normal(size=(1, 2048 + 3 * 512)).astype(np.float32)
    spec = np.asarray(STFT.spectrogram(jnp.asarray(x)))
    assert spec.shape == (1, 1024, 4, 2)
    win = np.hanning(2049)[:-1]  # periodic Hann
    for t in range(4):
        z = np.fft.rfft(x[0, t * 512 : t * 512 + 2048] * win)[:1024]
        ref = 0.34 * np.abs(z) ** 0.65 * np.exp(1j * np.angle(z))
        np.testing.assert_allclose(spec[0, :, t, 0], ref.real, atol=2e-4, rtol=1e-3)
        np.testing.assert_allclose(spec[0, :, t, 1], ref.imag, atol=2e-4, rtol=1e-3)


def test_silence_and_frame_arithmetic():
    assert STFT.blocks_for(480000, 8) == 118
    assert STFT.pad_for_blocks(jnp.zeros((1, 480000)), 8).shape == (1, 118 * 4096 + 1536)
    spec = STFT.wave_to_spec(jnp.zeros((1, 1000)))
    assert np.all(np.asarray(spec) == 0)
    assert np.all(np.asarray(STFT.spec_to_wave(spec, 1000)) == 0)


def test_too_short_unpadded_signal_is_refused():
    with pytest.raises(ValueError, match="need at least one window"):
        STFT.spectrogram(jnp.zeros((1, 100)))
