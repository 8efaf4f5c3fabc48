"""Committee trimmed means: one formula for the official score and for every bootstrap replicate.

Committee scores arrive as an array ``scores[E, T, I]`` (evaluators × teams ×
rubric items) with NaN where an evaluator filed no sheet, and a boolean
``coi[E, T]`` marking conflicts of interest. Per (team, item) the *valid* sheets
are those that exist and are not conflicted. With ``n`` valid sheets:

* ``n >= trim_min``: drop one highest and one lowest sheet, average the rest —
  a single friendly or hostile evaluator cannot move a team on their own;
* ``0 < n < trim_min``: the plain mean (trimming would leave too few sheets);
* ``n == 0``: NaN — not measured is not zero.

The bootstrap over evaluators (``kaieval.scoring.robustness``) evaluates the same
formula with integer copy counts ``w[e]`` per evaluator. Both paths go through
:class:`SheetMatrix`, so ``trimmed_item_means`` equals a replicate whose weights
are all one *bitwise*, and a replicate's value does not depend on how many
replicates are computed together:

* weighted sums are computed with BLAS matrix products, whose summation order
  depends on the blocking of the whole product. To make them order-free, each
  column's values are split into slices of at most ``52 - bits(Σw)`` significant
  bits on a grid shared by the column (Ozaki-style splitting); every partial sum
  of a slice is then an exact float64 integer multiple of the grid, so BLAS
  returns the exact weighted sum whatever its order. The slices are added in a
  fixed order (for real scores: one or two slices);
* per-replicate max and min come from evaluators pre-sorted by score once per
  column: the maximum is the first evaluator in descending order with a nonzero
  weight. Each evaluator is drawn with probability ≈ 0.63 per replicate, so most
  columns resolve at the first or second step and only unresolved
  (replicate, column) pairs are carried to the next step.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from kaieval.errors import KaiError

DEFAULT_TRIM_MIN = 5
# Search steps done on whole arrays before switching to per-pair bookkeeping (see
# ``SheetMatrix._first_included``); 4 measured fastest on the 1,000 × 100 × 20 benchmark.
DENSE_STEPS = 4

FloatArray = NDArray[np.float64]
BoolArray = NDArray[np.bool_]
IndexArray = NDArray[np.intp]


def check_scores(scores: object, coi: object) -> tuple[FloatArray, BoolArray]:
    """Validate the score cube and conflict mask; return them as float64 / bool arrays."""
    s = np.asarray(scores)
    if s.ndim != 3:
        raise KaiError(f"expected a 3-D array (evaluators × teams × items), got shape {s.shape}",
                       where="committee scores")
    if not (np.issubdtype(s.dtype, np.floating) or np.issubdtype(s.dtype, np.integer)):
        raise KaiError(f"expected numbers, got dtype {s.dtype}", where="committee scores")
    s = s.astype(np.float64, copy=False)
    c = np.asarray(coi)
    if c.dtype != np.bool_:
        raise KaiError(f"expected a boolean array, got dtype {c.dtype}",
                       where="conflict-of-interest mask")
    if c.shape != s.shape[:2]:
        raise KaiError(f"shape {c.shape} does not match the scores' evaluators × teams "
                       f"{s.shape[:2]}", where="conflict-of-interest mask")
    bad = np.argwhere(np.isinf(s) & ~c[:, :, None])
    if bad.size:
        e, t, i = (int(v) for v in bad[0])
        raise KaiError(f"score is infinite (evaluator {e}, team {t}, item {i})",
                       where="committee scores")
    return s, c


def check_item_max(item_max: object, n_items: int) -> FloatArray:
    """Validate the rubric's item maxima: one positive finite number per item."""
    m = np.asarray(item_max, dtype=np.float64)
    if m.shape != (n_items,):
        raise KaiError(f"expected {n_items} item maxima (one per rubric item), got shape "
                       f"{m.shape}", where="item_max")
    if n_items == 0:
        raise KaiError("the rubric has no items", where="item_max")
    if not np.all(np.isfinite(m) & (m > 0)):
        raise KaiError(f"every item maximum must be a positive number, got {m.tolist()}",
                       where="item_max")
    return m


