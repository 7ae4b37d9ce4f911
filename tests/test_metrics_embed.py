"""Windowing, batching, downmixing and resampling in metrics/embed.py, with a small deterministic embedder.

The toy embedder has the CLAP interface of clap.py (name, dim, sample_rate, window_seconds,
embed_audio) at a tiny scale: log energies in 16 frequency bands through a fixed random projection.
"""
import numpy as np
import pytest

from diffariff_jax.audio.io import AudioError
from diffariff_jax.metrics.embed import embed_waveforms, embedder_info, split_windows


class ToyEmbedder:
    name = "toy-spectral-projection"
    checkpoint = "toy://projection-seed0"
    dim = 8
    sample_rate = 1000
    window_seconds = 0.5

    def __init__(self):
        self.projection = np.random.default_rng(0).normal(size=(16, self.dim))
        self.batch_sizes = []

    def embed_audio(self, wavs):
        wavs = np.asarray(wavs)
        assert wavs.shape[1:] == (500,) and wavs.dtype == np.float32
        self.batch_sizes.append(wavs.shape[0])
        power = np.abs(np.fft.rfft(wavs.astype(np.float64), axis=1)) ** 2
        bands = np.stack([band.sum(1) for band in np.array_split(power, 16, axis=1)], axis=1)
        emb = np.log(bands + 1e-6) @ self.projection
        return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def coloured_noise(rng, n, smooth):
    return np.convolve(rng.normal(size=n + smooth), np.ones(smooth) / smooth, mode="valid")[:n].astype(np.float32)


def test_split_windows_cover_the_clip_evenly_and_repeatpad_short_clips():
    wav = np.arange(1250, dtype=np.float32)
    windows = split_windows(wav, 500, 500)  # ceil(1250 / 500) = 3 windows, evenly spaced, last at the end
    np.testing.assert_array_equal(windows, np.stack([wav[0:500], wav[375:875], wav[750:1250]]))
    assert [w[0] for w in split_windows(wav, 500, 250)] == [0, 250, 500, 750]
    assert [w[0] for w in split_windows(np.arange(2000.0), 500, 500)] == [0, 500, 1000, 1500]
    np.testing.assert_array_equal(split_windows(wav[:500], 500, 500), wav[None, :500])
    short = np.arange(1, 201, dtype=np.float32)  # 2 whole repeats, then 100 zeros
    np.testing.assert_array_equal(split_windows(short, 500, 500), np.concatenate([short, short, np.zeros(100)])[None])


def test_batched_embedding_equals_per_window_reference():
    rng = np.random.default_rng(1)
    clips = [coloured_noise(rng, n, s) for n, s in [(1250, 1), (500, 3), (300, 7), (2000, 2)]]
    embedder = ToyEmbedder()
    got = embed_waveforms(embedder, clips, sample_rate=1000, batch_size=3, min_seconds=0.25)
    assert embedder.batch_sizes == [3, 3, 3]  # 3 + 1 + 1 + 4 windows in batches of at most 3
    starts = {0: [0, 375, 750], 1: [0], 3: [0, 500, 1000, 1500]}
    reference = ToyEmbedder()
    for i, clip in enumerate(clips):
        windows = [clip[s : s + 500] for s in starts[i]] if i in starts else [np.pad(clip, (0, 200))]
        mean = np.mean([reference.embed_audio(w[None])[0] for w in windows], axis=0)
        np.testing.assert_allclose(got[i], mean / np.linalg.norm(mean), rtol=1e-5, atol=1e-6)
    assert got.shape == (4, 8) and got.dtype == np.float32
    as_array = embed_waveforms(ToyEmbedder(), np.stack([c[:500] for c in clips[:2]]), sample_rate=1000, min_seconds=0.5)
    np.testing.assert_allclose(as_array[1], got[1], rtol=1e-5)
    unnormalised = embed_waveforms(ToyEmbedder(), clips[:1], sample_rate=1000, normalize=False)
    assert np.linalg.norm(unnormalised) < 1.0


def test_stereo_is_downmixed_and_other_rates_are_resampled():
    rng = np.random.default_rng(2)
    left, right = coloured_noise(rng, 1000, 2), coloured_noise(rng, 1000, 5)
    stereo = embed_waveforms(ToyEmbedder(), [np.stack([left, right])], sample_rate=1000)
    mono = embed_waveforms(ToyEmbedder(), [(left + right) / 2], sample_rate=1000)
    np.testing.assert_allclose(stereo, mono, rtol=1e-5)
    t1, t2 = np.arange(1500) / 1000, np.arange(3000) / 2000
    tone = lambda t: (np.sin(2 * np.pi * 37 * t) + 0.5 * np.sin(2 * np.pi * 210 * t)).astype(np.float32)  # noqa: E731
    native = embed_waveforms(ToyEmbedder(), [tone(t1)], sample_rate=1000)
    resampled = embed_waveforms(ToyEmbedder(), [tone(t2)], sample_rate=2000)
    assert float(native[0] @ resampled[0]) > 0.99


def test_embedder_info_records_name_checkpoint_and_window():
    info = embedder_info(ToyEmbedder(), hop_seconds=0.25)
    assert info == {
        "name": "toy-spectral-projection",
        "checkpoint": "toy://projection-seed0",
        "dim": 8,
        "sample_rate": 1000,
        "window_seconds": 0.5,
        "hop_seconds": 0.25,
    }

    class NoCheckpoint(ToyEmbedder):
        checkpoint = None

    assert embedder_info(NoCheckpoint())["checkpoint"] == "toy-spectral-projection"
    assert embedder_info(NoCheckpoint())["hop_seconds"] == 0.5


def test_errors_name_the_clip_or_the_embedder():
    rng = np.random.default_rng(3)
    good = coloured_noise(rng, 1000, 2)
    bad = good.copy()
    bad[10] = np.nan
    embedder = ToyEmbedder()
    with pytest.raises(AudioError, match="embed: clip 1: contains NaN"):
        embed_waveforms(embedder, [good, bad], sample_rate=1000, batch_size=1)
    assert embedder.batch_sizes == []  # refused before any embedding work
    with pytest.raises(AudioError, match="embed: clip 0: 500 samples, need at least 1000"):
        embed_waveforms(ToyEmbedder(), [good[:500]], sample_rate=1000, min_seconds=1.0)
    with pytest.raises(ValueError, match="embed: no clips"):
        embed_waveforms(ToyEmbedder(), [], sample_rate=1000)

    class NotAnEmbedder:
        name = "x"
        sample_rate = 1000
        window_seconds = 1.0

    with pytest.raises(TypeError, match="NotAnEmbedder is not an embedder, it lacks dim, embed_audio"):
        embed_waveforms(NotAnEmbedder(), [good], sample_rate=1000)

    class WrongDim(ToyEmbedder):
        def embed_audio(self, wavs):
            return super().embed_audio(wavs)[:, :4]

    with pytest.raises(ValueError, match=r"embed: toy-spectral-projection returned shape \(2, 4\)"):
        embed_waveforms(WrongDim(), [good], sample_rate=1000)
