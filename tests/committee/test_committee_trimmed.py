"""Committee trimmed means: hand-computed cases, an independent sort-based reference, bad input."""

from __future__ import annotations

import math
from fractions import Fraction

import numpy as np
import pytest

from kaieval.committee.trimmed import (
    SheetMatrix,
    _split_exact,
    committee_points,
    trimmed_item_means,
)
from kaieval.errors import KaiError

NAN = float("nan")


def cube(columns: list[list[float]]) -> np.ndarray:
    """Scores[E, T, I] from one list of evaluator scores per team (one rubric item)."""
    e = max(len(c) for c in columns)
    out = np.full((e, len(columns), 1), np.nan)
    for t, col in enumerate(columns):
        out[: len(col), t, 0] = col
    return out


def no_coi(scores: np.ndarray) -> np.ndarray:
    return np.zeros(scores.shape[:2], dtype=bool)


def reference(scores: np.ndarray, coi: np.ndarray, weights: np.ndarray | None = None,
              trim_min: int = 5) -> np.ndarray:
    """Straightforward definition: expand copies, sort, drop ends, exact sum (math.fsum)."""
    e_n, t_n, i_n = scores.shape
    w = np.ones(e_n, dtype=int) if weights is None else weights.astype(int)
    out = np.full((t_n, i_n), np.nan)
    for t in range(t_n):
        for i in range(i_n):
            xs = sorted(x for e in range(e_n) if not coi[e, t] and not math.isnan(scores[e, t, i])
                        for x in [float(scores[e, t, i])] * int(w[e]))
            if len(xs) >= trim_min:
                out[t, i] = math.fsum(xs[1:-1]) / (len(xs) - 2)
            elif xs:
                out[t, i] = math.fsum(xs) / len(xs)
    return out


def test_five_sheets_drop_highest_and_lowest() -> None:
    s = cube([[1, 2, 3, 4, 10]])
    assert trimmed_item_means(s, no_coi(s))[0, 0] == 3.0


def test_four_sheets_plain_mean() -> None:
    s = cube([[1, 2, 3, 10]])
    assert trimmed_item_means(s, no_coi(s))[0, 0] == 4.0


def test_ties_drop_one_copy_each() -> None:
    s = cube([[1, 1, 9, 9, 9], [5, 5, 5, 5, 5]])
    got = trimmed_item_means(s, no_coi(s))
    assert got[0, 0] == pytest.approx(19 / 3, abs=1e-15)
    assert got[1, 0] == 5.0


def test_conflict_of_interest_is_excluded() -> None:
    # Six sheets; evaluator 5 is conflicted and gave 10. Without it: [2, 3, 4, 5, 6] -> 4.
    s = cube([[2, 3, 4, 5, 6, 10]])
    coi = no_coi(s)
    coi[5, 0] = True
    assert trimmed_item_means(s, coi)[0, 0] == 4.0
    # With the conflict lifted the 10 counts and 2 is dropped: mean of [3, 4, 5, 6] = 4.5.
    assert trimmed_item_means(s, no_coi(s))[0, 0] == 4.5


def test_conflict_can_push_below_trim_threshold() -> None:
    s = cube([[1, 2, 3, 4, 10]])
    coi = no_coi(s)
    coi[4, 0] = True  # four valid sheets left: plain mean of [1, 2, 3, 4]
    assert trimmed_item_means(s, coi)[0, 0] == 2.5


def test_no_valid_sheet_is_nan_and_not_zero() -> None:
    s = cube([[NAN, NAN, NAN], [4, 6, 8]])
    coi = no_coi(s)
    got = trimmed_item_means(s, coi)
    assert math.isnan(got[0, 0])
    assert got[1, 0] == 6.0
    pts = committee_points(s, coi, [10.0], 30.0)
    assert math.isnan(pts[0])
    assert pts[1] == pytest.approx(18.0)


def test_all_sheets_conflicted_is_nan() -> None:
    s = cube([[4, 5, 6]])
    coi = np.ones((3, 1), dtype=bool)
    assert math.isnan(trimmed_item_means(s, coi)[0, 0])


def test_trim_min_parameter() -> None:
    s = cube([[1, 5, 9]])
    assert trimmed_item_means(s, no_coi(s), trim_min=3)[0, 0] == 5.0
    assert trimmed_item_means(s, no_coi(s))[0, 0] == 5.0  # plain mean, same here
    s2 = cube([[1, 2, 9]])
    assert trimmed_item_means(s2, no_coi(s2), trim_min=3)[0, 0] == 2.0
    assert trimmed_item_means(s2, no_coi(s2))[0, 0] == 4.0


def test_committee_points_hand_computed() -> None:
    # Two items (max 10 and 20), five evaluators, one team.
    s = np.array([[[1, 10]], [[2, 12]], [[3, 14]], [[4, 16]], [[10, 20]]], dtype=float)
    means = trimmed_item_means(s, no_coi(s))
    assert means.tolist() == [[3.0, 14.0]]
    pts = committee_points(s, no_coi(s), [10.0, 20.0], 40.0)
    assert pts[0] == pytest.approx(40 * 17 / 30)


def test_one_missing_item_makes_points_nan() -> None:
    s = np.array([[[5, NAN]], [[6, NAN]]])
    pts = committee_points(s, no_coi(s), [10.0, 10.0], 10.0)
    assert math.isnan(pts[0])


def test_matches_sort_reference_on_random_sheets() -> None:
    rng = np.random.default_rng(7)
    s = rng.uniform(0, 10, (12, 9, 4))
    s[rng.random(s.shape) < 0.3] = np.nan
    coi = rng.random((12, 9)) < 0.2
    got = trimmed_item_means(s, coi)
    ref = reference(s, coi)
    assert np.array_equal(np.isnan(got), np.isnan(ref))
    np.testing.assert_allclose(got, ref, rtol=1e-14, atol=0)