def check_range(scores: FloatArray, coi: BoolArray, item_max: FloatArray) -> None:
    """Refuse valid sheets outside ``[0, item_max]``: a typo must not become points."""
    valid = ~np.isnan(scores) & ~coi[:, :, None]
    out = valid & ((scores < 0) | (scores > item_max[None, None, :]))
    if out.any():
        e, t, i = (int(v) for v in np.argwhere(out)[0])
        raise KaiError(f"score {scores[e, t, i]:g} outside [0, {item_max[i]:g}] "
                       f"(evaluator {e}, team {t}, item {i})", where="committee scores")


def check_weights(weights: object, n_evaluators: int) -> FloatArray:
    """Validate copy counts ``weights[R, E]``: whole numbers ≥ 0, a column per evaluator."""
    w = np.asarray(weights)
    if w.ndim != 2 or w.shape[1] != n_evaluators:
        raise KaiError(f"expected shape (replicates, {n_evaluators}), got {w.shape}",
                       where="evaluator weights")
    wf = w.astype(np.float64)
    if not np.all(np.isfinite(wf) & (wf >= 0) & (wf == np.floor(wf))):
        raise KaiError("weights must be non-negative whole numbers (copies of a sheet)",
                       where="evaluator weights")
    return wf


def _split_exact(values: FloatArray, bits: int) -> list[FloatArray]:
    """Split ``values[E, C]`` into slices on per-column grids of ``bits`` significant bits.

    Slice k of column c holds multiples of ``q_k[c] = 2**(e_c - k*bits)`` below
    ``2**(e_c - (k-1)*bits)`` in magnitude, where ``2**e_c`` bounds the column.
    The slices add up to ``values`` exactly; the loop ends when nothing is left,
    which for any float64 happens by the 2**-1074 grid.
    """
    amax = np.max(np.abs(values), axis=0) if values.shape[0] else np.zeros(values.shape[1])
    _, exp = np.frexp(amax)  # amax < 2**exp
    exp = exp.astype(np.int64)
    rest = values.copy()
    slices: list[FloatArray] = []
    k = 1
    while np.any(rest != 0):
        q = np.ldexp(1.0, np.maximum(exp - k * bits, -1074))
        part = np.floor(rest / q) * q
        rest = rest - part
        slices.append(part)
        k += 1
    return slices or [np.zeros_like(values)]


def _step_major(order_t: IndexArray, values_t: FloatArray) -> tuple[IndexArray, FloatArray]:
    """Column orders ``[C, E]`` and their values, transposed to step-major ``[E, C]``."""
    vals = np.take_along_axis(values_t, order_t, axis=1)
    return np.ascontiguousarray(order_t.T.astype(np.intp)), np.ascontiguousarray(vals.T)


