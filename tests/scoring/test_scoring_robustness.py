"""Bootstrap rank robustness: evaluator resampling, chunk invariance, survival, intervals."""

from __future__ import annotations

import math

import numpy as np
import pytest

from kaieval.committee.trimmed import committee_points
from kaieval.errors import KaiError
from kaieval.scoring.robustness import (
    bootstrap_committee_points,
    bootstrap_mean,
    evaluator_weights,
    fragile_teams,
    interval,
    survival_probability,
)


def random_committee(seed: int, e: int = 20, t: int = 15, i: int = 4,
                     missing: float = 0.2) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    scores = rng.uniform(0, 10, (e, t, i))  # arbitrary floats, not on a grid
    scores[rng.random(scores.shape) < missing] = np.nan
    coi = rng.random((e, t)) < 0.1
    return scores, coi, np.full(i, 10.0)


def expanded_reference(scores: np.ndarray, coi: np.ndarray, item_max: np.ndarray,
                       points: float, w: np.ndarray, trim_min: int = 5) -> np.ndarray:
    """One replicate the slow way: repeat each evaluator's sheet w times, masked sort."""
    rows = np.repeat(scores, w.astype(int), axis=0)
    bad = np.repeat(coi, w.astype(int), axis=0)[:, :, None] | np.isnan(rows)
    x = np.sort(np.where(bad, np.nan, rows), axis=0)  # NaN last
    n = (~bad).sum(axis=0)
    means = np.full(n.shape, np.nan)
    for t in range(n.shape[0]):
        for i in range(n.shape[1]):
            k = n[t, i]
            if k >= trim_min:
                means[t, i] = x[1:k - 1, t, i].sum() / (k - 2)
            elif k:
                means[t, i] = x[:k, t, i].sum() / k
    return points * means.sum(axis=1) / item_max.sum()


def test_evaluator_weights_are_multinomial_draws() -> None:
    w = evaluator_weights(30, 500, np.random.default_rng(1))
    assert w.shape == (500, 30)
    assert np.all(w.sum(axis=1) == 30)
    assert w.min() >= 0
    # Each evaluator is left out of a replicate with probability (1 - 1/E)**E ≈ 0.36.
    assert 0.30 < np.mean(w == 0) < 0.42
    assert np.array_equal(w, evaluator_weights(30, 500, np.random.default_rng(1)))
    assert evaluator_weights(0, 4, np.random.default_rng(1)).shape == (4, 0)


def test_weights_of_one_equal_official_points_bitwise() -> None:
    scores, coi, item_max = random_committee(2)
    official = committee_points(scores, coi, item_max, 40.0)
    reps = bootstrap_committee_points(scores, coi, item_max, 40.0,
                                      weights=np.ones((5, scores.shape[0])))
    for r in range(5):
        assert np.array_equal(reps[r], official, equal_nan=True)


def test_chunk_size_does_not_change_a_bit() -> None:
    scores, coi, item_max = random_committee(3, e=25, t=12, i=5)
    results = [bootstrap_committee_points(scores, coi, item_max, 30.0, replicates=1000,
                                          rng=np.random.default_rng(99), chunk_size=size)
               for size in (1, 7, 1000)]
    assert np.isfinite(results[0]).mean() > 0.5
    for other in results[1:]:
        assert np.array_equal(results[0], other, equal_nan=True)
    # The default chunking agrees too, and so do parallel worker threads.
    default = bootstrap_committee_points(scores, coi, item_max, 30.0, replicates=1000,
                                         rng=np.random.default_rng(99))
    assert np.array_equal(results[0], default, equal_nan=True)
    threaded = bootstrap_committee_points(scores, coi, item_max, 30.0, replicates=1000,
                                          rng=np.random.default_rng(99), chunk_size=7, workers=3)
    assert np.array_equal(results[0], threaded, equal_nan=True)


def test_matches_expanded_rows_reference() -> None:
    scores, coi, item_max = random_committee(4, e=15, t=8, i=3)
    w = evaluator_weights(15, 30, np.random.default_rng(5))
    got = bootstrap_committee_points(scores, coi, item_max, 25.0, weights=w)
    for r in range(30):
        ref = expanded_reference(scores, coi, item_max, 25.0, w[r])
        assert np.array_equal(np.isnan(got[r]), np.isnan(ref))
        np.testing.assert_allclose(got[r], ref, rtol=1e-12)


