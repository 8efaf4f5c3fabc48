"""Rank robustness: how likely each team's fate would survive a re-run of the evidence.

Each source of evidence is resampled at its natural unit — benchmark *items*,
committee *evaluators* (one draw shared by all teams and items, and by all
committee components of a stage) — the stage totals are recomputed per
replicate, and the cut is re-applied. The fraction of replicates in which a team
survives is its survival probability; a cut is *fragile* when a team on the
losing side survives in more than ``robustness_flag`` (10 %) of replicates.
Formulas: ``docs/formulas.md``; speed and memory: ``docs/performance.md``.

Replicates are computed in chunks to bound memory, but all random draws are
made first, and each replicate's value depends on its own draw only, so results
are bitwise identical whatever the chunk size.
"""

from __future__ import annotations

import math
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numpy.typing import NDArray

from kaieval.committee.trimmed import (
    DEFAULT_TRIM_MIN,
    SheetMatrix,
    check_item_max,
    check_points,
    check_range,
    check_scores,
    check_weights,
    points_from_means,
)
from kaieval.errors import KaiError

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IntArray = NDArray[np.int64]

# Working memory per chunk of replicates, in bytes (about 70 bytes per (replicate, column)).
CHUNK_BUDGET = 96 * 2**20
_BYTES_PER_CELL = 72
# Chunks computed at once by default, each in its own thread with its own working arrays.
# One: a second worker gained only 0-5 % on the 2-core development machine (its BLAS threads
# and the other worker's compete) and 0-20 % on an idle 2-core host, for a second chunk's
# memory (docs/performance.md).
DEFAULT_WORKERS = 1