class SheetMatrix:
    """Validated committee scores prepared once for many weighted trimmed means.

    Columns are (team, item) pairs flattened in C order. Building costs one sort
    of each column's evaluators; :meth:`item_means` then costs two BLAS products
    and a short first-included search per (replicate, column).
    """

    def __init__(self, scores: object, coi: object, trim_min: int = DEFAULT_TRIM_MIN) -> None:
        if isinstance(trim_min, bool) or not isinstance(trim_min, int | np.integer) \
                or trim_min < 3:
            raise KaiError(f"must be a whole number of at least 3, got {trim_min!r}",
                           where="trim_min")
        s, c = check_scores(scores, coi)
        self.trim_min = int(trim_min)
        self.n_evaluators, self.n_teams, self.n_items = s.shape
        n_cols = self.n_teams * self.n_items
        valid = (~np.isnan(s) & ~c[:, :, None]).reshape(self.n_evaluators, n_cols)
        values = np.where(valid, s.reshape(self.n_evaluators, n_cols), 0.0)
        self._values = values
        self._valid32 = valid.astype(np.float32)  # 0/1; counts are exact (see item_means)
        self._slices: dict[int, list[FloatArray]] = {}
        # Per column, evaluators ordered valid-first by ascending / descending score, stored
        # step-major ([E, C]: row k holds every column's k-th evaluator) so that one search
        # step reads one contiguous row. The sort runs along contiguous rows of the
        # transpose (much faster than along axis 0), and one sort serves both directions:
        # the descending order is the valid prefix reversed.
        values_t = np.ascontiguousarray(values.T)
        asc = np.argsort(np.where(valid, values, np.inf).T, axis=1, kind="stable")
        n_valid = valid.sum(axis=0)[:, None]  # [C, 1]
        step = np.arange(self.n_evaluators)[None, :]
        desc = np.take_along_axis(asc, np.where(step < n_valid, n_valid - 1 - step, step), axis=1)
        self._asc_idx, self._asc_val = _step_major(asc, values_t)
        self._desc_idx, self._desc_val = _step_major(desc, values_t)

    def prepare(self, weight_bound: float) -> None:
        """Build the exact-sum slices for ``weight_bound`` now (before chunks run in threads)."""
        self._sliced(weight_bound)

    def _sliced(self, max_weight_total: float) -> list[FloatArray]:
        """Exact-sum slices for weight rows adding up to at most ``max_weight_total``."""
        bits = 52 - max(1, math.ceil(math.log2(max(max_weight_total, 1.0) + 1)))
        if bits < 8:
            raise KaiError(f"weights add up to {max_weight_total:g} per replicate; too many "
                           "copies for exact sums", where="evaluator weights")
        if bits not in self._slices:
            self._slices[bits] = _split_exact(self._values, bits)
        return self._slices[bits]

    def item_means(self, weights: object, weight_bound: float | None = None) -> FloatArray:
        """Weighted trimmed means ``[R, T, I]`` for copy counts ``weights[R, E]``.

        With weights w: n = Σ w·valid, sum = Σ w·valid·x; if n ≥ trim_min the
        result is (sum − max − min)/(n − 2), max/min over valid evaluators with
        w > 0 (one copy of each dropped); if 0 < n < trim_min, sum/n; else NaN.
        Row r of the result depends on row r of ``weights`` and on
        ``weight_bound`` (an upper bound on every row's Σw, which picks the
        exact-sum slicing) only, bit for bit. Callers that split a weight matrix
        into chunks pass the bound of the whole matrix; by default it is this
        call's largest row sum.
        """
        w = check_weights(weights, self.n_evaluators)
        n_rep = w.shape[0]
        n_cols = self.n_teams * self.n_items
        total = float(w.sum(axis=1).max()) if n_rep and self.n_evaluators else 0.0
        if weight_bound is not None:
            if not weight_bound >= total:
                raise KaiError(f"a row adds up to {total:g}, above the bound {weight_bound:g}",
                               where="evaluator weights")
            total = float(weight_bound)
        parts = self._sliced(total)
        sums = w @ parts[0]  # each product is exact, so the fixed-order sum is deterministic
        for part in parts[1:]:
            sums += w @ part
        if total < 2**24:  # integer counts are exact in float32 below 2**24, at half the cost
            n = (w.astype(np.float32) @ self._valid32).astype(np.float64)
        else:
            n = w @ self._valid32.astype(np.float64)
        need = n >= self.trim_min
        plain = n > 0
        plain &= ~need
        out = np.full((n_rep, n_cols), np.nan)
        np.divide(sums, n, out=out, where=plain)
        if need.any():
            present = w > 0
            sums -= self._first_included(present, need, self._desc_idx, self._desc_val)
            sums -= self._first_included(present, need, self._asc_idx, self._asc_val)
            n -= 2.0
            np.divide(sums, n, out=out, where=need)
        return out.reshape(n_rep, self.n_teams, self.n_items)

    def _first_included(self, present: BoolArray, need: BoolArray, order: IndexArray,
                        vals: FloatArray) -> FloatArray:
        """Per (replicate, column) in ``need``: value of the first evaluator in ``order`` present.

        ``present[R, E]`` says which evaluators have w > 0 in each replicate. The
        first ``DENSE_STEPS`` steps run on whole [R, C] arrays (a gather from the
        small ``present`` table and a masked copy); after them about 0.37**4 ≈ 2 %
        of pairs remain, which later steps visit one by one. Termination: a pair
        in ``need`` has n ≥ trim_min > 0, so some valid evaluator is present, and
        valid evaluators come first in ``order``. Pairs outside ``need`` are
        left unspecified (the caller does not read them).
        """
        n_rep, n_eval = present.shape
        n_cols = order.shape[1]
        found = np.empty((n_rep, n_cols))
        if n_eval == 0:
            return found
        found[...] = vals[0]  # step 0 resolves ~63 % of pairs: an unmasked copy is cheaper
        inc = np.take(present, order[0], axis=1)
        unresolved = need & ~inc
        hit = np.empty((n_rep, n_cols), dtype=np.bool_)
        for k in range(1, min(DENSE_STEPS, n_eval)):
            np.take(present, order[k], axis=1, out=inc)
            np.logical_and(unresolved, inc, out=hit)
            np.copyto(found, vals[k], where=hit)
            unresolved ^= hit
        pending = np.flatnonzero(unresolved)
        rows = pending // n_cols
        cols = pending - rows * n_cols
        p_base = rows * n_eval
        present_flat, order_flat = present.ravel(), order.ravel()
        vals_flat, found_flat = vals.ravel(), found.ravel()
        for k in range(DENSE_STEPS, n_eval):
            if pending.size == 0:
                break
            at = k * n_cols + cols
            got = present_flat[p_base + order_flat[at]]
            found_flat[pending[got]] = vals_flat[at[got]]
            keep = ~got
            pending, p_base, cols = pending[keep], p_base[keep], cols[keep]
        if pending.size:
            raise RuntimeError("trimmed mean: a column with enough sheets had no present evaluator")
        return found


