"""Log-mel distance and the equal-rate DSP codec baseline (metrics/logmel.py), and the CAE demo recipe's
log-mel training loss (audio/mel_loss.py), checked against closed forms."""
import jax.numpy as jnp
import numpy as np
import pytest

from diffariff_jax.audio.mel_loss import log_mel_l1, mel_filterbank
from diffariff_jax.audio.stft import Stft
from diffariff_jax.metrics.logmel import log_mel_distance, mel_codec_baseline, mel_codec_distance

SR = 48000


def _noise(seconds: float = 1.0, seed: int = 0) -> np.ndarray:
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


def _tone(seconds: float = 2.0) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    return (0.3 * sum(np.sin(2 * np.pi * 220 * k * t) / k for k in (1, 2, 3, 5))).astype(np.float32)


def test_a_gain_change_scores_its_size_in_db():
    # White noise keeps every mel bin far above the 80 dB floor, so a 6 dB louder copy is 6 dB away everywhere.
    x = _noise()
    assert log_mel_distance(x, x, SR) == 0.0
    assert log_mel_distance(x, x * 10 ** (6 / 20), SR) == pytest.approx(6.0, abs=1e-6)
    assert log_mel_distance(x, x * 10 ** (-3 / 20), SR) == pytest.approx(3.0, abs=1e-6)


def test_silence_scores_the_reference_height_above_its_floor():
    x = _tone()
    import librosa

    ref_db = 10 * np.log10(librosa.feature.melspectrogram(y=x.astype(np.float64), sr=SR, n_fft=2048, hop_length=512,
                                                          n_mels=128, power=2.0, htk=False, norm="slaney"))
    floor = ref_db.max() - 80
    expected = np.mean((ref_db - floor)[ref_db >= floor])
    assert log_mel_distance(x, np.zeros_like(x), SR) == pytest.approx(expected, rel=1e-6)
    assert log_mel_distance(x, np.zeros(10, np.float32), SR) == pytest.approx(expected, rel=1e-6)  # zero-padded


def test_mel_codec_baseline_keeps_length_and_beats_silence():
    x = _tone()
    y = mel_codec_baseline(x, SR)
    assert y.shape == x.shape and np.all(np.isfinite(y))
    codec, silence = mel_codec_distance(x, SR), log_mel_distance(x, np.zeros_like(x), SR)
    assert codec < 0.5 * silence


@pytest.mark.parametrize("bad, match", [(np.zeros((2, 10)), "mono"), (np.array([]), "mono"),
                                        (np.array([0.0, np.nan]), "NaN")])
def test_bad_input_is_one_line_error(bad, match):
    with pytest.raises(ValueError, match=match):
        log_mel_distance(bad, np.zeros(4), SR)
    with pytest.raises(ValueError, match="silent"):
        log_mel_distance(np.zeros(4096), np.zeros(4096), SR)


def test_mel_loss_measures_gain_and_phase_consistency():
    stft = Stft()
    fb = jnp.asarray(mel_filterbank(SR, stft.window, 64))
    x = jnp.asarray(_noise(0.5)[None])
    spec = stft.wave_to_spec(x, 8)
    assert float(log_mel_l1(stft, spec, spec, fb)[0]) < 1e-3
    louder = stft.wave_to_spec(2.0 * x, 8)  # power x4 -> log10 ratio 0.602 in every band
    assert float(log_mel_l1(stft, louder, spec, fb)[0]) == pytest.approx(np.log10(4.0), rel=2e-2)
    # Same magnitudes, random phases: not the STFT of any waveform; the projection loses energy, so the loss
    # sees what the decoder would produce instead of the per-bin magnitudes, which equal the reference's.
    mag = jnp.sqrt(jnp.sum(spec**2, axis=-1, keepdims=True))
    phase = np.random.default_rng(1).uniform(0, 2 * np.pi, mag.shape[:-1] + (1,))
    scrambled = jnp.concatenate([mag * np.cos(phase), mag * np.sin(phase)], axis=-1)
    assert float(log_mel_l1(stft, scrambled, spec, fb)[0]) > 0.05
