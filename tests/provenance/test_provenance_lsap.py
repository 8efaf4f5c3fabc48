"""The assignment's shortcut must return exactly what SciPy's solver returns."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment as scipy_lsap

from kaieval.provenance import lsap


def _same(score: np.ndarray) -> bool:
    got = lsap.max_assignment(score)
    want = scipy_lsap(score, maximize=True)
    return bool(np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1]))


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (5, 1), (6, 6), (40, 300), (300, 40)])
@pytest.mark.parametrize("seed", range(4))
def test_plain_optimum_is_the_solvers(shape: tuple[int, int], seed: int) -> None:
    """A permuted, noisy diagonal (a derived model's units): the shortcut answers."""
    rng = np.random.default_rng(seed)
    n, m = shape
    score = rng.normal(0, 0.05, size=shape).astype(np.float32)
    k = min(n, m)
    rows, cols = rng.permutation(n)[:k], rng.permutation(m)[:k]
    score[rows, cols] += 1.0
    calls: list[int] = []
    real = lsap._solve
    lsap._solve = lambda s: (calls.append(1), real(s))[1]  # type: ignore[assignment]
    try:
        assert _same(score)
    finally:
        lsap._solve = real  # type: ignore[assignment]
    assert not calls, "the unique optimum should not need the solver"


@pytest.mark.parametrize("seed", range(6))
def test_competing_rows_and_ties_fall_back(seed: int) -> None:
    """Unstructured scores (an independent model), exact ties and NaN go to the solver."""
    rng = np.random.default_rng(seed)
    assert _same(rng.normal(size=(30, 80)).astype(np.float32))
    tied = np.eye(8, dtype=np.float64)
    tied[:, 3] = 1.0  # every row's maximum is shared with column 3
    assert _same(tied)
    equal = np.ones((4, 4))
    assert _same(equal)
    close = np.eye(5) + np.eye(5, k=1) * (1 - 1e-12)  # a runner-up within the margin
    assert _same(close)


def test_non_finite_scores_are_the_solvers_business() -> None:
    bad = np.eye(4)
    bad[1, 2] = np.nan
    with pytest.raises(ValueError):
        scipy_lsap(bad, maximize=True)
    with pytest.raises(ValueError):
        lsap.max_assignment(bad)
