"""Audio file I/O with clear, one-line errors: read, write, resample, downmix, validate.

Waveforms are float32 numpy arrays shaped [channels, samples]. Every error names the input, so a user
with a folder of thousands of stems knows which file is bad without reading a traceback.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

log = logging.getLogger(__name__)


class AudioError(ValueError):
    """A waveform or audio file that cannot be used, with the reason and the input's name."""


def check_waveform(wav: np.ndarray, name: str = "waveform", min_samples: int = 1) -> np.ndarray:
    """Validates a waveform and returns it as float32 [channels, samples] (1-D input gets one channel).

    Raises AudioError for non-float dtypes, empty or too-short input, more than 2 dims and NaN/inf samples.
    """
    wav = np.asarray(wav)
    if not np.issubdtype(wav.dtype, np.floating):
        raise AudioError(f"{name}: expected floating-point samples in [-1, 1], got dtype {wav.dtype}")
    if wav.ndim == 1:
        wav = wav[None]
    if wav.ndim != 2:
        raise AudioError(f"{name}: expected [channels, samples], got shape {wav.shape}")
    if wav.shape[-1] < max(min_samples, 1):
        raise AudioError(f"{name}: {wav.shape[-1]} samples, need at least {max(min_samples, 1)}")
    if not np.all(np.isfinite(wav)):
        raise AudioError(f"{name}: contains NaN or inf samples")
    return wav.astype(np.float32, copy=False)


def is_silent(wav: np.ndarray, threshold_db: float = -60.0) -> bool:
    """True when the RMS level of the whole waveform is below `threshold_db` dBFS."""
    rms = float(np.sqrt(np.mean(np.square(wav, dtype=np.float64)) + 1e-20))
    return 20.0 * np.log10(rms) < threshold_db


def to_mono(wav: np.ndarray) -> np.ndarray:
    """[channels, samples] -> [1, samples] by averaging channels."""
    return wav.mean(axis=0, keepdims=True, dtype=np.float32)


def resample(wav: np.ndarray, sr_in: int, sr_out: int) -> np.ndarray:
    """High-quality resampling (soxr) of [channels, samples]; identity when the rates match."""
    if sr_in == sr_out:
        return wav
    out = soxr.resample(wav.T, sr_in, sr_out, quality="HQ")
    return np.ascontiguousarray(out.T, dtype=np.float32)


def read_audio(
    path: str | Path,
    sample_rate: int | None = None,
    mono: bool = False,
    allow_resample: bool = True,
    min_seconds: float = 0.0,
) -> np.ndarray:
    """Reads an audio file as float32 [channels, samples].

    sample_rate: the rate the caller needs. A file at another rate is resampled (with one log line
      saying so) when allow_resample, and refused with an AudioError otherwise.
    mono: average the channels into one.
    min_seconds: refuse files shorter than this.
    """
    path = Path(path)
    if not path.exists():
        raise AudioError(f"{path}: no such file")
    try:
        data, sr = sf.read(str(path), dtype="float32", always_2d=True)
    except Exception as e:  # soundfile raises several types; the user needs the path and the reason.
        raise AudioError(f"{path}: cannot be read as audio ({e})") from None
    wav = data.T
    if sample_rate is not None and sr != sample_rate:
        if not allow_resample:
            raise AudioError(f"{path}: sample rate {sr} Hz, expected {sample_rate} Hz")
        log.info("%s: resampling %d Hz -> %d Hz", path, sr, sample_rate)
        wav = resample(wav, sr, sample_rate)
        sr = sample_rate
    min_samples = int(np.ceil(min_seconds * sr))
    wav = check_waveform(wav, str(path), min_samples=max(1, min_samples))
    return to_mono(wav) if mono else wav


def write_audio(path: str | Path, wav: np.ndarray, sample_rate: int) -> None:
    """Writes float32 [channels, samples] (or [samples]) as 24-bit WAV/FLAC, clipping to [-1, 1]."""
    path = Path(path)
    wav = check_waveform(np.asarray(wav, dtype=np.float32), str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), np.clip(wav, -1.0, 1.0).T, sample_rate, subtype="PCM_24")
