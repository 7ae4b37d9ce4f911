"""The generation API: Accompanist.load finds EMA params, CAE and CLAP; embeddings; generate_batch."""
import json
import shutil

import jax
import numpy as np
import pytest

from diffariff_jax import long_form
from diffariff_jax.accompanist import Accompanist, SamplerSettings
from diffariff_jax.release_bundle import CompanionError
from diffariff_jax.testing.tiny_ldm import STEP, build_tiny_ldm
from diffariff_jax.training.checkpoint import CheckpointError

SR, HOP = 48000, 4096
FAST = SamplerSettings(steps=3)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return build_tiny_ldm(tmp_path_factory.mktemp("tiny_ldm"))


@pytest.fixture(scope="module")
def acc(tiny):
    return Accompanist.load(str(tiny.workdir))


def _ema(tiny):
    from diffariff_jax.training.checkpoint import load_for_inference

    return load_for_inference(str(tiny.release), kind="ldm")[1]


def test_load_workdir_finds_ema_cae_clap_and_step(acc, tiny):
    assert acc.step == STEP and acc.sample_rate == SR and acc.clap_dim == 32
    for got, want in zip(jax.tree.leaves(acc.params), jax.tree.leaves(_ema(tiny))):
        np.testing.assert_array_equal(np.asarray(got), np.asarray(want))  # the EMA params, not the raw ones
    assert len(acc.fingerprint) == 16 and acc.fingerprint == Accompanist.load(str(tiny.release)).fingerprint