def test_weighted_means_match_expanded_copies() -> None:
    rng = np.random.default_rng(11)
    s = rng.uniform(0, 10, (8, 6, 3))
    s[rng.random(s.shape) < 0.25] = np.nan
    coi = rng.random((8, 6)) < 0.15
    matrix = SheetMatrix(s, coi)
    weights = rng.multinomial(8, np.full(8, 1 / 8), size=40)
    weights[0] = [0, 0, 0, 0, 0, 0, 0, 8]  # one evaluator 8 times: trimmed to its own score
    got = matrix.item_means(weights)
    for r in range(weights.shape[0]):
        ref = reference(s, coi, weights[r])
        assert np.array_equal(np.isnan(got[r]), np.isnan(ref)), r
        np.testing.assert_allclose(got[r], ref, rtol=1e-13, atol=0)
    np.testing.assert_allclose(got[0], np.where(coi[7][:, None], np.nan, s[7]), rtol=1e-15)


def test_exact_split_reassembles_values() -> None:
    rng = np.random.default_rng(3)
    v = rng.normal(0, 1, (50, 30)) * 10.0 ** rng.integers(-20, 20, (50, 30))
    v[0, 0] = 5e-324  # smallest subnormal: the split must still terminate and be exact
    parts = _split_exact(v, 45)
    assert len(parts) > 2
    total = parts[0].copy()
    for p in parts[1:]:
        total += p
    # Each value is the exact sum of its slices (checked with fsum per element).
    for idx in [(0, 0), (3, 4), (49, 29), (10, 10)]:
        assert math.fsum(float(p[idx]) for p in parts) == v[idx]
    # Grid property: within a column, slice k values are multiples of a common power of two
    # with at most 45 + 1 significant bits, so weighted sums of them are exact.
    col = parts[0][:, 2]
    q = 2.0 ** (np.frexp(np.max(np.abs(v[:, 2])))[1] - 45)
    assert np.all(col / q == np.floor(col / q))
    assert np.all(np.abs(col / q) <= 2**45)


def test_sums_are_exact_not_just_close() -> None:
    # 0.1 is not exact in binary; naive left-to-right summation of these drifts.
    vals = [0.1, 0.2, 0.3, 1e-17 + 0.7, 0.4, 0.6, 0.5]
    s = cube([vals])
    got = trimmed_item_means(s, no_coi(s))[0, 0]
    inner = sorted(vals)[1:-1]
    exact_sum = math.fsum(vals)
    expected = ((exact_sum - max(vals)) - min(vals)) / (len(vals) - 2)
    assert got == expected
    assert got == pytest.approx(math.fsum(inner) / len(inner), rel=1e-15)


@pytest.mark.parametrize(("scores", "coi", "fragment"), [
    (np.zeros((3, 2)), np.zeros((3, 2), bool), "3-D array"),
    (np.zeros((3, 2, 1)), np.zeros((2, 3), bool), "does not match"),
    (np.zeros((3, 2, 1)), np.zeros((3, 2), int), "boolean"),
    (np.array([[[np.inf]]]), np.zeros((1, 1), bool), "infinite"),
    (np.array([[["a"]]]), np.zeros((1, 1), bool), "numbers"),
])
def test_bad_arrays_raise_one_line_errors(scores: np.ndarray, coi: np.ndarray,
                                          fragment: str) -> None:
    with pytest.raises(KaiError) as err:
        trimmed_item_means(scores, coi)
    assert fragment in str(err.value)
    assert "\n" not in str(err.value)


def test_bad_points_inputs() -> None:
    s = cube([[1, 2, 3]])
    with pytest.raises(KaiError, match="outside"):
        committee_points(s * 10, no_coi(s), [10.0], 10.0)
    with pytest.raises(KaiError, match="item_max"):
        committee_points(s, no_coi(s), [10.0, 5.0], 10.0)
    with pytest.raises(KaiError, match="item_max"):
        committee_points(s, no_coi(s), [0.0], 10.0)
    with pytest.raises(KaiError, match="points"):
        committee_points(s, no_coi(s), [10.0], -1.0)
    with pytest.raises(KaiError, match="trim_min"):
        trimmed_item_means(s, no_coi(s), trim_min=2)
    with pytest.raises(KaiError, match="weights"):
        SheetMatrix(s, no_coi(s)).item_means(np.array([[1, 0.5, 1]]))


def test_conflicted_infinite_score_is_ignored() -> None:
    s = cube([[np.inf, 2, 4]])
    coi = no_coi(s)
    coi[0, 0] = True
    assert trimmed_item_means(s, coi)[0, 0] == 3.0


def test_huge_copy_counts_use_exact_float64_counts() -> None:
    # Row sums above 2**24 leave float32 counts inexact; the float64 path must take over.
    s = np.array([[[0.3]], [[0.7]], [[0.1]], [[0.9]]])
    w = np.array([[2**24 + 1, 2**24, 1, 1]])
    got = SheetMatrix(s, no_coi(s)).item_means(w)[0, 0, 0]
    n = 2**25 + 3
    total = (Fraction(0.3) * (2**24 + 1) + Fraction(0.7) * 2**24 + Fraction(0.1) + Fraction(0.9))
    expected = (total - Fraction(0.9) - Fraction(0.1)) / (n - 2)
    assert got == pytest.approx(float(expected), rel=1e-15)
    # A naive float32 count would be off by one copy here (2**25 + 3 is not a float32).
    assert float(np.float32(n)) != n
