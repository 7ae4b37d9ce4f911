"""Log-mel distance of a reconstruction to its reference, and the equal-rate DSP codec baseline.

    distance(ref, est) = mean over (mel band, frame) with R >= max(R) - range_db of |E' - R'|  [dB]
    R = 10 log10(mel power of ref), E likewise for est; R' = max(R, max(R) - range_db), E' likewise

(128 mel bands, 2048-sample Hann frames, hop 512, power spectra; range_db = 80). Bins more than 80 dB
below the reference's peak are left out, and both sides are floored there, so a silent estimate scores
the mean height of the reference above that floor (about 40 dB on music) instead of infinity.

The baseline codec keeps as many numbers as the CAE's latents do (64 per 4096 samples): a 64-band mel
power spectrogram with hop 4096 (frame 8192), inverted with 32 Griffin-Lim iterations. A learned codec
at the same rate should score at or below it. numpy (and librosa's filters / Griffin-Lim) only.
"""
from __future__ import annotations

import dataclasses

import librosa
import numpy as np


@dataclasses.dataclass(frozen=True)
class LogMelSettings:
    """Analysis of `log_mel_distance`."""

    n_mels: int = 128
    n_fft: int = 2048
    hop: int = 512
    range_db: float = 80.0


@dataclasses.dataclass(frozen=True)
class MelCodecSettings:
    """The equal-rate DSP codec of `mel_codec_baseline`: n_mels numbers per hop samples."""

    n_mels: int = 64
    hop: int = 4096
    n_fft: int = 8192
    griffin_lim_iters: int = 32


def _mono(x: np.ndarray, name: str) -> np.ndarray:
    x = np.asarray(x, np.float64)
    if x.ndim != 1 or x.size == 0:
        raise ValueError(f"log_mel_distance: {name} must be a non-empty mono waveform [samples], got shape {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"log_mel_distance: {name} contains NaN or inf")
    return x


def mel_db(wav: np.ndarray, sample_rate: int, settings: LogMelSettings = LogMelSettings()) -> np.ndarray:
    """wav [samples] -> mel power in dB [n_mels, frames] (no floor; -inf where the power is 0)."""
    power = np.abs(librosa.stft(wav, n_fft=settings.n_fft, hop_length=settings.hop, window="hann",
                                center=True)) ** 2
    fb = librosa.filters.mel(sr=sample_rate, n_fft=settings.n_fft, n_mels=settings.n_mels)
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(fb @ power)


def log_mel_distance(ref: np.ndarray, est: np.ndarray, sample_rate: int,
                     settings: LogMelSettings = LogMelSettings()) -> float:
    """Mean |dB difference| over the reference's mel bins within range_db of its peak (see module doc).
    ref, est: [samples] mono at sample_rate; est is cut or zero-padded to ref's length."""
    ref, est = _mono(ref, "reference"), _mono(est, "estimate")
    est = np.pad(est[: ref.size], (0, max(0, ref.size - est.size)))
    r = mel_db(ref, sample_rate, settings)
    if not np.isfinite(r).any():
        raise ValueError("log_mel_distance: the reference is silent (no mel power at all)")
    floor = np.max(r[np.isfinite(r)]) - settings.range_db
    e = mel_db(est, sample_rate, settings)
    keep = r >= floor
    return float(np.mean(np.abs(np.maximum(e, floor) - np.maximum(r, floor))[keep]))


def mel_to_linear_power(mel: np.ndarray, sample_rate: int, n_fft: int) -> np.ndarray:
    """mel power [n_mels, frames] -> linear power [n_fft // 2 + 1, frames]: each bin takes the weighted mean
    of the power densities M_m / sum_k w_mk of the bands covering it (librosa's NNLS inverse would need
    tens of GiB at n_fft 8192 on a 10 s clip)."""
    fb = librosa.filters.mel(sr=sample_rate, n_fft=n_fft, n_mels=mel.shape[0])  # [n_mels, bins]
    density = mel / np.maximum(fb.sum(axis=1, keepdims=True), 1e-12)
    return (fb.T @ density) / np.maximum(fb.sum(axis=0)[:, None], 1e-12)


def mel_codec_baseline(wav: np.ndarray, sample_rate: int, settings: MelCodecSettings = MelCodecSettings(),
                       seed: int = 0) -> np.ndarray:
    """wav [samples] -> the same length resynthesised from n_mels mel powers per hop samples."""
    wav = _mono(wav, "baseline input")
    mel = librosa.feature.melspectrogram(y=wav, sr=sample_rate, n_fft=settings.n_fft, hop_length=settings.hop,
                                         n_mels=settings.n_mels, power=2.0)
    magnitude = np.sqrt(mel_to_linear_power(mel, sample_rate, settings.n_fft))
    out = librosa.griffinlim(magnitude, n_iter=settings.griffin_lim_iters, hop_length=settings.hop,
                             n_fft=settings.n_fft, length=wav.size, random_state=np.random.RandomState(seed))
    return out.astype(np.float32)


def mel_codec_distance(wav: np.ndarray, sample_rate: int, settings: MelCodecSettings = MelCodecSettings(),
                       seed: int = 0) -> float:
    """log_mel_distance of the baseline codec's reconstruction of wav [samples]."""
    return log_mel_distance(wav, mel_codec_baseline(wav, sample_rate, settings, seed), sample_rate)
