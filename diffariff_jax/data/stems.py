"""Reading the stems of scanned songs: validation (probe), whole songs, and random-access windows.

All audio comes out mono float32 at the requested sample rate: other rates are resampled (soxr),
extra channels averaged. Stems of one song that differ in length are zero-padded at the end to the
longest stem (a stem that ends early is silent afterwards, which is what a multitrack session means);
a difference above one second is logged, since it usually means a truncated or misaligned file.
"""
from __future__ import annotations

import logging
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import soundfile as sf

from diffariff_jax.audio.io import AudioError, is_silent, read_audio, resample, to_mono
from diffariff_jax.data.layouts import Skips, Song, Stem

log = logging.getLogger(__name__)

MISMATCH_LOG_SECONDS = 1.0


@dataclass(frozen=True)
class ProbedSong:
    """A song whose stems passed validation. rates/frames: per stem, per path (native rate)."""

    song_id: str
    instruments: tuple[str, ...]
    paths: tuple[tuple[str, ...], ...]
    rates: tuple[tuple[int, ...], ...]
    num_samples: int  # at the target rate: the longest stem (shorter ones are zero-padded)
    can_be_target: tuple[bool, ...] = ()  # per stem; () = every stem (False: context only)

    def targets(self) -> tuple[bool, ...]:
        return self.can_be_target or (True,) * len(self.paths)


def _probe_stem(stem: Stem, sample_rate: int, full: bool, silence_db: float) -> tuple[list[int], list[int], str]:
    """(rates, frames at target rate, '') for a usable stem, or ([], [], reason) for a bad one."""
    rates, lengths = [], []
    for path in stem.paths:
        try:
            info = sf.info(path)
        except Exception as e:  # libsndfile's error types vary; the reason text names the problem
            return [], [], f"unreadable: {str(e).splitlines()[0][:120]}"
        if info.frames <= 0:
            return [], [], "empty file"
        rates.append(int(info.samplerate))
        lengths.append(int(np.ceil(info.frames * sample_rate / info.samplerate)))
    if full:
        try:
            # Tracks of one stem can differ by a sample after resampling: sum them over the shortest.
            wavs = [read_audio(p, sample_rate, mono=True)[0] for p in stem.paths]
            n = min(w.size for w in wavs)
            wav = np.sum([w[:n] for w in wavs], axis=0)
        except AudioError as e:
            return [], [], str(e).split(": ", 1)[-1]
        if is_silent(wav, silence_db):
            return [], [], f"silent (below {silence_db} dBFS RMS)"
    return rates, lengths, ""


def probe_songs(songs: list[Song], sample_rate: int, min_seconds: float, skips: Skips,
                full: bool = False, silence_db: float = -60.0, threads: int = 8) -> list[ProbedSong]:
    """Validates the stems of `songs` and returns the usable songs (>= 2 good stems, >= min_seconds).

    full=False reads only file headers (fast for big catalogues): unreadable, empty and too-short
    files are caught. full=True also decodes every file: NaN/inf samples and silent stems are caught.
    Each bad stem or song is skipped with one log line and counted in `skips`.
    """
    def probe(song: Song):
        return [_probe_stem(st, sample_rate, full, silence_db) for st in song.stems]

    with ThreadPoolExecutor(threads) as pool:
        results = list(pool.map(probe, songs))
    out = []
    for song, res in zip(songs, results):
        kept = []
        for stem, (rates, lengths, reason) in zip(song.stems, res):
            if reason:
                skips.add(f"bad stem: {reason.split(' (')[0].split(':')[0]}", stem.paths[0], reason)
            else:
                kept.append((stem, rates, max(lengths)))
        if len(kept) < 2:
            skips.add("fewer than 2 usable stems", song.song_id, f"{len(kept)} left")
            continue
        if not any(stem.can_be_target for stem, _, _ in kept):
            skips.add("no usable stem can be the target", song.song_id, "the rest are groups or bleed")
            continue
        lengths = [n for _, _, n in kept]
        if max(lengths) < min_seconds * sample_rate:
            skips.add("too short", song.song_id, f"{max(lengths) / sample_rate:.2f} s < {min_seconds:.2f} s")
            continue
        if max(lengths) - min(lengths) > MISMATCH_LOG_SECONDS * sample_rate:
            log.warning("%s: stem lengths differ by %.2f s; shorter stems are zero-padded at the end",
                        song.song_id, (max(lengths) - min(lengths)) / sample_rate)
        out.append(ProbedSong(song.song_id, tuple(s.instrument for s, _, _ in kept),
                              tuple(s.paths for s, _, _ in kept), tuple(tuple(r) for _, r, _ in kept),
                              max(lengths), tuple(s.can_be_target for s, _, _ in kept)))
    return out