def check_points(points: object) -> float:
    """A component's points: a positive finite number."""
    if isinstance(points, bool) or not isinstance(points, int | float | np.floating | np.integer) \
            or not math.isfinite(points) or points <= 0:
        raise KaiError(f"must be a positive number, got {points!r}", where="points")
    return float(points)


def points_from_means(means: FloatArray, item_max: FloatArray, points: float) -> FloatArray:
    """``points × Σ_i means[..., i] / Σ_i item_max[i]``; NaN if any item is NaN.

    Items are added one at a time in rubric order so that the result does not
    depend on how many replicates are stacked in ``means``.
    """
    check_points(points)
    acc = means[..., 0].copy()
    for i in range(1, means.shape[-1]):
        acc += means[..., i]
    result: FloatArray = acc * (float(points) / math.fsum(item_max.tolist()))
    return result


def trimmed_item_means(scores: object, coi: object,
                       trim_min: int = DEFAULT_TRIM_MIN) -> FloatArray:
    """Trimmed mean per (team, item), ``[T, I]``; NaN where no valid sheet exists."""
    matrix = SheetMatrix(scores, coi, trim_min)
    means: FloatArray = matrix.item_means(np.ones((1, matrix.n_evaluators)))[0]
    return means


def committee_points(scores: object, coi: object, item_max: object, points: float,
                     trim_min: int = DEFAULT_TRIM_MIN) -> FloatArray:
    """A committee component's points per team, ``[T]``: NaN if any item is not measured."""
    s, c = check_scores(scores, coi)
    m = check_item_max(item_max, s.shape[2])
    check_range(s, c, m)
    check_points(points)
    return points_from_means(trimmed_item_means(s, c, trim_min), m, points)
