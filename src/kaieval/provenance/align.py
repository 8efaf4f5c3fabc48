"""Residual-stream alignment: map a candidate's hidden dimensions onto a reference's.

Why: a derived model can hide its parent by a function-preserving permutation (or
rotation) of the residual stream, by extending its vocabulary, or by shrinking its
width. Each leaves the embedding rows of the tokens both vocabularies share as
the parent's rows, transformed by the same map the rest of the network got. So the
map is estimated from those rows only -- never from MLP weights -- which keeps the
hidden-unit tests in :mod:`kaieval.provenance.matching` valid: under Zhu et al.'s
assumption their null holds for any alignment that does not look at MLP hidden-unit
order.

The map ``M`` (candidate dims x reference dims) sends a candidate residual vector
``x`` to ``x @ M`` in the reference's basis. Three kinds:

* ``identity`` -- same basis (also the fallback when no alignment is found and the
  widths are equal: with no evidence of a transformed basis nothing is guessed);
* ``permutation`` -- a signed (partial, when widths differ) assignment found by
  linear assignment on absolute column correlations; "clean" when the median
  matched |r| is at least :data:`CLEAN_CORRELATION`;
* ``procrustes`` -- the orthogonal (semi-orthogonal for different widths) map
  minimising ``|Xc M - Xr|``, used when no clean permutation exists and its fit
  beats a token-shuffle null clearly, or when widths differ and nothing better exists.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, TypeVar

import numpy as np
import numpy.typing as npt

from kaieval.provenance.lsap import max_assignment

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]
_Floats = TypeVar("_Floats", npt.NDArray[np.float32], npt.NDArray[np.float64])

CLEAN_CORRELATION = 0.5
"""Median matched |column correlation| from which an assignment counts as a clean permutation."""

IDENTITY_SHARE = 0.9
"""Share of dimensions mapped to themselves (sign +) for a permutation to count as identity."""

MAX_TOKENS = 4096
"""Shared-token rows used at most (a seeded subsample): twice a 2048 hidden size, which
keeps column correlations' noise near 1/64 and the Procrustes fit well-determined."""

PROCRUSTES_NULL = 3
"""Token-shuffled refits used to judge whether a Procrustes fit is better than chance."""

PROCRUSTES_MIN_FIT = 0.8
"""Linear CKA of the shared-token rows from which a rotation is fitted, trusted and applied.

Why an absolute bar as well as the shuffled-token null: independently *trained*
embeddings share token structure (frequency, co-occurrence), so the true token
pairing beats shuffled pairings by far -- the calibration suite's independent tiny
models had Procrustes fits of 0.29-0.37, "significant" against shuffling -- and a
rotation fitted to that shared structure then made the lm_head of an independent
model correlate (r ≈ 0.36, p ≈ 1e-10). A rotated copy of a real parent has CKA ≈ 1.
CKA (three d x d products) is the gate because it is rotation-invariant and cheap;
the SVD of a 2048-wide cross-covariance took 14 s on the shared 2-core box."""

WEAK_ROTATION_MAX_DIM = 1024
"""Widths up to which a weak rotation is still fitted when widths differ (matching only)."""