def test_drawing_equals_passing_the_same_weights() -> None:
    scores, coi, item_max = random_committee(6)
    drawn = bootstrap_committee_points(scores, coi, item_max, 10.0, replicates=50,
                                       rng=np.random.default_rng(8))
    w = evaluator_weights(scores.shape[0], 50, np.random.default_rng(8))
    passed = bootstrap_committee_points(scores, coi, item_max, 10.0, weights=w.astype(float),
                                        replicates=50)
    assert np.array_equal(drawn, passed, equal_nan=True)


def test_weight_and_replicate_errors() -> None:
    scores, coi, item_max = random_committee(6)
    with pytest.raises(KaiError, match="either weights"):
        bootstrap_committee_points(scores, coi, item_max, 10.0, replicates=5)
    with pytest.raises(KaiError, match="rows"):
        bootstrap_committee_points(scores, coi, item_max, 10.0, replicates=5,
                                   weights=np.ones((4, scores.shape[0])))
    with pytest.raises(KaiError, match="evaluator weights"):
        bootstrap_committee_points(scores, coi, item_max, 10.0, weights=np.ones((4, 3)))
    with pytest.raises(KaiError, match="rng"):
        bootstrap_committee_points(scores, coi, item_max, 10.0, replicates=5,
                                   rng=np.random.RandomState(0))  # type: ignore[arg-type]
    with pytest.raises(KaiError, match="chunk_size"):
        bootstrap_committee_points(scores, coi, item_max, 10.0, replicates=5,
                                   rng=np.random.default_rng(0), chunk_size=0)
    with pytest.raises(KaiError, match="workers"):
        bootstrap_committee_points(scores, coi, item_max, 10.0, replicates=5,
                                   rng=np.random.default_rng(0), workers=0)
    with pytest.raises(KaiError, match="points"):
        bootstrap_committee_points(scores, coi, item_max, float("nan"), replicates=0,
                                   rng=np.random.default_rng(0))


def test_bootstrap_mean() -> None:
    rng = np.random.default_rng(12)
    x = rng.random(400)
    means = bootstrap_mean(x, 2000, np.random.default_rng(1))
    assert means.shape == (2000,)
    assert means.mean() == pytest.approx(x.mean(), abs=0.005)
    # Standard error of a mean: sd / sqrt(n).
    assert means.std() == pytest.approx(x.std() / math.sqrt(400), rel=0.1)
    assert np.array_equal(means, bootstrap_mean(x, 2000, np.random.default_rng(1)))
    assert np.all(bootstrap_mean(np.full(10, 0.25), 20, rng) == 0.25)
    with pytest.raises(KaiError, match="item_scores"):
        bootstrap_mean([], 5, rng)
    with pytest.raises(KaiError, match="finite"):
        bootstrap_mean([0.5, float("nan")], 5, rng)


def test_survival_clear_winner_and_near_tie() -> None:
    # 12 evaluators; team 0 is clearly best, team 3 clearly worst, teams 1 and 2
    # are nearly tied with evaluators who disagree: the advance=2 line runs between them.
    rng = np.random.default_rng(21)
    e = 12
    scores = np.empty((e, 4, 2))
    scores[:, 0, :] = rng.uniform(9.0, 10.0, (e, 2))
    scores[:, 1, :] = rng.uniform(3.0, 7.0, (e, 2))
    scores[:, 2, :] = scores[:, 1, :][::-1] + rng.normal(0, 0.05, (e, 2))
    scores[:, 3, :] = rng.uniform(0.0, 1.0, (e, 2))
    scores = np.clip(scores, 0, 10)
    coi = np.zeros((e, 4), dtype=bool)
    totals = bootstrap_committee_points(scores, coi, [10.0, 10.0], 100.0, replicates=1000,
                                        rng=np.random.default_rng(4))
    surv = survival_probability(totals, cut=None, advance=2, eligible=np.ones(4, bool))
    assert surv[0] == 1.0
    assert surv[3] == 0.0
    assert 0.0 < surv[1] < 1.0
    assert 0.0 < surv[2] < 1.0
    assert surv[1] + surv[2] == pytest.approx(1.0)
    # Gate team 0: it gets 0 and both middle teams now always advance.
    gated = survival_probability(totals, cut=None, advance=2,
                                 eligible=np.array([False, True, True, True]))
    assert gated.tolist() == [0.0, 1.0, 1.0, 0.0]


