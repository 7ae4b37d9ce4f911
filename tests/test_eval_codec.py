"""eval's codec distances (evaluation/codec.py) and held-out denoising losses (evaluation/denoising.py),
checked with codecs and denoisers whose answers are known in closed form."""
import types

import numpy as np
import pytest

from configs.ldm import get_config
from diffariff_jax.evaluation import codec, denoising
from diffariff_jax.evaluation.examples import Examples

SR = 48000
HOP = 4096


def _examples(n=4, frames=8, seed=0):
    rng = np.random.default_rng(seed)
    noise = lambda: (0.05 * rng.standard_normal((n, frames * HOP))).astype(np.float32)  # noqa: E731
    return Examples(context=noise(), target=noise(), clap_audio=np.zeros((n, HOP), np.float32),
                    song_ids=tuple(f"s{i}" for i in range(n)), instruments=("flute",) * n,
                    offsets=np.zeros(n, np.int64))


class _GainCodec:
    """encode -> decode multiplies by `gain`: on white noise a log-mel distance of |20 log10 gain| dB."""

    def __init__(self, gain):
        self.gain = gain

    def encode(self, audio):
        return np.asarray(audio).reshape(len(audio), -1, 64)

    def decode(self, latents, key, num_samples):
        return self.gain * np.asarray(latents).reshape(len(latents), -1)[:, :num_samples]


def test_codec_distances_measure_the_reconstruction_and_its_yardsticks():
    ex = _examples()
    refs = codec.references(ex)
    np.testing.assert_array_equal(refs["mixes"], ex.context + ex.target)
    dist = {}
    for gain in (1.0, 0.5):
        cae = _GainCodec(gain)
        decoded = {m: codec.roundtrip(cae, refs[m], seed=0) for m in codec.MATERIALS}
        dist[gain] = codec.distances(refs, {"cae_roundtrip": decoded, **codec.yardsticks(refs, SR, seed=0)}, SR)
    np.testing.assert_allclose(dist[1.0]["cae_roundtrip/stems"], 0.0, atol=1e-9)
    np.testing.assert_allclose(dist[0.5]["cae_roundtrip/mixes"], 20 * np.log10(2), atol=1e-3)  # 6.02 dB
    silence, dsp = dist[1.0]["silence/stems"], dist[1.0]["mel_codec_baseline/stems"]
    assert np.all(silence > 30) and np.all((dsp > 0.5) & (dsp < 0.5 * silence))
    table = codec.summary(dist[0.5])
    row = table["cae_roundtrip"]["mixes"]
    assert row["median"] == pytest.approx(20 * np.log10(2), abs=1e-3) and row["count"] == 4
    assert list(table) == ["cae_roundtrip", "mel_codec_baseline", "silence"]


def test_yardsticks_reuse_the_mel_codec_rows_stems():
    """eval computes the DSP codec's stems once, for its baseline row, and hands them to the codec table."""
    ex = _examples(n=2)
    refs = codec.references(ex)
    given = 0.5 * refs["stems"]
    systems = codec.yardsticks(refs, SR, seed=0, mel_stems=given)
    assert systems["mel_codec_baseline"]["stems"] is given
    np.testing.assert_array_equal(systems["mel_codec_baseline"]["mixes"],
                                  codec.mel_codec_stems(refs["mixes"], SR, seed=0))
    assert not np.any(systems["silence"]["stems"]) and systems["silence"]["mixes"].shape == refs["mixes"].shape


def test_a_silent_reference_is_counted_not_scored():
    ex = _examples(n=3)
    target = ex.target.copy()
    target[1] = 0.0
    refs = {"stems": target, "mixes": ex.context + target}
    decoded = {m: codec.roundtrip(_GainCodec(1.0), refs[m], seed=0) for m in codec.MATERIALS}
    dist = codec.distances(refs, {"cae_roundtrip": decoded, **codec.yardsticks(refs, SR, seed=0)}, SR)
    assert np.isnan(dist["cae_roundtrip/stems"][1]) and np.isfinite(dist["cae_roundtrip/mixes"]).all()
    stems = codec.summary(dist)["silence"]["stems"]
    assert stems["count"] == 2 and stems["silent_references"] == 1


class _CopyContext:
    def __call__(self, params, x, sigma, *, context, clap, clap_dropped):
        return context


def test_held_out_denoising_losses_show_a_context_that_helps():
    """A denoiser that returns the context is perfect when the target equals the context and useless
    without it: the context gain is the whole loss without it, on every example."""
    config = get_config("tiny")
    ex = _examples(n=5, frames=4)
    acc = types.SimpleNamespace(cae=_GainCodec(1.0), denoiser=_CopyContext(), params=None, config=config)
    clap = np.zeros((5, 32), np.float32)
    z_target, z_context = acc.cae.encode(ex.target), acc.cae.encode(ex.context)
    losses = denoising.per_example_losses(acc, z_target, z_target, clap, draws=3, batch=2, seed=0)
    assert set(losses) == {"context_clap", "context_only", "clap_only", "unconditional"}
    np.testing.assert_allclose(losses["context_clap"], 0.0, atol=1e-12)
    assert np.all(losses["clap_only"] > 0) and losses["clap_only"].shape == (5,)
    summary = denoising.summary(losses, resamples=20, confidence=0.9, seed=0)
    gain = summary["context_gain"]
    assert gain["improved_fraction"] == 1.0 and 0 < gain["low"] <= gain["value"] <= gain["high"]
    assert gain["value"] == pytest.approx(float(np.mean(losses["clap_only"])))
    # with a context that is not the target, copying it is wrong
    other = denoising.per_example_losses(acc, z_target, z_context, clap, draws=3, batch=2, seed=0)
    assert np.all(other["context_clap"] > 0)
