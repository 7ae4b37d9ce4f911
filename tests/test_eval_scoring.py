"""Evaluation pieces without a model: bootstrap intervals against closed forms, the cache, --all-checkpoints."""
import numpy as np
import pytest

from diffariff_jax import metrics
from diffariff_jax.evaluation import scoring
from diffariff_jax.evaluation.cache import EmbeddingCache
from eval_fixtures import tiny_eval_config


def test_bootstrap_intervals_match_the_normal_approximation():
    """For a mean of n i.i.d. values the 95% interval is about mean +- 1.96 sd / sqrt(n)."""
    rng = np.random.default_rng(0)
    n, p = 400, 0.3
    real, stems = rng.normal(size=(n, 6)), rng.normal(size=(n, 6))
    per = {"clap_score": rng.normal(0.2, 0.1, size=n), "instrument_correct": (rng.uniform(size=n) < p).astype(float)}
    cfg = tiny_eval_config()
    cfg.bootstrap.num_resamples = 300
    out = scoring.score(real, stems, stems, None, per, cfg.metrics, cfg.bootstrap, seed=0)
    acc = per["instrument_correct"].mean()
    width = out["instrument_acc"]["high"] - out["instrument_acc"]["low"]
    assert width == pytest.approx(2 * 1.96 * np.sqrt(acc * (1 - acc) / n), rel=0.2)
    width = out["clap_score"]["high"] - out["clap_score"]["low"]
    assert width == pytest.approx(2 * 1.96 * per["clap_score"].std() / np.sqrt(n), rel=0.2)
    assert out["apa"] is None
    for m in ("fad", "mmd2", "density", "coverage", "clap_score", "instrument_acc"):
        assert out[m]["low"] <= out[m]["value"] <= out[m]["high"], m


def test_per_example_accuracy_is_nearest_text_embedding():
    vocab = np.eye(3)
    stems = np.array([[0.9, 0.1, 0.0], [0.0, 0.2, 1.0], [1.0, 0.0, 0.1]])
    per = scoring.per_example(stems, vocab[[0, 1, 0]], vocab, np.array([0, 1, 0]), real=stems)
    np.testing.assert_array_equal(per["instrument_correct"], [1.0, 0.0, 1.0])
    np.testing.assert_allclose(per["cos_to_real"], 1.0)
    np.testing.assert_allclose(per["clap_score"][0], 0.9 / np.hypot(0.9, 0.1))


def test_cache_hits_on_the_same_description_only(tmp_path):
    cache = EmbeddingCache(tmp_path)
    calls = []

    def compute():
        calls.append(1)
        return {"real": np.arange(6.0).reshape(2, 3)}

    a, key = cache.get_or_compute({"data": "x", "clap_weights": "abc"}, compute)
    b, same = cache.get_or_compute({"clap_weights": "abc", "data": "x"}, compute)
    c, other = cache.get_or_compute({"data": "x", "clap_weights": "retrained"}, compute)
    assert len(calls) == 2 and key == same != other and (cache.hits, cache.misses) == (1, 2)
    np.testing.assert_array_equal(a["real"], b["real"])
    assert not list(tmp_path.glob("*.tmp-*"))


def test_the_round_trips_cache_key_changes_with_the_cae_and_its_decoding_settings():
    from types import SimpleNamespace

    import ml_collections

    from diffariff_jax.evaluation.cache import cache_key
    from diffariff_jax.evaluation.evaluate import codec_description

    def cae(weights: float, **inference) -> SimpleNamespace:
        settings = {"decode_steps": 1, "band_renorm": True, "band_renorm_max_gain_db": 12.0, **inference}
        return SimpleNamespace(params={"w": np.full(3, weights, np.float32)},
                               config=ml_collections.ConfigDict({"inference": settings}))

    keys = [cache_key(codec_description({"data": "x"}, c)) for c in
            (cae(0.0), cae(0.0), cae(1.0), cae(0.0, decode_steps=2), cae(0.0, band_renorm=False),
             cae(0.0, band_renorm_max_gain_db=60.0))]
    assert keys[0] == keys[1] and len(set(keys)) == 5


def test_apa_baselines_calibrate_on_data_with_a_pairing(tmp_path):
    """Real pairs of other spans score APA near 1, another song's stem near 0, when the embedder sees pairing."""
    from diffariff_jax.evaluation import evaluate
    from eval_fixtures import GateAccompanist, make_split_tree

    data = make_split_tree(tmp_path / "data", num_test=4, num_train=0, seconds=10.0)
    cfg = tiny_eval_config()
    cfg.conditions, cfg.baselines = (), ("real_other_spans", "random_stem", "silence")
    prep = evaluate.prepare(GateAccompanist(), cfg, data_root=str(data), layout="demo", clap_seconds=1.0,
                            cache=EmbeddingCache(None), timer=evaluate.Timer())
    apa = {name: row["metrics"]["apa"] for name, row in prep.rows.items()}
    assert apa["real_other_spans"]["value"] >= 0.9 and apa["random_stem"]["value"] <= 0.1
    assert apa["random_stem"]["high"] < apa["real_other_spans"]["low"]
    assert prep.rows["random_stem"]["metrics"]["fad"]["value"] == pytest.approx(0.0, abs=1e-9)


