"""Uncertainty of benchmark aggregates: standard error and bootstrap confidence interval.

Pure functions over per-document metric values. The standard error is lm-eval's
``mean_stderr`` (sample standard deviation with ddof=1 over sqrt(n)) so our error
bars read the same as theirs; the percentile bootstrap is seeded and vectorised,
so the same values and seed always give the same interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from kaieval.bench.api import MetricSummary
from kaieval.errors import KaiError

DEFAULT_RESAMPLES = 1000
DEFAULT_SEED = 1234
_CHUNK_CELLS = 4_000_000  # bound the index matrix to ~32 MB whatever n and resamples are


def mean_stderr(values: Sequence[float]) -> float:
    """sqrt(var(ddof=1) / n); NaN when fewer than two values (no spread is measurable)."""
    x = np.asarray(values, dtype=np.float64)
    if x.size < 2:
        return math.nan
    return float(math.sqrt(float(np.var(x, ddof=1)) / x.size))


def bootstrap_means(values: Sequence[float], *, resamples: int = DEFAULT_RESAMPLES,
                    seed: int = DEFAULT_SEED) -> np.ndarray:
    """Means of ``resamples`` resamples (with replacement) of ``values``; seeded, chunked."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise KaiError("cannot bootstrap an empty list of values")
    if resamples < 1:
        raise KaiError(f"bootstrap resamples must be >= 1, got {resamples}")
    rng = np.random.default_rng(seed)
    out = np.empty(resamples, dtype=np.float64)
    rows = max(1, _CHUNK_CELLS // x.size)
    for start in range(0, resamples, rows):
        stop = min(resamples, start + rows)
        idx = rng.integers(0, x.size, size=(stop - start, x.size))
        out[start:stop] = x[idx].mean(axis=1)
    return out


def bootstrap_ci(values: Sequence[float], *, resamples: int = DEFAULT_RESAMPLES,
                 seed: int = DEFAULT_SEED, level: float = 0.95) -> tuple[float, float]:
    """Percentile bootstrap interval of the mean at ``level`` (default 95 %)."""
    if not 0.0 < level < 1.0:
        raise KaiError(f"confidence level must be in (0, 1), got {level}")
    means = bootstrap_means(values, resamples=resamples, seed=seed)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.percentile(means, [100.0 * alpha, 100.0 * (1.0 - alpha)])
    return float(lo), float(hi)


def summarize(values: Sequence[float], *, resamples: int = DEFAULT_RESAMPLES,
              seed: int = DEFAULT_SEED, level: float = 0.95) -> MetricSummary:
    """Mean, its standard error and a bootstrap CI, as one ``MetricSummary``."""
    x = np.asarray(values, dtype=np.float64)
    if x.size == 0:
        raise KaiError("cannot summarise a metric over zero documents")
    if not np.all(np.isfinite(x)):
        raise KaiError("metric values contain NaN or infinity; cannot summarise")
    lo, hi = bootstrap_ci(x.tolist(), resamples=resamples, seed=seed, level=level)
    return MetricSummary(value=float(x.mean()), stderr=mean_stderr(x.tolist()),
                         ci_low=lo, ci_high=hi, n=int(x.size))