@dataclass(frozen=True)
class ResidualMap:
    """How candidate residual dimensions map to the reference's, and how sure we are."""

    kind: Literal["identity", "permutation", "procrustes"]
    cand_dim: int
    ref_dim: int
    score: float  # median matched |r| (permutation/identity) or Procrustes fit in [0, 1]
    tokens: int  # shared-token rows the estimate used (0: none, assumed identity)
    target: IntArray | None = None  # permutation: ref dim of each cand dim, -1 if dropped
    sign: FloatArray | None = None
    matrix: FloatArray | None = None  # procrustes: cand_dim x ref_dim
    note: str = ""

    def columns(self, cols: IntArray) -> FloatArray:
        """The map restricted to reference columns ``cols``: a cand_dim x len(cols) matrix."""
        out = np.zeros((self.cand_dim, len(cols)), dtype=np.float32)
        if self.kind == "procrustes" and self.matrix is not None:
            return np.ascontiguousarray(self.matrix[:, cols])
        where = {int(c): k for k, c in enumerate(cols)}
        if self.kind == "permutation" and self.target is not None and self.sign is not None:
            for i, t in enumerate(self.target):
                k = where.get(int(t))
                if k is not None:
                    out[i, k] = self.sign[i]
            return out
        for c, k in where.items():  # identity
            if c < self.cand_dim:
                out[c, k] = 1.0
        return out

    @property
    def transforms(self) -> bool:
        """Whether same-position tensors should be mapped before comparing.

        Only a clean permutation or a Procrustes fit far above the shuffled-token null
        counts: both only arise when the embeddings themselves are dependent, so for
        independent models nothing is mapped and the unit-permutation nulls stay exact.
        """
        return self.kind == "permutation" or (self.kind == "procrustes" and not self.note)

    def dense(self) -> FloatArray:
        """The full cand_dim x ref_dim matrix."""
        return self.columns(np.arange(self.ref_dim, dtype=np.intp))

    def mapped_shape(self, name: str, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The shape of a candidate tensor once written in the reference's basis."""
        axis = residual_axis(name, shape, self.cand_dim)
        if axis is None:
            return shape
        out = list(shape)
        out[axis] = self.ref_dim
        return tuple(out)

    def apply(self, name: str, x: FloatArray, dense: FloatArray) -> FloatArray:
        """Write a candidate tensor in the reference's residual basis (``dense``: M).

        Linear inputs (q/k/v, gate/up, router, lm_head) become x M, outputs (o, down)
        Mᵀ x; residual-length norm weights take |M| (a sign flip of a residual
        dimension leaves the norm's gain unchanged).
        """
        axis = residual_axis(name, x.shape, self.cand_dim)
        if axis is None:
            return x
        if self.kind == "permutation" and self.target is not None and self.sign is not None:
            keep = self.target >= 0  # a signed permutation: move, don't multiply
            sign = np.abs(self.sign) if x.ndim == 1 else self.sign
            moved = np.zeros(self.mapped_shape(name, x.shape), dtype=np.float32)
            if axis == 0:
                moved[self.target[keep]] = x[keep] * (sign[keep][:, None] if x.ndim == 2
                                                      else sign[keep])
            else:
                moved[:, self.target[keep]] = x[:, keep] * sign[keep]
            return moved
        if x.ndim == 1:
            out: FloatArray = x @ np.abs(dense)
        elif axis == 0:
            out = dense.T @ x
        else:
            out = x @ dense
        return out.astype(np.float32)

    def describe(self) -> str:
        base = {"identity": "identity (same basis)",
                "permutation": "signed permutation of residual dimensions",
                "procrustes": "orthogonal Procrustes rotation"}[self.kind]
        how = (f"from {self.tokens} shared-token embedding rows, score {self.score:.3f}"
               if self.tokens else "no shared-token rows")
        return f"{base}, {self.cand_dim}->{self.ref_dim} dims, {how}" + \
            (f"; {self.note}" if self.note else "")


_OUTPUTS = ("o_proj.weight", "down_proj.weight", "w2.weight", "dense_4h_to_h.weight",
            "out_proj.weight")


def residual_axis(name: str, shape: tuple[int, ...], dim: int) -> int | None:
    """Which axis of a tensor runs over the residual stream (None: none, or unsure)."""
    if len(shape) == 2 and name.endswith(_OUTPUTS) and shape[0] == dim:
        return 0
    if len(shape) == 2 and shape[1] == dim and not name.endswith(_OUTPUTS):
        return 1
    if len(shape) == 1 and shape[0] == dim and "norm" in name:
        return 0
    return None


def identity_map(cand_dim: int, ref_dim: int, note: str = "") -> ResidualMap:
    """The map used when nothing can be estimated: same basis, truncated if widths differ."""
    return ResidualMap("identity", cand_dim, ref_dim, 0.0, 0, note=note)


def zero_non_finite(x: _Floats) -> _Floats:
    """``x`` with NaN and ±inf (a hostile file) as 0; ``x`` itself when all are finite.

    Why not plain ``np.nan_to_num``: it copies the array and makes three passes over it
    on every call, and real weights are finite -- one ``isfinite`` pass settles that.
    Callers must not write into the result.
    """
    if np.isfinite(x).all():
        return x
    out: _Floats = np.nan_to_num(x, nan=0.0, posinf=0.0, neginf=0.0)
    return out


def _standardise(x: FloatArray) -> FloatArray:
    """Columns centred and scaled to unit length (fp32: correlations only pick the map)."""
    v = x.astype(np.float32)
    v -= v.mean(axis=0, keepdims=True)
    norm = np.sqrt(np.einsum("ij,ij->j", v, v))[None, :]
    empty = norm[0] == 0
    v /= np.where(empty[None, :], np.float32(1), norm)  # in place: no zero-filled copy first
    v[:, empty] = 0  # columns of only (signed) zeros come out as +0, as they always did
    return v


def _cka(xc: FloatArray, xr: FloatArray) -> float:
    """Linear CKA of two centred row sets: 1 for a rotated (or scaled) copy, lower otherwise."""
    cross = float(np.linalg.norm(xc.T @ xr)) ** 2
    denom = float(np.linalg.norm(xc.T @ xc)) * float(np.linalg.norm(xr.T @ xr))
    return cross / denom if denom else 0.0


def _rotation(xc: FloatArray, xr: FloatArray) -> FloatArray:
    """The semi-orthogonal M minimising |xc M - xr|_F."""
    u, _, vt = np.linalg.svd(xc.T @ xr, full_matrices=False)
    out: FloatArray = (u @ vt).astype(np.float32)
    return out


def estimate_map(cand_rows: FloatArray, ref_rows: FloatArray, *,
                 rng: np.random.Generator) -> ResidualMap:
    """Estimate the residual map from paired embedding rows (same token in both models).

    ``cand_rows`` is tokens x cand_dim, ``ref_rows`` tokens x ref_dim, row k of both
    being the same token string.
    """
    n, dc = cand_rows.shape
    dr = ref_rows.shape[1]
    cand_rows, ref_rows = zero_non_finite(cand_rows), zero_non_finite(ref_rows)
    if n < 8:
        return identity_map(dc, dr, note=f"only {n} shared tokens, no alignment estimated")
    if n > MAX_TOKENS:
        keep = np.sort(rng.choice(n, MAX_TOKENS, replace=False))
        cand_rows, ref_rows, n = cand_rows[keep], ref_rows[keep], MAX_TOKENS
    zc, zr = _standardise(cand_rows), _standardise(ref_rows)
    corr = zc.T @ zr
    del zc, zr
    # every matched |r| is at most its row's maximum, so when the median row maximum is
    # below the bar no assignment can be clean: skip the O(d³) assignment (slow on the
    # unstructured matrices of independent models)
    row_max = np.abs(corr).max(axis=1) if dc <= dr else np.abs(corr).max(axis=0)
    if float(np.median(row_max)) < CLEAN_CORRELATION:
        rows = cols = np.zeros(0, dtype=np.intp)
        score = float(np.median(row_max))
    else:
        rows, cols = max_assignment(np.abs(corr))
        score = float(np.median(np.abs(corr[rows, cols])))
    if len(rows) and score >= CLEAN_CORRELATION:
        matched = corr[rows, cols]
        target = np.full(dc, -1, dtype=np.intp)
        sign = np.zeros(dc, dtype=np.float32)
        target[rows] = cols
        sign[rows] = np.sign(matched).astype(np.float32)
        fixed = float(np.mean((rows == cols) & (matched > 0)))
        if dc == dr and fixed >= IDENTITY_SHARE:
            return ResidualMap("identity", dc, dr, score, n)
        return ResidualMap("permutation", dc, dr, score, n, target=target, sign=sign)
    xc = (cand_rows - cand_rows.mean(axis=0)).astype(np.float32)
    xr = (ref_rows - ref_rows.mean(axis=0)).astype(np.float32)
    fit = _cka(xc, xr)
    bar = PROCRUSTES_MIN_FIT
    if fit > bar:  # the shuffled-token null matters only above the absolute bar
        null = [_cka(xc[rng.permutation(n)], xr) for _ in range(PROCRUSTES_NULL)]
        bar = max(float(np.mean(null)) + 5.0 * float(np.std(null)) + 0.05, bar)
    if fit > bar or (dc != dr and min(dc, dr) <= WEAK_ROTATION_MAX_DIM):
        note = "" if fit > bar else (f"CKA {fit:.3f} below the bar {bar:.3f}: weak; widths "
                                     "differ, so used for hidden-unit matching only")
        return ResidualMap("procrustes", dc, dr, fit, n, matrix=_rotation(xc, xr), note=note)
    return ResidualMap("identity", dc, dr, score, n,
                       note=f"no clean permutation (median |r| {score:.2f}) and CKA "
                            f"{fit:.3f} below the bar {bar:.3f} (the larger of {PROCRUSTES_MIN_FIT}"
                            " and a shuffled-token null)" + ("; widths differ, truncated"
                                                             if dc != dr else ""))


def sketch_coordinates(ref_dim: int, k: int, seed: int) -> IntArray:
    """A seeded, sorted subset of reference residual coordinates (all when ref_dim <= k).

    Cosines over a random coordinate subset estimate full cosines of dense weight
    vectors; this bounds the cost of unit matching at large widths.
    """
    if ref_dim <= k:
        return np.arange(ref_dim, dtype=np.intp)
    return np.sort(np.random.default_rng([seed, ref_dim, k]).choice(ref_dim, k, replace=False))

