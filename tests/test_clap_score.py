"""CLAP score (mean cosine similarity to each stem's own prompt) against scipy's cosine distance."""
import numpy as np
import pytest
from scipy.spatial.distance import cosine

from diffariff_jax.metrics.clap_score import clap_score, cosine_similarities


def test_matches_scipy_and_ignores_scale():
    rng = np.random.default_rng(0)
    audio, prompts = rng.normal(size=(20, 12)), rng.normal(size=(20, 12))
    reference = np.array([1.0 - cosine(a, p) for a, p in zip(audio, prompts)])
    np.testing.assert_allclose(cosine_similarities(audio, prompts), reference, rtol=1e-12)
    assert clap_score(audio, prompts) == pytest.approx(reference.mean(), rel=1e-12)
    scales = rng.uniform(0.1, 10.0, size=(20, 1))
    assert clap_score(audio * scales, prompts) == pytest.approx(reference.mean(), rel=1e-12)


def test_known_values():
    audio = np.array([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    prompts = np.array([[3.0, 0.0], [0.0, -1.0], [1.0, 0.0]])
    np.testing.assert_allclose(cosine_similarities(audio, prompts), [1.0, -1.0, np.sqrt(0.5)], rtol=1e-12)
    assert clap_score(audio, prompts) == pytest.approx(np.sqrt(0.5) / 3)


def test_errors():
    rng = np.random.default_rng(1)
    with pytest.raises(ValueError, match="clap_score: 5 audio embeddings but 4 prompt embeddings"):
        clap_score(rng.normal(size=(5, 3)), rng.normal(size=(4, 3)))
    with pytest.raises(ValueError, match=r"clap_score: embedding dims differ \(audio has 3, prompts has 2\)"):
        clap_score(rng.normal(size=(5, 3)), rng.normal(size=(5, 2)))
    with pytest.raises(ValueError, match="clap_score: zero-length embedding at row 2"):
        clap_score(np.array([[1.0, 0.0], [0.0, 1.0], [0.0, 0.0]]), np.ones((3, 2)))