def _read_span(path: str, rate: int, offset: int, length: int, sample_rate: int) -> np.ndarray:
    """Samples [offset, offset+length) at sample_rate of one file, mono, zero-padded past its end.

    For another native rate the read starts on a sample both rates share (multiples of
    sample_rate / gcd), one such period early, so every stem is cut at the same instant and the
    resampler's edge transient falls outside the returned span.
    """
    if rate == sample_rate:
        data, _ = sf.read(path, start=offset, frames=length, dtype="float32", always_2d=True)
        wav = to_mono(data.T)[0] if data.size else np.zeros(0, np.float32)
        return np.pad(wav, (0, length - wav.size))
    period = sample_rate // math.gcd(sample_rate, rate)
    start = max(0, (offset // period - 1) * period)
    span = offset - start + length + period
    data, _ = sf.read(path, start=start * rate // sample_rate, frames=int(np.ceil(span * rate / sample_rate)),
                      dtype="float32", always_2d=True)
    wav = resample(to_mono(data.T), rate, sample_rate)[0] if data.size else np.zeros(0, np.float32)
    wav = wav[offset - start: offset - start + length]
    return np.pad(wav, (0, length - wav.size))


def read_window(song: ProbedSong, offset: int, length: int, sample_rate: int,
                skips: Skips | None = None) -> np.ndarray:
    """stems: [num_stems, length] float32, the song's stems from `offset` (samples at sample_rate).

    A stem with NaN/inf in the window, or whose file fails to decode there (a FLAC with corrupt
    frames passes header validation), is zeroed in this crop with a log line naming the file and
    counted in `skips`: header-only probing cannot see either, and one bad file must not end a long run.
    """
    out = np.zeros((len(song.paths), length), np.float32)
    for k, (paths, rates) in enumerate(zip(song.paths, song.rates)):
        for path, rate in zip(paths, rates):
            try:
                wav = _read_span(path, rate, offset, length, sample_rate)
            except Exception as e:  # libsndfile raises LibsndfileError, RuntimeError or OSError by codec
                reason = str(e).splitlines()[0][:120] if str(e) else type(e).__name__
                (skips if skips is not None else Skips()).add(
                    "read error in a crop (stem zeroed)", path, f"at {offset}..{offset + length}: {reason}")
                out[k] = 0.0
                break
            if not np.all(np.isfinite(wav)):
                log.warning("%s: NaN/inf samples at %d..%d (at %d Hz); stem zeroed in this crop",
                            path, offset, offset + length, sample_rate)
                continue
            out[k] += wav
    return out


def mix_like_stems(stems: np.ndarray, threshold: float) -> np.ndarray:
    """bool [num_stems]: stems that are a mix of the others (correlation with their sum above threshold).

    stems: [num_stems, samples]. The most correlated stem is flagged and left out, then the rest are
    tested again, so one mix is found without flagging the stems it contains; at least two stems stay.
    Silent stems are never flagged (their correlation is undefined). Every correlation comes from one
    Gram matrix (a single BLAS call), since this runs on every crop.
    """
    gram = np.asarray(stems @ stems.T, np.float64)  # [S, S]
    energy = np.diag(gram)
    flagged = np.zeros(len(stems), bool)
    while (~flagged).sum() > 2:
        live = np.flatnonzero(~flagged & (energy > 1e-12 * stems.shape[1]))
        if live.size < 2:
            break
        sub = gram[np.ix_(live, live)]
        with_others = sub.sum(axis=1) - np.diag(sub)                     # x_k . (sum of the others)
        others_energy = sub.sum() - 2 * sub.sum(axis=1) + np.diag(sub)  # |sum of the others|^2
        corr = with_others / np.sqrt(np.diag(sub) * np.maximum(others_energy, 1e-30))
        if corr.max() <= threshold:
            break
        flagged[live[int(np.argmax(corr))]] = True
    return flagged


def load_song(song: ProbedSong, sample_rate: int) -> np.ndarray:
    """stems: [num_stems, song.num_samples] float32, whole song, zero-padded to the longest stem.

    Raises AudioError naming the file for NaN/inf or undecodable audio: callers building a dataset
    decide whether to skip the song.
    """
    out = np.zeros((len(song.paths), song.num_samples), np.float32)
    for k, paths in enumerate(song.paths):
        for path in paths:
            wav = read_audio(path, sample_rate, mono=True)[0][: song.num_samples]
            out[k, : wav.size] += wav
    return out
