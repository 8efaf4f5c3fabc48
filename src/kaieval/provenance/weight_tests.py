"""Weight-level independence tests: exact reuse, centred correlation, norms, embeddings.

Why these and not raw similarity: under the null hypothesis (the candidate's
weights were initialised independently of the reference's) any raw similarity
number must be compared with what independent models give.

* Matrices: centred Pearson r over all n elements. At initialisation r ≈ N(0, 1/n)
  (p = erfc(|r|·√n/√2), reported as ``iid_log_p``), but *trained* matrices of
  independent models share low-rank structure, so that null is anti-conservative.
  The decision uses the permutation distribution of r over one model's units
  (hidden units / residual dimensions), which is exact under Zhu et al.'s
  exchangeability assumption and computed in closed form.
* Vectors (norms, biases): a seeded element-permutation null. Norm weights start
  at 1.0, so their *raw* cosine is ≈ 1 for any two models; it is reported only
  for context.

p-values are carried as natural logs as well, because a real fine-tune gives
p far below the smallest double (Zhu et al. report 2.2e-308, i.e. underflow).
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt
from scipy.special import gammaln, log_ndtr, logsumexp

from kaieval.provenance.safetensors_io import ModelWeights
from kaieval.provenance.vocab import SharedRows
from kaieval.safetensors_header import FLOAT_DTYPES, TensorInfo

UNIT_CLT_MIN = 32
"""From this many permuted units on, the unit-permutation null uses its normal limit."""

CHUNK = 1 << 22
"""Elements per float64 block when correlating large tensors (32 MB per operand)."""

MAX_NULL_UNITS = 512
"""Permuted units (columns of C = XᵀY) used at most: a seeded subset above this."""

MAX_NULL_ROWS = 2048
"""Rows of the non-permuted axis used at most: a seeded subset above this.

Why: C costs rows x units² multiply-adds in float64; a 2048-wide Linear of a 2 GB model
would cost ~47 GFLOP per tensor. A data-independent (seeded) sub-matrix of
exchangeable units is itself exchangeable, so the null stays exact; only power drops,
and a derived model's r ≈ 1 over 10⁶ elements stays far beyond any threshold.
"""

MIN_HASH_NUMEL = 64
"""Tensors smaller than this, or constant, are too uninformative to call an exact copy."""

NORM_EXPLANATION = ("raw cosine of norm weights is not evidence: norm weights start at 1.0, "
                    "so any two models' norms have raw cosine near 1; only the centred "
                    "correlation, against a permutation null, is")


@dataclass(frozen=True)
class CorrelationResult:
    """One tensor pair's centred correlation and its p-value under independence."""

    name: str
    test: Literal["correlation", "norm_correlation", "embedding_shared_vocab"]
    n: int
    r: float  # effect size: centred Pearson correlation
    statistic: float  # z = r·√n
    log_p: float  # natural log of the two-sided p-value
    method: Literal["unit_clt", "unit_permutation", "permutation"]
    permutations: int = 0
    raw_cosine: float | None = None
    shared_fraction: float | None = None
    iid_log_p: float | None = None  # the i.i.d.-element null, for comparison only
    subsample: tuple[int, int] | None = None  # (rows, units) when a seeded sub-matrix was used

    @property
    def p_value(self) -> float:
        return math.exp(self.log_p)


@dataclass(frozen=True)
class FisherResult:
    """Fisher's combination of independent p-values: X = -2 Σ ln p ~ χ²(2k) under H0."""

    statistic: float
    df: int
    log_p: float

    @property
    def p_value(self) -> float:
        return math.exp(self.log_p)


@dataclass(frozen=True)
class ExactMatch:
    """A candidate tensor byte-identical (dtype, shape, bytes) to a reference tensor."""

    candidate: str
    reference: str
    digest: str


def log10(log_p: float) -> float:
    return log_p / math.log(10)