def test_mel_codec_row_scores_the_equal_rate_dsp_reconstructions(tmp_path):
    """The mel_codec baseline is each real target rebuilt from 64 mel bands per 4096 samples (librosa's mel
    power, Griffin-Lim): close to the target in log-mel terms, yet not the target itself."""
    import librosa

    from diffariff_jax.evaluation import evaluate
    from diffariff_jax.metrics.logmel import log_mel_distance
    from eval_fixtures import GateAccompanist, make_split_tree

    data = make_split_tree(tmp_path / "data", num_test=4, num_train=0, seconds=10.0)
    cfg = tiny_eval_config()
    cfg.conditions, cfg.baselines, cfg.num_audio_examples = (), ("mel_codec", "silence"), 12
    acc = GateAccompanist()
    prep = evaluate.prepare(acc, cfg, data_root=str(data), layout="demo", clap_seconds=1.0,
                            cache=EmbeddingCache(None), timer=evaluate.Timer())
    assert prep.rows["mel_codec"]["kind"] == "baseline" and prep.rows["mel_codec"]["metrics"]["instrument_acc"]
    stems, targets = prep.audio["mel_codec"], prep.examples.target
    assert stems.shape == targets.shape and not np.allclose(stems, targets, atol=1e-3)
    for t, s in zip(targets, stems):
        assert log_mel_distance(t, s, acc.sample_rate) < 0.6 * log_mel_distance(t, np.zeros_like(t), acc.sample_rate)
        # the rate: what it kept is the target's 64-band mel power per 4096 samples (within 3 dB, in the bands
        # within 40 dB of the loudest)
        mel = [librosa.power_to_db(librosa.feature.melspectrogram(y=x, sr=acc.sample_rate, n_fft=8192, hop_length=4096,
                                                                 n_mels=64)) for x in (t, s)]
        loud = mel[0] > mel[0].max() - 40
        assert np.median(np.abs(mel[0] - mel[1])[loud]) < 3.0


def test_resampled_mmd2_is_the_unbiased_estimate_without_copies():
    from diffariff_jax.metrics import mmd2_unbiased, polynomial_kernel

    rng = np.random.default_rng(1)
    a, g = rng.normal(size=(9, 4)), rng.normal(0.5, 1.0, size=(9, 4))
    cfg = tiny_eval_config().metrics
    kernels = scoring._kernels(a, g, cfg)
    k = lambda x, y: polynomial_kernel(x, y)
    assert scoring.mmd2_resampled(kernels, np.arange(9)) == pytest.approx(mmd2_unbiased(k(a, a), k(g, g), k(a, g)))
    rows = np.array([0, 0, 0, 1, 2, 3, 4, 5, 5])
    same = rows[:, None] == rows[None, :]  # pairs of copies of one example, left out like self-pairs
    aa, gg = k(a[rows], a[rows]), k(g[rows], g[rows])
    want = aa[~same].mean() + gg[~same].mean() - 2 * k(a[rows], g[rows]).mean()
    assert scoring.mmd2_resampled(kernels, rows) == pytest.approx(want)


def test_prdc_terms_average_to_the_prdc_package_values():
    from diffariff_jax.metrics import prdc

    rng = np.random.default_rng(2)
    real, fake = rng.normal(size=(40, 5)), rng.normal(0.3, 1.2, size=(30, 5))
    terms, want = scoring.prdc_terms(real, fake, 5), prdc(real, fake, 5)
    assert terms["density"].mean() == pytest.approx(want["density"])
    assert terms["coverage"].mean() == pytest.approx(want["coverage"])


def test_eval_pairs_are_balanced_like_training_pairs():
    """The target gets a level from stem_gain_db like every context stem (not 0 dB against -12..0 dB
    context stems), so over many draws its level relative to one context stem is centred on 0 dB."""
    import ml_collections

    from diffariff_jax.evaluation import examples as examples_lib

    cfg = ml_collections.ConfigDict({"silence_db": -50.0, "context_keep_prob": 2.0, "stem_gain_db": (-6.0, 6.0)})
    rng = np.random.default_rng(0)
    stems = np.ones((2, 64), np.float32)  # two equal stems: level differences come from the gains alone
    diffs = []
    for _ in range(1000):
        target, context, index = examples_lib._pair(stems, (True, True), rng, cfg)
        diffs.append(20 * np.log10(np.abs(target).mean() / np.abs(context).mean()))
    # Difference of two uniform(-6, 6) dB levels: mean 0, std 12 / sqrt(6) = 4.9 dB.
    assert abs(np.mean(diffs)) < 0.5
    assert abs(np.std(diffs) - 12 / np.sqrt(6)) < 0.3


def test_gram_route_fad_and_apa_equal_the_dense_covariance_route():
    from diffariff_jax.evaluation import sample_fd

    rng = np.random.default_rng(3)
    dim = 64
    for n, m in ((6, 6), (6, 24), (7, 30), (40, 40)):  # the last one takes the dense route (n + m > dim)
        x = rng.normal(size=(n, dim))
        y = 1.3 * rng.normal(size=(m, dim)) + 0.2 * rng.normal(size=dim)
        assert sample_fd.fad(x, y) == pytest.approx(metrics.fad(x, y), rel=1e-10)
        rows = rng.integers(0, n, size=n)  # a bootstrap resample: duplicated rows, rank below n - 1
        assert sample_fd.fad(x[rows], y[:n]) == pytest.approx(metrics.fad(x[rows], y[:n]), rel=1e-10, abs=1e-9)
    context = rng.normal(size=(8, dim))
    matching = context + 0.5 * rng.normal(size=(8, dim))
    mismatched = np.concatenate([context[np.roll(np.arange(8), k)] + 0.5 * rng.normal(size=(8, dim))
                                 for k in (1, 2, 3)])
    for candidate in (matching + 0.1 * rng.normal(size=(8, dim)), mismatched[:8]):
        assert sample_fd.apa(candidate, matching, mismatched) == pytest.approx(
            metrics.apa(candidate, matching, mismatched)["apa"], abs=1e-10)
    with pytest.raises(ValueError, match="fad"):
        sample_fd.fad(x[:1], y)