def test_survival_cut_rule_ties_and_nan() -> None:
    totals = np.array([[5.0, 5.0, 5.0, 1.0],
                       [3.0, 4.0, 2.0, 9.0],
                       [np.nan, 1.0, 2.0, 3.0]])
    eligible = np.ones(4, dtype=bool)
    # cut=2 keeps the top two: row 0 ties -> teams 0 and 1 (index order); row 1 -> 3 and 1;
    # row 2: NaN ranks last -> 3 and 2.
    surv = survival_probability(totals, cut=2, advance=None, eligible=eligible)
    np.testing.assert_allclose(surv, [1 / 3, 2 / 3, 1 / 3, 2 / 3])
    assert survival_probability(totals, cut=0, advance=None, eligible=eligible).tolist() \
        == [1.0] * 4
    assert survival_probability(totals, cut=9, advance=None, eligible=eligible).tolist() \
        == [0.0] * 4
    assert survival_probability(totals, cut=None, advance=9, eligible=eligible).tolist() \
        == [1.0] * 4
    # A gated team is never counted and does not take a place.
    gated = np.array([True, True, False, True])
    surv = survival_probability(totals, cut=1, advance=None, eligible=gated)
    assert surv[2] == 0.0
    np.testing.assert_allclose(surv[[0, 1, 3]], [1 / 3, 1.0, 2 / 3])


def test_survival_errors() -> None:
    t = np.zeros((3, 2))
    ok = np.ones(2, dtype=bool)
    with pytest.raises(KaiError, match="exactly one"):
        survival_probability(t, cut=1, advance=1, eligible=ok)
    with pytest.raises(KaiError, match="exactly one"):
        survival_probability(t, cut=None, advance=None, eligible=ok)
    with pytest.raises(KaiError, match="eligible"):
        survival_probability(t, cut=1, advance=None, eligible=np.ones(3, bool))
    with pytest.raises(KaiError, match="no replicates"):
        survival_probability(np.zeros((0, 2)), cut=1, advance=None, eligible=ok)
    with pytest.raises(KaiError, match="cut"):
        survival_probability(t, cut=-1, advance=None, eligible=ok)


def test_interval_percentiles() -> None:
    totals = np.column_stack([np.arange(101.0), np.full(101, 7.0), np.full(101, np.nan)])
    totals[:50, 1] = np.nan  # NaN replicates are left out
    iv = interval(totals, level=0.95)
    np.testing.assert_allclose(iv[0], [2.5, 97.5])
    assert iv[1].tolist() == [7.0, 7.0]
    assert np.isnan(iv[2]).all()
    np.testing.assert_allclose(interval(totals[:, :1], level=0.5)[0], [25.0, 75.0])
    with pytest.raises(KaiError, match="level"):
        interval(totals, level=1.5)
    with pytest.raises(KaiError, match="2-D"):
        interval(np.zeros(4))


def test_fragile_teams() -> None:
    survival = np.array([1.0, 0.55, 0.45, 0.08, 0.3])
    survived = np.array([True, True, False, False, False])
    eligible = np.array([True, True, True, True, False])
    flags = fragile_teams(survival, survived, eligible)
    assert flags.tolist() == [False, False, True, False, False]
    assert not fragile_teams(survival, survived, eligible, threshold=0.5).any()
    with pytest.raises(KaiError, match="threshold"):
        fragile_teams(survival, survived, eligible, threshold=1.0)


def test_interval_matches_numpy_nanquantile() -> None:
    rng = np.random.default_rng(30)
    totals = rng.normal(50, 10, (333, 40))
    totals[rng.random(totals.shape) < 0.2] = np.nan
    totals[:, 5] = np.nan
    totals[:-1, 6] = np.nan  # a single defined replicate
    ours = interval(totals, level=0.9)
    with np.errstate(all="ignore"), pytest.warns(RuntimeWarning):
        ref = np.nanquantile(totals, [0.05, 0.95], axis=0).T
    np.testing.assert_allclose(ours, ref, rtol=1e-12)
    assert np.array_equal(np.isnan(ours), np.isnan(ref))
