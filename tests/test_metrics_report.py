"""metrics_report: every metric in one JSON-serialisable dict, equal to calling each metric alone."""
import json

import numpy as np
import pytest

from diffariff_jax.metrics import (
    apa,
    clap_score,
    embed_waveforms,
    embedder_info,
    fad,
    metrics_config,
    metrics_report,
    mmd2_polynomial,
    mmd2_rbf,
    prdc,
    reference_mixes,
)

SMALL = dict(mmd_subset_size=40, mmd_num_subsets=10, prdc_k=3, seed=7)


class BandEmbedder:
    """Tiny deterministic CLAP-interface embedder: log band energies through a fixed projection."""

    name = "band-projection"
    dim = 6
    sample_rate = 800
    window_seconds = 0.25

    def __init__(self):
        self.projection = np.random.default_rng(0).normal(size=(10, self.dim))

    def embed_audio(self, wavs):
        power = np.abs(np.fft.rfft(np.asarray(wavs, np.float64), axis=1)) ** 2
        bands = np.stack([band.sum(1) for band in np.array_split(power, 10, axis=1)], axis=1)
        emb = np.log(bands + 1e-6) @ self.projection
        return emb / np.linalg.norm(emb, axis=1, keepdims=True)


def test_report_equals_individual_metrics_and_is_json():
    rng = np.random.default_rng(0)
    real, gen = rng.normal(size=(60, 5)), rng.normal(size=(50, 5)) + 0.3
    c, r, rp = rng.normal(size=(30, 5)) + 0.1, rng.normal(size=(30, 5)), rng.normal(size=(30, 5)) + 1.0
    prompts = gen + rng.normal(size=gen.shape)
    info = {"name": "toy", "checkpoint": "toy://0", "dim": 5, "sample_rate": 48000, "window_seconds": 10.0}
    cfg = metrics_config(**SMALL)
    report = metrics_report(
        real, gen, cfg, apa_sets={"candidate": c, "matching": r, "mismatched": rp}, clap_prompts=prompts, embedder=info
    )
    assert json.loads(json.dumps(report)) == report
    assert (report["num_real"], report["num_generated"], report["dim"], report["seed"]) == (60, 50, 5, 7)
    assert report["embedder"] == info and report["settings"]["mmd_subset_size"] == 40
    assert report["fad"] == pytest.approx(fad(real, gen))
    assert report["mmd2_polynomial"]["mean"] == pytest.approx(mmd2_polynomial(real, gen, 40, 10, seed=7))
    rbf, bandwidth = mmd2_rbf(real, gen, 40, 10, seed=7)
    assert report["mmd2_rbf"]["mean"] == pytest.approx(rbf) and report["mmd2_rbf"]["bandwidth"] == bandwidth
    assert {k: report["prdc"][k] for k in ("precision", "recall", "density", "coverage")} == prdc(real, gen, 3)
    assert report["apa"]["apa"] == pytest.approx(apa(c, r, rp)["apa"]) and report["apa"]["num_candidate"] == 30
    assert report["clap_score"]["mean"] == pytest.approx(clap_score(gen, prompts))
    bare = metrics_report(real, gen, metrics_config(**SMALL, mmd_rbf_bandwidth=2.0))
    assert "apa" not in bare and "clap_score" not in bare and bare["embedder"] is None
    assert bare["mmd2_rbf"]["bandwidth"] == 2.0


def test_report_refuses_too_small_sets():
    rng = np.random.default_rng(1)
    real, gen = rng.normal(size=(60, 5)), rng.normal(size=(30, 5))
    too_small = r"mmd_subset_size 40 is larger than the sets \(real has 60 samples, generated has 30\)"
    with pytest.raises(ValueError, match=too_small):
        metrics_report(real, gen, metrics_config(**SMALL))
    with pytest.raises(ValueError, match="prdc: k=3 needs more than 3 samples in each set, got real 60, fake 3"):
        metrics_report(real, gen[:3], metrics_config(**{**SMALL, "mmd_subset_size": 2}))
    with pytest.raises(ValueError, match=r"embedding dims differ \(real has 5, generated has 4\)"):
        metrics_report(real, gen[:, :4], metrics_config(**SMALL))
    with pytest.raises(ValueError, match="mmd_rbf_bandwidth must be >= 0"):
        metrics_report(real, real, metrics_config(**{**SMALL, "mmd_rbf_bandwidth": -1.0}))
    with pytest.raises(ValueError, match="apa_sets lacks matching, mismatched"):
        metrics_report(real, gen, metrics_config(**{**SMALL, "mmd_subset_size": 20}), apa_sets={"candidate": gen})


def test_waveforms_to_report_end_to_end():
    # Songs whose stem shares the context's pitch; mismatched pairs combine different pitches, so the
    # mix embeddings of R and R' differ. A candidate that copies the real stems adheres perfectly.
    sr, rng = 800, np.random.default_rng(2)
    t = np.arange(int(0.6 * sr)) / sr
    pitches = rng.uniform(60, 300, size=40)
    contexts = [np.sin(2 * np.pi * f * t).astype(np.float32) for f in pitches]
    stems = [
        (0.5 * np.sin(2 * np.pi * 1.5 * f * t) + 0.01 * rng.normal(size=t.size)).astype(np.float32) for f in pitches
    ]
    matching, mismatched, _ = reference_mixes(list(zip(contexts, stems)), seed=3)
    embedder = BandEmbedder()
    embed = lambda wavs: embed_waveforms(embedder, wavs, sample_rate=sr, min_seconds=0.1)  # noqa: E731
    r, rp = embed(matching), embed(mismatched)
    report = metrics_report(
        embed(stems),
        embed(stems[::-1]),
        metrics_config(mmd_subset_size=20, mmd_num_subsets=5, prdc_k=3),
        apa_sets={"candidate": r, "matching": r, "mismatched": rp},
        embedder=embedder_info(embedder),
    )
    assert report["fad"] == pytest.approx(0.0, abs=1e-9)  # the same stems in another order
    assert report["apa"]["apa"] == pytest.approx(1.0) and report["apa"]["fd_r_rp"] > 1e-3
    assert apa(rp, r, rp)["apa"] == pytest.approx(0.0, abs=1e-9)  # random pairings: no adherence
    assert report["embedder"]["name"] == "band-projection" and report["embedder"]["window_seconds"] == 0.25
    json.dumps(report)
