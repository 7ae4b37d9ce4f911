"""APA on Gaussian embedding sets with known answers, and the mismatched-pair builder.

With R ~ N(0, I) and R' ~ N(delta, I): C drawn like R gives APA 1; C drawn like R' gives 0 (the formula
1/2 + (FD(C,R') - FD(C,R)) / (2 FD(R,R')) is 1/2 - 1/2 there); C equally far from both (half adherent,
half randomly paired, or centred between them) gives 0.5.
"""
import numpy as np
import pytest

from diffariff_jax.metrics.apa import apa, mismatch_permutation, reference_mixes
from diffariff_jax.metrics.fad import fad

D, N = 8, 4000
DELTA = np.full(D, 0.8)


def draw(rng, mean):
    return rng.normal(size=(N, D)) + mean


def test_known_answers():
    rng = np.random.default_rng(0)
    r, rp = draw(rng, 0.0), draw(rng, DELTA)
    like_r = apa(draw(rng, 0.0), r, rp)
    like_rp = apa(draw(rng, DELTA), r, rp)
    half = apa(np.concatenate([draw(rng, 0.0)[: N // 2], draw(rng, DELTA)[: N // 2]]), r, rp)
    between = apa(draw(rng, DELTA / 2), r, rp)
    assert like_r["apa"] > 0.97
    assert like_rp["apa"] < 0.03
    assert half["apa"] == pytest.approx(0.5, abs=0.03)
    assert between["apa"] == pytest.approx(0.5, abs=0.03)


def test_formula_and_clipping():
    rng = np.random.default_rng(1)
    c, r, rp = draw(rng, DELTA / 4), draw(rng, 0.0), draw(rng, DELTA)
    out = apa(c, r, rp)
    assert out["fd_c_r"] == pytest.approx(fad(c, r)) and out["fd_c_rp"] == pytest.approx(fad(c, rp))
    assert out["fd_r_rp"] == pytest.approx(fad(r, rp))
    assert out["apa"] == pytest.approx(0.5 + (out["fd_c_rp"] - out["fd_c_r"]) / (2 * out["fd_r_rp"]))
    assert apa(draw(rng, -DELTA), r, rp)["apa"] == 1.0  # beyond R, on the side away from R': clipped
    assert apa(draw(rng, 2 * DELTA), r, rp)["apa"] == 0.0


def test_errors():
    rng = np.random.default_rng(2)
    r = draw(rng, 0.0)
    with pytest.raises(ValueError, match="apa: FD\\(matching, mismatched\\) is 0"):
        apa(r, r, r)
    dims = r"apa: embedding dims differ \(candidate has 8, matching has 8, mismatched has 3\)"
    with pytest.raises(ValueError, match=dims):
        apa(r, r, rng.normal(size=(10, 3)))
    with pytest.raises(ValueError, match="apa: candidate has 1 samples, need at least 2"):
        apa(r[:1], r, r)


def test_mismatch_permutation_never_pairs_a_song_with_itself():
    songs = ["a", "a", "a", "b", "b", "c", "d", "d", "e", "f"]
    for seed in range(20):
        perm = mismatch_permutation(songs, seed)
        assert sorted(perm.tolist()) == list(range(len(songs)))
        assert all(songs[p] != songs[i] for i, p in enumerate(perm))
    assert np.array_equal(mismatch_permutation(songs, 3), mismatch_permutation(songs, 3))
    assert not np.array_equal(mismatch_permutation(songs, 3), mismatch_permutation(songs, 4))
    assert np.all(mismatch_permutation(list(range(7)), 0) != np.arange(7))
    with pytest.raises(ValueError, match="apa: song 'a' holds 3 of 5 pairs"):
        mismatch_permutation(["a", "a", "a", "b", "c"], 0)
    with pytest.raises(ValueError, match="apa: need at least 2"):
        mismatch_permutation(["a"], 0)


def test_reference_mixes_sum_and_cut_to_shorter():
    rng = np.random.default_rng(3)
    lengths = [100, 120, 90, 110]
    pairs = [(rng.normal(size=n).astype(np.float32), rng.normal(size=n + 5).astype(np.float32)) for n in lengths]
    songs = [0, 0, 1, 2]
    matching, mismatched, perm = reference_mixes(pairs, songs, seed=5)
    assert np.array_equal(perm, mismatch_permutation(songs, 5))
    for i, (context, stem) in enumerate(pairs):
        np.testing.assert_array_equal(matching[i], context + stem[: len(context)])
        other = pairs[perm[i]][0]
        n = min(len(other), len(stem))
        np.testing.assert_array_equal(mismatched[i], other[:n] + stem[:n])
        assert songs[perm[i]] != songs[i]
    with pytest.raises(ValueError, match="apa: 4 pairs but 3 song ids"):
        reference_mixes(pairs, songs[:3])
    with pytest.raises(ValueError, match=r"apa: pair 1: context has shape \(2, 10\) but stem has \(10,\)"):
        reference_mixes([(np.ones(10), np.ones(10)), (np.ones((2, 10)), np.ones(10))])