def tensor_hash(weights: ModelWeights, name: str) -> str | None:
    """Canonical hash of (dtype, shape, bytes); None for constant or tiny tensors.

    A tensor of all ones or zeros is "identical" across every model that uses
    the same initialisation, so such matches are not evidence and are skipped.
    """
    info = weights.tensors[name]
    if info.numel < MIN_HASH_NUMEL:
        return None
    h = hashlib.sha256(f"{info.dtype}|{list(info.shape)}|".encode())
    item = info.nbytes // max(info.numel, 1)
    first: bytes | None = None
    constant = True
    for chunk in weights.chunks(name):
        h.update(chunk)
        if constant and len(chunk):
            arr = np.frombuffer(chunk, dtype=np.uint8).reshape(-1, item)
            first = first if first is not None else arr[0].tobytes()
            ref = np.frombuffer(first, dtype=np.uint8)
            # a short prefix settles it for any real weight matrix; full check only if needed
            constant = bool((arr[:256] == ref).all()) and bool((arr == ref).all())
    if constant:
        return None
    _hash_scale(h, weights, info)
    return "sha256:" + h.hexdigest()


def _hash_scale(h: hashlib._Hash, weights: ModelWeights, info: TensorInfo) -> None:
    """An FP8 weight's scale is part of its value: equal codes with other scales differ."""
    if info.scale is not None:
        h.update(f"|scale {info.scale.dtype} {list(info.scale.shape)} {info.scale_block}|"
                 .encode())
        h.update(weights.load_info(info.scale).tobytes())


def hash_index(weights: ModelWeights, names: Iterable[str] | None = None) -> dict[str, str]:
    """Tensor name -> canonical hash, for the informative tensors."""
    out: dict[str, str] = {}
    for n in weights.names() if names is None else names:
        digest = tensor_hash(weights, n)
        if digest is not None:
            out[n] = digest
    return out


QUICK_BYTES = 1 << 16
"""Bytes hashed from each end of a tensor by :func:`quick_hash`."""


def quick_hash(weights: ModelWeights, name: str) -> str | None:
    """Hash of (dtype, shape, first and last 64 KiB): a prefilter for exact reuse, never evidence.

    Why: hashing every byte of two 2 GB models costs more than reading them once more.
    A byte-identical tensor has an identical quick hash, so only tensors whose quick
    hashes collide across the two models need the full :func:`tensor_hash`.
    """
    info = weights.tensors[name]
    if info.numel < MIN_HASH_NUMEL:
        return None
    raw = weights.raw(name)
    h = hashlib.sha256(f"{info.dtype}|{list(info.shape)}|{info.nbytes}|".encode())
    h.update(np.ascontiguousarray(raw[:QUICK_BYTES]).data)
    h.update(np.ascontiguousarray(raw[-QUICK_BYTES:]).data)
    _hash_scale(h, weights, info)
    return "quick:" + h.hexdigest()


def quick_index(weights: ModelWeights) -> dict[str, str]:
    """Tensor name -> quick hash, for every tensor large enough to hash."""
    out: dict[str, str] = {}
    for n in weights.names():
        digest = quick_hash(weights, n)
        if digest is not None:
            out[n] = digest
    return out


def collisions(candidate: dict[str, str], reference: dict[str, str],
               ) -> tuple[list[str], list[str]]:
    """Names on each side whose quick hash also occurs on the other side."""
    both = set(candidate.values()) & set(reference.values())
    return ([n for n, q in sorted(candidate.items()) if q in both],
            [n for n, q in sorted(reference.items()) if q in both])


def exact_reuse(candidate: dict[str, str], reference: dict[str, str]) -> list[ExactMatch]:
    """Candidate tensors identical to some reference tensor, matched by hash whatever the name."""
    by_hash: dict[str, str] = {}
    for name, digest in sorted(reference.items()):
        by_hash.setdefault(digest, name)
    return [ExactMatch(n, by_hash[d], d) for n, d in sorted(candidate.items()) if d in by_hash]


def _centred(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float64] | None:
    v = x.astype(np.float64).reshape(-1)
    v -= v.mean()
    norm = float(np.sqrt(v @ v))
    return None if norm == 0.0 or not math.isfinite(norm) else v / norm


def comparable(weights: ModelWeights, name: str) -> bool:
    """Whether a tensor can enter a correlation test (a float dtype with elements)."""
    info = weights.tensors[name]
    return info.dtype in FLOAT_DTYPES and info.numel > 1


