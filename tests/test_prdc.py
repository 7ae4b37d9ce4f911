"""Precision/recall/density/coverage against the authors' reference package `prdc` (PyPI, test-only)."""
import numpy as np
import pytest
from prdc import compute_prdc

from diffariff_jax.metrics.prdc import prdc


@pytest.mark.parametrize(
    "n_real, n_fake, dim, k, scale, shift",
    [(300, 250, 16, 5, 1.1, 0.1), (200, 260, 64, 3, 1.0, 0.0), (150, 150, 8, 10, 0.7, 0.5)],
)
def test_matches_reference_package(n_real, n_fake, dim, k, scale, shift, capsys):
    rng = np.random.default_rng(n_real + k)
    real = rng.normal(size=(n_real, dim)).astype(np.float32)
    fake = (rng.normal(size=(n_fake, dim)) * scale + shift).astype(np.float32)
    ours = prdc(real, fake, k=k)
    reference = compute_prdc(real, fake, nearest_k=k)
    for name in ("precision", "recall", "density", "coverage"):
        assert ours[name] == pytest.approx(float(reference[name]), abs=1e-6), name
    assert 0.0 <= ours["coverage"] <= 1.0


def test_coverage_in_unit_interval_and_identical_sets_are_covered():
    rng = np.random.default_rng(7)
    real = rng.normal(size=(100, 4))
    far = prdc(real, real + 100.0, k=3)
    assert far["coverage"] == 0.0 and far["precision"] == 0.0 and far["density"] == 0.0
    same = prdc(real, real, k=3)
    assert same["coverage"] == 1.0 and same["precision"] == 1.0 and same["recall"] == 1.0
    for shift in (0.0, 0.5, 2.0):
        assert 0.0 <= prdc(real, rng.normal(size=(80, 4)) + shift, k=3)["coverage"] <= 1.0


def test_refuses_small_sets_and_bad_input():
    rng = np.random.default_rng(8)
    real, fake = rng.normal(size=(5, 4)), rng.normal(size=(50, 4))
    with pytest.raises(ValueError, match="prdc: k=5 needs more than 5 samples in each set, got real 5, fake 50"):
        prdc(real, fake, k=5)
    with pytest.raises(ValueError, match="prdc: k must be at least 1"):
        prdc(fake, fake, k=0)
    with pytest.raises(ValueError, match=r"prdc: embedding dims differ \(real has 4, fake has 3\)"):
        prdc(fake, rng.normal(size=(50, 3)), k=2)