def test_embeddings_are_unit_norm(acc):
    text = acc.embed_text(["cello", "flute"])
    assert text.shape == (2, 32)
    np.testing.assert_allclose(np.linalg.norm(text, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(text[0], text[1])
    audio = acc.embed_audio(0.1 * np.random.default_rng(0).standard_normal((3, SR // 2)).astype(np.float32))
    assert audio.shape == (3, 32)
    np.testing.assert_allclose(np.linalg.norm(audio, axis=1), 1.0, atol=1e-5)


def test_generate_batch_shapes_determinism_and_batch(acc):
    rng = np.random.default_rng(1)
    context = (0.1 * rng.standard_normal((2, 5 * HOP + 100))).astype(np.float32)
    clap = acc.embed_text(["cello", "piano"])
    a = acc.generate_batch(context, clap, seed=3, settings=FAST)
    assert a.shape == context.shape and a.dtype == np.float32 and np.all(np.isfinite(a))
    np.testing.assert_array_equal(a, acc.generate_batch(context, clap, seed=3, settings=FAST))
    assert not np.allclose(a, acc.generate_batch(context, clap, seed=4, settings=FAST))
    uncond = acc.generate_batch(None, None, num_frames=4, seed=0, settings=FAST)
    assert uncond.shape == (1, 4 * HOP)
    batch = acc.generate_batch(None, None, num_frames=4, batch_size=3, seed=0, settings=FAST)
    assert batch.shape == (3, 4 * HOP) and not np.allclose(batch[0], batch[1])  # three samples, not copies
    clap_only = acc.generate_batch(None, clap, num_frames=4, settings=FAST)
    assert clap_only.shape == (2, 4 * HOP)
    with pytest.raises(ValueError, match="num_frames"):
        acc.generate_batch(None, None)
    with pytest.raises(ValueError, match="steps must be >= 1"):
        acc.generate_batch(None, None, num_frames=4, settings=SamplerSettings(steps=0))


def test_one_compilation_for_a_batch(acc):
    from diffariff_jax.diffusion import samplers

    context = np.zeros((3, 6 * HOP), np.float32) + 0.01
    acc.generate_batch(context, None, settings=FAST)
    before = samplers._sample_jit._cache_size()
    acc.generate_batch(context + 0.02, None, seed=9, settings=SamplerSettings(steps=3, cfg_context=2.0))
    assert samplers._sample_jit._cache_size() == before  # new data, seed and scale: no recompilation


def test_release_bundle_generates_on_another_machine(acc, tiny, tmp_path):
    from diffariff_jax.release_bundle import main

    out = tmp_path / "bundle"
    assert main(["--checkpoint", str(tiny.workdir), "--out", str(out)]) == 0
    assert main(["--checkpoint", str(tiny.workdir), "--out", str(out)]) == 1  # never over an existing release
    moved = tmp_path / "elsewhere"
    shutil.copytree(out, moved)
    shutil.rmtree(out)
    info = json.loads((moved / "accompanist.json").read_text())
    assert info["step"] == STEP and info["fingerprint"] == acc.fingerprint
    # On the other machine the training records (which name the original CAE / CLAP) do not exist.
    config = json.loads((moved / "config.json").read_text())
    config["data"]["records_dir"] = str(tmp_path / "not_on_this_machine")
    (moved / "config.json").write_text(json.dumps(config))
    other = Accompanist.load(str(moved))
    assert other.step == STEP and other.fingerprint == acc.fingerprint
    assert other.cae.config.to_dict() == acc.cae.config.to_dict()
    np.testing.assert_allclose(other.embed_text(["cello"]), acc.embed_text(["cello"]), atol=1e-6)


def test_load_errors_are_one_line_and_name_the_flag(tiny, tmp_path):
    with pytest.raises(CheckpointError, match="holds a 'cae' model, not 'ldm'"):
        Accompanist.load(str(tiny.cae))
    with pytest.raises(CheckpointError, match="does not exist"):
        Accompanist.load(str(tmp_path / "nowhere"))
    # A plain release dir whose records are gone: the CAE and the CLAP must be given.
    lonely = tmp_path / "lonely"
    shutil.copytree(tiny.release, lonely)
    config = json.loads((lonely / "config.json").read_text())
    config["data"]["records_dir"] = str(tmp_path / "gone")
    (lonely / "config.json").write_text(json.dumps(config))
    with pytest.raises(CompanionError, match="pass --cae"):
        Accompanist.load(str(lonely))
    with pytest.raises(CompanionError, match="pass --clap"):
        Accompanist.load(str(lonely), cae=str(tiny.cae))
    assert Accompanist.load(str(lonely), cae=str(tiny.cae), clap=str(tiny.clap)).clap_dim == 32
    with pytest.raises(CompanionError, match="--cae .*does not exist"):
        Accompanist.load(str(lonely), cae=str(tmp_path / "no_cae"), clap=str(tiny.clap))


def test_clap_of_another_width_is_refused(tiny, tmp_path):
    from diffariff_jax.testing.tiny_clap import build_tiny_clap

    wide = build_tiny_clap(tmp_path / "wide", projection_dim=48)
    with pytest.raises(CompanionError, match="48-d embeddings.*trained on 32-d"):
        Accompanist.load(str(tiny.release), clap=str(wide))


def test_a_cae_changed_since_the_records_is_refused(tiny, tmp_path):
    info_path = tiny.records / "latents.json"
    original = info_path.read_text()
    try:
        info = json.loads(original)
        info["cae_weights"] = "0" * 16
        info_path.write_text(json.dumps(info))
        with pytest.raises(CompanionError, match="changed since the training records were made.*pass --cae"):
            Accompanist.load(str(tiny.workdir))
    finally:
        info_path.write_text(original)


def test_text_prompt_needs_a_text_tower(acc, monkeypatch):
    # Simulated: an embedder whose processor carries no tokenizer (an audio-only CLAP export).
    monkeypatch.setattr(acc.clap.processor, "tokenizer", None)
    with pytest.raises(CompanionError, match="has no text tower"):
        acc.embed_text(["cello"])


def _level_db(x):
    return 10 * np.log10(np.mean(np.square(np.asarray(x, np.float64))))


@pytest.fixture()
def encoded_levels(acc, monkeypatch):
    """The RMS level (dB) of every waveform the CAE is asked to encode."""
    levels, encode = [], acc.cae.encode
    monkeypatch.setattr(acc.cae, "encode", lambda wav, *a, **k: levels.append(_level_db(wav)) or encode(wav, *a, **k))
    return levels


def test_context_reaches_the_cae_at_training_loudness_and_the_stem_returns_at_the_users(acc, encoded_levels):
    """Training contexts sat at about -22 dB (sampler.context_loudness_db): a -30 dB and a -20 dB copy of one
    context are encoded alike, so the stems are the same up to the 10 dB gain undone on the way out; the
    inpaint stem gets the context's gain."""
    shape = np.random.default_rng(2).standard_normal(5 * HOP).astype(np.float32)
    quiet, loud = (shape * 10 ** (db / 20) / np.sqrt(np.mean(shape**2)) for db in (-30.0, -20.0))
    assert acc.config.sampler.context_loudness_db == -22.0
    runs = []
    for wav in (quiet, loud):
        runs.append(acc.generate(context=(wav, SR), text="cello", seed=5, settings=FAST,
                                 mode=long_form.Modes(stereo_width=0.0, inpaint=(wav, SR), regions=[(0.1, 0.2)])))
    np.testing.assert_allclose(encoded_levels, [-22.0] * 4, atol=0.01)
    assert np.max(np.abs(runs[1])) < 1.0  # no clipping, so the ratio is exact
    np.testing.assert_allclose(runs[1], runs[0] * 10 ** 0.5, rtol=1e-4, atol=1e-7)


def test_generate_batch_takes_contexts_at_training_level_as_they_are(acc, encoded_levels):
    """eval's examples are already normalised with their targets, as training's were: no second gain."""
    context = (0.05 * np.random.default_rng(3).standard_normal((1, 5 * HOP))).astype(np.float32)
    acc.generate_batch(context, acc.embed_text(["cello"]), seed=0, settings=FAST)
    np.testing.assert_allclose(encoded_levels, [_level_db(context)], atol=1e-4)


def test_training_gain_caps_the_boost_like_training(acc):
    """A -60 dB reference gets max_context_gain_db (20 dB), not 38; -30 dB gets 8; no reference, no gain."""
    ref = np.ones((3, 1000), np.float32) * np.array([[10 ** (-60 / 20)], [10 ** (-42 / 20)], [10 ** (-30 / 20)]],
                                                    np.float32)
    np.testing.assert_allclose(20 * np.log10(long_form.training_gain(acc, ref)[:, 0]), [20.0, 20.0, 8.0], atol=1e-4)
    np.testing.assert_array_equal(long_form.training_gain(acc, None), [[1.0]])
