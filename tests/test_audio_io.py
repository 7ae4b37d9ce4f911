import numpy as np
import pytest

from diffariff_jax.audio import io


def test_write_read_round_trip(tmp_path):
    wav = (0.5 * np.sin(np.linspace(0, 200, 4800))).astype(np.float32)[None]
    io.write_audio(tmp_path / "a.wav", wav, 48000)
    back = io.read_audio(tmp_path / "a.wav", sample_rate=48000)
    assert back.shape == (1, 4800)
    np.testing.assert_allclose(back, wav, atol=1e-6)


def test_resample_changes_length_and_keeps_tone(tmp_path):
    t = np.arange(44100) / 44100
    io.write_audio(tmp_path / "b.wav", (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 44100)
    wav = io.read_audio(tmp_path / "b.wav", sample_rate=48000)
    assert wav.shape == (1, 48000)
    spectrum = np.abs(np.fft.rfft(wav[0]))
    assert abs(np.argmax(spectrum) - 440) <= 1  # 1 s at 48 kHz: bin index = Hz


def test_refuses_wrong_rate_without_resampling(tmp_path):
    io.write_audio(tmp_path / "c.wav", np.zeros((1, 100), np.float32) + 0.1, 16000)
    with pytest.raises(io.AudioError, match=r"c\.wav: sample rate 16000 Hz, expected 48000 Hz"):
        io.read_audio(tmp_path / "c.wav", sample_rate=48000, allow_resample=False)


def test_stereo_downmix(tmp_path):
    wav = np.stack([np.full(10, 0.2), np.full(10, 0.4)]).astype(np.float32)
    io.write_audio(tmp_path / "s.wav", wav, 48000)
    mono = io.read_audio(tmp_path / "s.wav", mono=True)
    np.testing.assert_allclose(mono, np.full((1, 10), 0.3), atol=1e-6)


@pytest.mark.parametrize(
    "wav, message",
    [
        (np.zeros((1, 0), np.float32), "0 samples"),
        (np.array([[0.0, np.nan]], np.float32), "NaN or inf"),
        (np.array([[0.0, np.inf]], np.float32), "NaN or inf"),
        (np.zeros((1, 4), np.int16), "dtype int16"),
        (np.zeros((1, 2, 3), np.float32), "shape"),
    ],
)
def test_check_waveform_errors(wav, message):
    with pytest.raises(io.AudioError, match=message):
        io.check_waveform(wav, "clip")


def test_unreadable_and_missing_files(tmp_path):
    (tmp_path / "bad.wav").write_bytes(b"not audio")
    with pytest.raises(io.AudioError, match=r"bad\.wav: cannot be read as audio"):
        io.read_audio(tmp_path / "bad.wav")
    with pytest.raises(io.AudioError, match=r"gone\.wav: no such file"):
        io.read_audio(tmp_path / "gone.wav")


def test_too_short_and_silence(tmp_path):
    io.write_audio(tmp_path / "short.wav", np.full((1, 480), 0.1, np.float32), 48000)
    with pytest.raises(io.AudioError, match=r"short\.wav: 480 samples, need at least 48000"):
        io.read_audio(tmp_path / "short.wav", sample_rate=48000, min_seconds=1.0)
    assert io.is_silent(np.zeros((1, 100), np.float32))
    assert not io.is_silent(np.full((1, 100), 0.1, np.float32))