def _perm_log_p(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], r: float,
                rng: np.random.Generator, permutations: int) -> float:
    """Two-sided permutation p = (1 + #{|r_π| ≥ |r|}) / (T + 1), in natural log."""
    hits = 0
    chunk = max(1, min(permutations, (1 << 22) // max(len(a), 1)))
    done = 0
    while done < permutations:
        k = min(chunk, permutations - done)
        perm = rng.permuted(np.broadcast_to(a, (k, len(a))), axis=1)
        hits += int((np.abs(perm @ b) >= abs(r) - 1e-12).sum())
        done += k
    return math.log((1 + hits) / (permutations + 1))


def iid_log_p(r: float, n: int) -> float:
    """log of erfc(|r|·√n/√2): the i.i.d.-element null, exact only for untrained init.

    Reported alongside, never decided on: trained matrices share low-rank
    structure (token frequency, outlier dimensions), so independently trained
    models give |r|·√n far beyond N(0, 1) -- the demo's independent lm_heads gave
    r = -0.013 over 189k elements, "p = 1e-8" under this null.
    """
    return min(0.0, math.log(2.0) + float(log_ndtr(-abs(r) * math.sqrt(n))))


def _matrix(x: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    """2-D view whose columns are the units permuted by the null (the input features of a
    Linear weight: residual dimensions or hidden units; for embeddings, hidden dimensions)."""
    if x.ndim == 2:
        return x
    if x.shape[-1] >= UNIT_CLT_MIN:
        return x.reshape(-1, x.shape[-1])
    return x.reshape(x.shape[0], -1).T  # e.g. conv kernels: permute output channels


@dataclass(frozen=True)
class NullPlan:
    """Which elements of a 2-D tensor the unit-permutation null correlates.

    Drawn from the shape and a seeded generator only (never from the data), so a
    reader can fetch just ``tensor[rows][:, cols]`` and get the same result as the
    whole tensor would, bit for bit.
    """

    rows: npt.NDArray[np.intp]  # indices along axis 0 of the tensor as stored
    cols: npt.NDArray[np.intp]  # indices along axis 1
    transposed: bool  # the permuted units are the stored rows (axis 0)
    cut: bool  # a seeded sub-matrix of a larger tensor


def plan_null(shape: tuple[int, ...], *, rows_exchangeable: bool,
              rng: np.random.Generator, max_rows: int = MAX_NULL_ROWS,
              max_units: int = MAX_NULL_UNITS) -> NullPlan:
    """The sub-matrix and orientation :func:`_unit_null` uses for a 2-D ``shape``.

    The permuted units are the columns, or the rows when they are exchangeable and
    fewer (a down projection's residual dimensions). Above :data:`MAX_NULL_UNITS`
    units or :data:`MAX_NULL_ROWS` rows (or the given caps: a fingerprint keeps less) a
    seeded subset of each is kept.
    """
    if len(shape) != 2:
        raise ValueError(f"plan_null needs a 2-D shape, got {shape}")
    r, c = shape
    transposed = rows_exchangeable and r < c
    m, d = (c, r) if transposed else (r, c)
    cut = d > max_units or m > max_rows
    if cut:
        keep_r = _seeded_subset(rng, m, max_rows)
        keep_c = _seeded_subset(rng, d, max_units)
    else:
        keep_r, keep_c = np.arange(m, dtype=np.intp), np.arange(d, dtype=np.intp)
    rows, cols = (keep_c, keep_r) if transposed else (keep_r, keep_c)
    return NullPlan(rows, cols, transposed, cut)


def _unit_null(x: npt.NDArray[np.float32], y: npt.NDArray[np.float32], *,
               rows_exchangeable: bool, rng: np.random.Generator,
               permutations: int, plan: NullPlan | None = None,
               ) -> tuple[float, float, float, str, tuple[int, int] | None, int] | None:
    """Centred r and its null under a random permutation of one model's units.

    Independent initialisations are exchangeable under permutations of hidden
    units and residual dimensions (Zhu et al.'s assumption), so the permutation
    distribution of S(π) = Σ_j C[j, π(j)], C = XᵀY over the permuted axis, is an
    exact null that keeps whatever structure the rows share. Its mean and variance
    are closed-form (Hoeffding's combinatorial CLT); with fewer than 32 units a
    Monte Carlo permutation p-value is used. Large matrices are cut to a seeded
    sub-matrix (:func:`plan_null`); with ``plan`` the caller has already read just
    that sub-matrix (``x[plan.rows][:, plan.cols]``). Returns (r, z, log p, method,
    (rows, units) of the sub-matrix or None, elements correlated).
    """
    if plan is None:
        mx, my = _matrix(x), _matrix(y)
        plan = plan_null(mx.shape, rows_exchangeable=rows_exchangeable, rng=rng)
        if plan.cut:
            mx, my = mx[np.ix_(plan.rows, plan.cols)], my[np.ix_(plan.rows, plan.cols)]
    else:
        mx, my = x, y
    if plan.transposed:
        mx, my = mx.T, my.T
    sub: tuple[int, int] | None = (mx.shape[0], mx.shape[1]) if plan.cut else None
    m, d = mx.shape
    if d < 2:
        return None
    ax, ay = float(mx.mean(dtype=np.float64)), float(my.mean(dtype=np.float64))
    c = np.zeros((d, d), dtype=np.float64)
    sxx = syy = 0.0
    step = max(1, CHUNK // d)
    for i in range(0, m, step):
        # float32 products (half the memory traffic of float64 and SIMD-wide GEMM), summed
        # into float64 chunk by chunk: the chunk is short, so rounding stays ~1e-6 relative.
        # centred copies in one pass each (subtracting writes the copy; same float32 values)
        a = np.subtract(mx[i:i + step], np.float32(ax), dtype=np.float32)
        b = np.subtract(my[i:i + step], np.float32(ay), dtype=np.float32)
        sxx += float(np.einsum("ij,ij->", a, a, dtype=np.float64))
        syy += float(np.einsum("ij,ij->", b, b, dtype=np.float64))
        c += (a.T @ b).astype(np.float64)
    denom = math.sqrt(sxx * syy)
    if denom == 0.0 or not math.isfinite(denom) or not np.isfinite(c).all():
        return None
    obs = float(np.trace(c))
    r = max(-1.0, min(1.0, obs / denom))
    mean = float(c.sum()) / d
    dev = c - c.mean(axis=1, keepdims=True) - c.mean(axis=0, keepdims=True) + c.mean()
    var = float(np.einsum("ij,ij->", dev, dev)) / (d - 1)
    if var <= 0.0:
        return None
    z = (obs - mean) / math.sqrt(var)
    if d >= UNIT_CLT_MIN:
        return (r, z, min(0.0, math.log(2.0) + float(log_ndtr(-abs(z)))), "unit_clt", sub,
                m * d)
    idx = rng.permuted(np.broadcast_to(np.arange(d), (permutations, d)), axis=1)
    sims = c[np.arange(d)[None, :], idx].sum(axis=1)
    hits = int((np.abs(sims - mean) >= abs(obs - mean) * (1 - 1e-12)).sum())
    return r, z, math.log((1 + hits) / (permutations + 1)), "unit_permutation", sub, m * d


def _seeded_subset(rng: np.random.Generator, n: int, k: int) -> npt.NDArray[np.intp]:
    """All of range(n), or a sorted seeded subset of k (data-independent, so nulls hold)."""
    if n <= k:
        return np.arange(n, dtype=np.intp)
    return np.sort(rng.choice(n, k, replace=False)).astype(np.intp)


def correlation_test(name: str, x: npt.NDArray[np.float32], y: npt.NDArray[np.float32], *,
                     rng: np.random.Generator, permutations: int = 999,
                     norm: bool = False, rows_exchangeable: bool = True,
                     plan: NullPlan | None = None) -> CorrelationResult | None:
    """Centred Pearson r of two same-shape tensors with its p-value; None if constant/non-finite.

    Vectors (norms, biases) use an element permutation null; ``norm=True`` adds the
    raw cosine for context. Matrices use the unit-permutation null of
    :func:`_unit_null`; ``rows_exchangeable=False`` (embedding rows are tokens, not
    units) keeps the permuted axis on the columns. ``plan`` says ``x`` and ``y`` are
    already the planned sub-matrix (read by :meth:`ModelWeights.block`, see
    :func:`plan_null`).
    """
    n = x.size
    if norm or x.ndim < 2:
        a, b = _centred(x), _centred(y)
        if a is None or b is None:
            return None
        r = float(np.clip(a @ b, -1.0, 1.0))
        raw = None
        if norm:
            xf, yf = x.astype(np.float64).ravel(), y.astype(np.float64).ravel()
            denom = float(np.linalg.norm(xf) * np.linalg.norm(yf))
            raw = float(xf @ yf / denom) if denom else None
        return CorrelationResult(name, "norm_correlation" if norm else "correlation", n, r,
                                 r * math.sqrt(n), _perm_log_p(a, b, r, rng, permutations),
                                 "permutation", permutations, raw, iid_log_p=iid_log_p(r, n))
    got = _unit_null(x, y, rows_exchangeable=rows_exchangeable, rng=rng,
                     permutations=permutations, plan=plan)
    if got is None:
        return None
    r, z, log_p, method, sub, used = got
    return CorrelationResult(name, "correlation", used, r, z, log_p,
                             method,  # type: ignore[arg-type]
                             permutations if method == "unit_permutation" else 0,
                             iid_log_p=iid_log_p(r, used), subsample=sub)


def compare_tensor(candidate: ModelWeights, reference: ModelWeights, name: str, *,
                   rng: np.random.Generator, permutations: int = 999,
                   norm: bool = False, rows_exchangeable: bool = True,
                   ) -> CorrelationResult | None:
    """Load one same-name tensor from each model (two tensors in memory), test, release."""
    return correlation_test(name, candidate.load(name), reference.load(name), rng=rng,
                            permutations=permutations, norm=norm,
                            rows_exchangeable=rows_exchangeable)


def embedding_test(candidate: ModelWeights, reference: ModelWeights, name: str,
                   ref_name: str, rows: SharedRows, *, rng: np.random.Generator,
                   permutations: int = 999,
                   transform: Callable[[npt.NDArray[np.float32]], npt.NDArray[np.float32]]
                   | None = None) -> CorrelationResult | None:
    """Centred correlation of the embedding rows of tokens both vocabularies contain.

    ``transform`` writes the candidate's rows in the reference's residual basis first
    (see :meth:`kaieval.provenance.align.ResidualMap.apply`).
    """
    if rows.count == 0:
        return None
    keep = _seeded_subset(rng, rows.count, MAX_NULL_ROWS)  # read only the rows tested
    crows = candidate.rows(name, rows.candidate[keep])
    res = correlation_test(name, crows if transform is None else transform(crows),
                           reference.rows(ref_name, rows.reference[keep]), rng=rng,
                           permutations=permutations, rows_exchangeable=False)
    if res is None:
        return None
    sub = res.subsample
    if len(keep) < rows.count:
        sub = (sub[0] if sub else len(keep), sub[1] if sub else crows.shape[1])
    return CorrelationResult(res.name, "embedding_shared_vocab", res.n, res.r, res.statistic,
                             res.log_p, res.method, res.permutations,
                             shared_fraction=rows.fraction, iid_log_p=res.iid_log_p,
                             subsample=sub)


def fisher_combine(log_ps: Sequence[float]) -> FisherResult:
    """Fisher's method on natural-log p-values, with an exact log survival function.

    For even df = 2k, P(χ² > X) = e^{-X/2} Σ_{j<k} (X/2)^j / j!, so the log is
    computed without underflow however small the combined p-value is.
    """
    k = len(log_ps)
    if k == 0:
        raise ValueError("fisher_combine needs at least one p-value")
    x = -2.0 * float(sum(log_ps))
    half = x / 2.0
    if half == 0.0:
        return FisherResult(0.0, 2 * k, 0.0)
    j = np.arange(k, dtype=np.float64)
    log_p = -half + float(logsumexp(j * math.log(half) - gammaln(j + 1)))
    return FisherResult(x, 2 * k, min(log_p, 0.0))


def holm(log_ps: Sequence[float], alpha: float) -> list[bool]:
    """Holm's step-down rejections at family-wise level ``alpha`` (inputs as natural logs)."""
    m = len(log_ps)
    order = sorted(range(m), key=lambda i: log_ps[i])
    reject = [False] * m
    for rank, i in enumerate(order):
        if log_ps[i] <= math.log(alpha / (m - rank)):
            reject[i] = True
        else:
            break
    return reject
