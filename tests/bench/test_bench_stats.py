"""Statistics against numpy/scipy: stderr equals lm-eval's mean_stderr; bootstrap is seeded."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as sps

from kaieval.bench.stats import bootstrap_ci, bootstrap_means, mean_stderr, summarize
from kaieval.errors import KaiError


def test_mean_stderr_matches_scipy_sem() -> None:
    x = [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.5, 0.25]
    assert mean_stderr(x) == pytest.approx(float(sps.sem(x, ddof=1)), rel=1e-12)
    assert mean_stderr(x) == pytest.approx(math.sqrt(np.var(x, ddof=1) / len(x)), rel=1e-12)


def test_stderr_of_one_value_is_nan() -> None:
    assert math.isnan(mean_stderr([1.0]))


def test_bootstrap_is_seeded_and_chunk_independent() -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 2, size=500).astype(float).tolist()
    a = bootstrap_means(x, resamples=1000, seed=7)
    b = bootstrap_means(x, resamples=1000, seed=7)
    c = bootstrap_means(x, resamples=1000, seed=8)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    # The bootstrap spread of the mean approximates the analytic standard error.
    assert float(np.std(a, ddof=1)) == pytest.approx(mean_stderr(x), rel=0.1)


def test_bootstrap_ci_brackets_the_mean_and_matches_normal_width() -> None:
    rng = np.random.default_rng(1)
    x = rng.normal(10.0, 2.0, size=400).tolist()
    lo, hi = bootstrap_ci(x, resamples=2000, seed=3)
    mean = float(np.mean(x))
    assert lo < mean < hi
    z = float(sps.norm.ppf(0.975))
    assert (hi - lo) == pytest.approx(2 * z * mean_stderr(x), rel=0.15)


def test_summarize_fields() -> None:
    s = summarize([1.0, 0.0, 1.0, 1.0], seed=1)
    assert s.value == 0.75 and s.n == 4
    assert s.ci_low <= s.value <= s.ci_high
    assert s.stderr == pytest.approx(math.sqrt(0.25 / 4))


def test_bad_inputs_are_one_line_errors() -> None:
    with pytest.raises(KaiError, match="zero documents"):
        summarize([])
    with pytest.raises(KaiError, match="NaN"):
        summarize([1.0, float("nan")])
    with pytest.raises(KaiError, match="level"):
        bootstrap_ci([1.0, 2.0], level=1.5)