def _check_count(value: object, where: str, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise KaiError(f"must be a whole number ≥ {minimum}, got {value!r}", where=where)
    return int(value)


def _check_rng(rng: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise KaiError(f"expected numpy.random.Generator (seeded), got {type(rng).__name__}",
                       where="rng")
    return rng


def evaluator_weights(n_evaluators: int, replicates: int,
                      rng: np.random.Generator) -> IntArray:
    """Copy counts ``[R, E]``: each replicate draws E evaluators with replacement.

    Share one draw across the committee components of a stage (columns aligned
    to the same evaluator list) so an evaluator who sits on several components
    is in or out of a replicate for all of them at once.
    """
    n_eval = _check_count(n_evaluators, "evaluators")
    n_rep = _check_count(replicates, "replicates")
    gen = _check_rng(rng)
    if n_eval == 0:
        return np.zeros((n_rep, 0), dtype=np.int64)
    counts: IntArray = gen.multinomial(n_eval, np.full(n_eval, 1.0 / n_eval),
                                       size=n_rep).astype(np.int64)
    return counts


def default_chunk_size(n_columns: int) -> int:
    """Replicates per chunk so one chunk's working arrays stay near ``CHUNK_BUDGET``."""
    return max(1, CHUNK_BUDGET // (_BYTES_PER_CELL * max(n_columns, 1)))


def bootstrap_committee_points(scores: object, coi: object, item_max: object, points: float, *,
                               replicates: int | None = None,
                               rng: np.random.Generator | None = None,
                               weights: object | None = None,
                               trim_min: int = DEFAULT_TRIM_MIN,
                               chunk_size: int | None = None,
                               workers: int | None = None) -> FloatArray:
    """Committee points per replicate and team, ``[R, T]``, resampling evaluators.

    Give either ``replicates`` and ``rng`` (weights are drawn with
    :func:`evaluator_weights`) or ``weights[R, E]`` shared with other components.
    A team-item whose valid sheets all drop out of a replicate makes that
    replicate's points NaN for the team (not measured, not zero).
    ``chunk_size`` (replicates per chunk, default from ``CHUNK_BUDGET``) and
    ``workers`` (chunks computed in parallel threads) change speed and memory,
    never the result.
    """
    s, c = check_scores(scores, coi)
    n_eval, n_teams, n_items = s.shape
    m = check_item_max(item_max, n_items)
    check_range(s, c, m)
    check_points(points)
    if weights is None:
        if replicates is None or rng is None:
            raise KaiError("give either weights or both replicates and rng",
                           where="bootstrap_committee_points")
        w = check_weights(evaluator_weights(n_eval, replicates, rng), n_eval)
    else:
        w = check_weights(weights, n_eval)
        if replicates is not None and _check_count(replicates, "replicates") != w.shape[0]:
            raise KaiError(f"replicates={replicates} but weights have {w.shape[0]} rows",
                           where="bootstrap_committee_points")
    size = default_chunk_size(n_teams * n_items) if chunk_size is None \
        else _check_count(chunk_size, "chunk_size", minimum=1)
    n_workers = DEFAULT_WORKERS if workers is None else _check_count(workers, "workers", 1)
    matrix = SheetMatrix(s, c, trim_min)
    bound = float(w.sum(axis=1).max()) if w.size else 0.0  # one slicing for every chunk
    matrix.prepare(bound)
    out = np.empty((w.shape[0], n_teams))

    def run(start: int) -> None:
        stop = min(start + size, w.shape[0])
        out[start:stop] = points_from_means(matrix.item_means(w[start:stop], bound), m, points)

    starts = range(0, w.shape[0], size)
    n_threads = min(n_workers, len(starts))
    if n_threads <= 1:
        for start in starts:
            run(start)
    else:
        # Chunks are independent and write disjoint rows, so threads cannot change a bit;
        # numpy and BLAS release the GIL in the heavy steps.
        with ThreadPoolExecutor(max_workers=n_threads) as pool:
            list(pool.map(run, starts))
    return out


def bootstrap_mean(item_scores: object, replicates: int,
                   rng: np.random.Generator) -> FloatArray:
    """Means of ``replicates`` resamples (with replacement) of a benchmark's items, ``[R]``."""
    x = np.asarray(item_scores, dtype=np.float64)
    if x.ndim != 1 or x.size == 0:
        raise KaiError(f"expected a non-empty 1-D array of item scores, got shape {x.shape}",
                       where="item_scores")
    if not np.all(np.isfinite(x)):
        raise KaiError("item scores must be finite numbers (drop unscored items first)",
                       where="item_scores")
    n_rep = _check_count(replicates, "replicates")
    gen = _check_rng(rng)
    out = np.empty(n_rep)
    step = max(1, 2**22 // x.size)  # index draws of at most 32 MiB at a time
    for start in range(0, n_rep, step):
        stop = min(start + step, n_rep)
        idx = gen.integers(0, x.size, size=(stop - start, x.size))
        out[start:stop] = x[idx].mean(axis=1)
    return out


def _check_totals(totals: object) -> FloatArray:
    t = np.asarray(totals, dtype=np.float64)
    if t.ndim != 2:
        raise KaiError(f"expected a 2-D array (replicates × teams), got shape {t.shape}",
                       where="totals")
    if t.shape[0] == 0:
        raise KaiError("no replicates to summarise", where="totals")
    return t


def survival_probability(totals: object, *, cut: int | None, advance: int | None,
                         eligible: object) -> FloatArray:
    """Fraction of replicates in which each team survives the stage's rule, ``[T]``.

    Per replicate, eligible teams are ranked by total, highest first; equal
    totals are ordered by team index (lower index ranks higher) so the result is
    deterministic; a NaN total ranks below every number. With ``advance`` the
    top ``advance`` eligible teams survive; with ``cut`` all but the bottom
    ``cut`` do. Ineligible (gated) teams get 0.
    """
    t = _check_totals(totals)
    el = np.asarray(eligible)
    if el.dtype != np.bool_ or el.shape != (t.shape[1],):
        raise KaiError(f"expected {t.shape[1]} booleans (one per team), got {el.dtype} "
                       f"{el.shape}", where="eligible")
    if (cut is None) == (advance is None):
        raise KaiError("give exactly one of cut or advance", where="survival_probability")
    idx = np.flatnonzero(el)
    n_el = idx.size
    keep = min(_check_count(advance, "advance"), n_el) if advance is not None \
        else max(n_el - _check_count(cut, "cut"), 0)
    prob = np.zeros(t.shape[1])
    if keep == 0:
        return prob
    # Negating keeps ties equal; a stable sort then keeps them in index order, NaN last.
    order = np.argsort(-t[:, idx], axis=1, kind="stable")[:, :keep]
    prob[idx] = np.bincount(order.ravel(), minlength=n_el) / t.shape[0]
    return prob


def interval(totals: object, level: float = 0.95) -> FloatArray:
    """Percentile interval ``[T, 2]`` of each team's total over replicates.

    Replicates where a team's total is NaN (a component not measured in that
    replicate) are left out; a team NaN in every replicate gets ``[NaN, NaN]``.
    """
    t = _check_totals(totals)
    if not (isinstance(level, float | int) and 0 < level < 1):
        raise KaiError(f"must be between 0 and 1, got {level!r}", where="level")
    tail = (1.0 - float(level)) / 2.0
    # Linear interpolation between order statistics (numpy's default "linear" method), done
    # for all teams at once: np.nanquantile loops over columns in Python (0.4 s at 1000 teams).
    x = np.sort(t, axis=0)  # NaN last
    n = np.sum(~np.isnan(t), axis=0)
    result = np.full((t.shape[1], 2), np.nan)
    has = n > 0
    cols = np.flatnonzero(has)
    for j, q in enumerate((tail, 1.0 - tail)):
        pos = q * (n[has] - 1)
        lo = np.floor(pos).astype(np.intp)
        hi = np.minimum(lo + 1, n[has] - 1)
        a, b = x[lo, cols], x[hi, cols]
        result[has, j] = a + (pos - lo) * (b - a)
    return result


def fragile_teams(survival: object, survived: object, eligible: object,
                  threshold: float = 0.10) -> BoolArray:
    """Teams on the losing side of the cut that survive in more than ``threshold`` of replicates.

    ``survived`` is the official decision (True: advances). Gated teams are
    never flagged: the gate, not the score, removed them. A stage is fragile
    when any team is flagged.
    """
    p = np.asarray(survival, dtype=np.float64)
    s = np.asarray(survived)
    e = np.asarray(eligible)
    if p.ndim != 1 or s.shape != p.shape or e.shape != p.shape \
            or s.dtype != np.bool_ or e.dtype != np.bool_:
        raise KaiError("survival, survived and eligible must be 1-D arrays of equal length "
                       "(survived and eligible boolean)", where="fragile_teams")
    if not (isinstance(threshold, float | int) and 0 < threshold < 1
            and math.isfinite(threshold)):
        raise KaiError(f"must be between 0 and 1, got {threshold!r}", where="threshold")
    flagged: BoolArray = e & ~s & (p > threshold)
    return flagged
