"""ClapEmbedder on a tiny random ClapModel built in the test: loading, shapes, windows, errors."""
import numpy as np
import pytest
import torch
from transformers import ClapModel, ClapProcessor

from diffariff_jax.audio.io import AudioError
from diffariff_jax.clap import ClapEmbedder, ClapLoadError, window_starts
from diffariff_jax.testing.tiny_clap import build_tiny_clap

SR = 48000


@pytest.fixture(scope="module")
def embedder(tmp_path_factory):
    return ClapEmbedder.from_pretrained(str(build_tiny_clap(tmp_path_factory.mktemp("clap"))))


def _noise(seed, n):
    return (0.1 * np.random.default_rng(seed).standard_normal(n)).astype(np.float32)


def test_attributes_and_shapes(embedder):
    assert (embedder.dim, embedder.sample_rate, embedder.window_seconds) == (32, SR, 10.0)
    a = embedder.embed_audio(np.stack([_noise(0, 3 * SR), _noise(1, 3 * SR)]))
    t = embedder.embed_text(["a cello", "solo flute melody", "an acoustic bass"])
    assert a.shape == (2, 32) and t.shape == (3, 32) and a.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(t, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(a[0], a[1]) and not np.allclose(t[0], t[1])


def test_deterministic_and_batch_independent(embedder):
    clips = [_noise(2, 12 * SR), _noise(3, 4 * SR), _noise(4, 10 * SR)]
    first = embedder.embed_audio(clips)
    np.testing.assert_array_equal(first, embedder.embed_audio(clips))
    alone = np.concatenate([embedder.embed_audio([c]) for c in clips])
    np.testing.assert_allclose(first, alone, atol=1e-5)
    np.testing.assert_array_equal(embedder.embed_text(["a violin"]), embedder.embed_text(["a violin"]))


def test_window_starts_cover_with_full_windows():
    assert window_starts(5, 10) == [0] and window_starts(10, 10) == [0]
    assert window_starts(25, 10) == [0, 8, 15]  # 3 windows, evenly spaced from 0 to 25 - 10
    assert window_starts(20, 10) == [0, 10]


def test_long_audio_is_renormalised_mean_of_windows(embedder):
    wav = _noise(5, 25 * SR)
    win = 10 * SR
    starts = [0, int(7.5 * SR), 15 * SR]  # ceil(25/10) = 3 windows from 0 to 15 s
    assert window_starts(len(wav), win) == starts
    parts = np.concatenate([embedder.embed_audio([wav[s:s + win]]) for s in starts])
    ref = parts.mean(axis=0)
    ref /= np.linalg.norm(ref)
    np.testing.assert_allclose(embedder.embed_audio([wav])[0], ref, atol=1e-5)


def test_bad_audio_errors(embedder):
    with pytest.raises(AudioError, match="44100 Hz"):
        embedder.embed_audio([_noise(6, SR)], sample_rate=44100)
    bad = _noise(7, SR)
    bad[10] = np.nan
    with pytest.raises(AudioError, match="CLAP input 1: contains NaN"):
        embedder.embed_audio([_noise(8, SR), bad])
    with pytest.raises(AudioError, match="mono 1-D"):
        embedder.embed_audio([np.zeros((2, SR), np.float32)])
    with pytest.raises(AudioError, match="0 samples"):
        embedder.embed_audio([np.zeros(0, np.float32)])
    with pytest.raises(ValueError, match="non-empty strings"):
        embedder.embed_text(["cello", ""])


def test_missing_model_dir(tmp_path):
    with pytest.raises(ClapLoadError, match="no such CLAP model directory"):
        ClapEmbedder.from_pretrained(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ClapLoadError, match="empty: cannot load"):
        ClapEmbedder.from_pretrained(str(tmp_path / "empty"))


def test_fused_model_is_deterministic(tmp_path):
    # Fused CLAPs get "fusion" features; the extractor would flag a random input as longer, we do not.
    path = build_tiny_clap(tmp_path / "base")
    model = ClapModel.from_pretrained(path)
    model.config.audio_config.enable_fusion = True
    model.config.audio_config.fusion_type = "aff_2d"
    torch.manual_seed(0)
    fused = ClapModel(model.config)
    fused.save_pretrained(tmp_path / "fused")
    ClapProcessor.from_pretrained(path).save_pretrained(tmp_path / "fused")
    emb = ClapEmbedder.from_pretrained(str(tmp_path / "fused"))
    clips = [_noise(9, 3 * SR), _noise(10, 3 * SR)]
    a = emb.embed_audio(clips)
    assert a.shape == (2, 32)
    np.testing.assert_array_equal(a, emb.embed_audio(clips))


def test_prompts_are_normalised_like_captions_and_unknown_words_warn(tmp_path, caplog):
    from diffariff_jax.clap_training import write_vocabulary
    from configs.clap import CAPTION_TEMPLATES

    path = build_tiny_clap(tmp_path / "clap", instruments=("snare drum", "flute", "electric bass"))
    write_vocabulary(path, ["snare drum", "flute", "electric bass"], CAPTION_TEMPLATES)
    small = ClapEmbedder.from_pretrained(str(path))
    # the tokenizer is case-sensitive: without normalisation "Snare  Drum" tokenises differently
    tok = small.processor.tokenizer
    assert tok("Snare Drum")["input_ids"] != tok("snare drum")["input_ids"]
    np.testing.assert_array_equal(small.embed_text(["Snare  Drum", "Electric_Bass"]),
                                  small.embed_text(["snare drum", "electric bass"]))
    caplog.set_level("WARNING")
    small.embed_text(["a flute melody", "solo snare drum"])
    assert not caplog.records
    small.embed_text(["a Cello"])
    (record,) = caplog.records
    assert "'cello' not in the vocabulary" in record.message
    assert record.message.endswith("knows only: electric bass, flute, snare drum")
    caplog.clear()
    open_vocabulary = ClapEmbedder.from_pretrained(str(build_tiny_clap(tmp_path / "laion_like")))
    open_vocabulary.embed_text(["a cello"])  # no vocabulary.json: an open-vocabulary model, no warning
    assert not caplog.records


def test_batched_log_mel_equals_the_feature_extractor(embedder):
    from diffariff_jax.clap import log_mel_batch

    fe = embedder.processor.feature_extractor
    windows = [_noise(5, 10 * SR), _noise(6, 3 * SR + 17), _noise(7, int(0.4 * SR)), np.zeros(SR, np.float32)]
    reference = np.asarray(fe(windows, sampling_rate=SR, truncation="rand_trunc", return_tensors="np")
                           ["input_features"], np.float32)
    got = log_mel_batch(fe, windows)
    assert got.shape == reference.shape
    np.testing.assert_allclose(got, reference, atol=1e-3)
