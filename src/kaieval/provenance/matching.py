"""Hidden-unit matching between two MLPs, after Zhu et al. (ICML 2025), on weights only.

Why: training is equivariant to permutations of MLP hidden units, so a derived
model keeps its parent's units -- possibly in another order -- and an independent
one keeps nothing. Each hidden unit is described by its gate row, up row and down
column, written in the *reference's* residual basis (see
:mod:`kaieval.provenance.align`) and restricted to a seeded subset of residual
coordinates (a sketch). Units are matched by linear assignment on cosine similarity.

Two statistics per MLP pair, each with its p-value:

* ``identity`` (Zhu's ϕ_U): Spearman ρ between the candidate unit indices and the
  reference indices they were matched to. Under H0 (independent initialisation,
  exchangeable hidden units) the matching is a uniformly random injection, so ρ
  follows the null of a rank correlation: p from Student's t with n-2 df
  (one-sided: derivation gives ρ > 0). Exact in Zhu's constrained setting. A
  fine-tune keeps the identity order (ρ ≈ 1); a pruned (shrunk) MLP keeps it too.
* ``gate_up`` (Zhu's ϕ_MATCH on weights): units are matched once on gate rows and
  once on up rows; ρ between the two matchings. A function-preserving permutation
  of hidden units moves gate and up together, so a permuted-then-fine-tuned model
  still gives ρ ≈ 1 although it fails the identity order. Not exact: it assumes an
  independent model's gate and up matchings do not agree beyond chance, which Zhu
  et al. found empirically (141 independent pairs roughly uniform); our calibration
  suite measures it. Without a gate (non-GLU MLPs) up and down are used.

The pair's p-value is the Bonferroni minimum of the two (valid if each is). The mean
matched cosine is reported as an effect size only: LAP-maximised cosine is inflated
even for independent models, so it is never compared with a fixed threshold.

Cost is bounded: at most :data:`UNIT_CAP` candidate units (a seeded subsample,
recorded) are matched against all reference units over at most :data:`SKETCH_DIM`
residual coordinates per part; subsampling the candidate side keeps both tests
valid (a random subset of a random injection is a random injection).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.special import betaln, gammaln, stdtr

from kaieval.provenance.align import FloatArray, IntArray, ResidualMap, zero_non_finite
from kaieval.provenance.lsap import max_assignment
from kaieval.provenance.safetensors_io import ModelWeights
from kaieval.safetensors_header import FLOAT_DTYPES

UNIT_CAP = 256
"""Candidate hidden units matched per MLP at most (seeded subsample above this)."""

SKETCH_DIM = 256
"""Residual coordinates per part (gate, up, down) at most (seeded subset above this)."""

PARTS = ("gate", "up", "down")
_PART_NAMES = {"gate_proj": "gate", "w1": "gate", "up_proj": "up", "w3": "up",
               "down_proj": "down", "w2": "down"}
_SITE = re.compile(r"^(?P<prefix>(?:.*\.)?(?:layers|h|blocks|block|layer)\.(?P<block>\d+)\..*?)"
                   r"(?P<part>gate_proj|up_proj|down_proj|w1|w2|w3)\.weight$")
_EXPERT = re.compile(r"experts\.(\d+)\.")


@dataclass(frozen=True)
class MlpSite:
    """One MLP (dense, or one expert of a mixture) and the tensors that make it."""

    prefix: str
    block: int
    expert: int | None
    parts: dict[str, str]  # part -> tensor name (gate optional)
    units: int
    dim: int

    @property
    def label(self) -> str:
        return f"block {self.block}" + (f" expert {self.expert}" if self.expert is not None
                                        else "")


def find_sites(weights: ModelWeights) -> list[MlpSite]:
    """Every MLP of a model whose up and down projections are 2-D float tensors."""
    found: dict[str, dict[str, str]] = {}
    blocks: dict[str, int] = {}
    for name in weights.names():
        if "/" in name:
            continue
        m = _SITE.match(name)
        if m is None:
            continue
        info = weights.tensors[name]
        if info.dtype not in FLOAT_DTYPES or len(info.shape) != 2:
            continue
        found.setdefault(m["prefix"], {})[_PART_NAMES[m["part"]]] = name
        blocks[m["prefix"]] = int(m["block"])
    sites: list[MlpSite] = []
    for prefix, parts in found.items():
        if "up" not in parts or "down" not in parts:
            continue
        units, dim = weights.tensors[parts["up"]].shape
        if weights.tensors[parts["down"]].shape != (dim, units):
            continue
        if "gate" in parts and weights.tensors[parts["gate"]].shape != (units, dim):
            del parts["gate"]
        e = _EXPERT.search(prefix)
        sites.append(MlpSite(prefix, blocks[prefix], int(e.group(1)) if e else None, parts,
                             units, dim))
    return sorted(sites, key=lambda s: (s.block, -1 if s.expert is None else s.expert))


@dataclass(frozen=True)
class UnitSketch:
    """Unit-normalised feature vectors of (some of) one MLP's hidden units, per part."""

    label: str
    block: int
    expert: int | None
    units: IntArray  # which hidden units (indices in their own model), sorted
    total_units: int
    parts: dict[str, FloatArray]  # part -> len(units) x k, rows of unit norm


def unit_rows(x: FloatArray) -> FloatArray:
    """Rows scaled to unit length; non-finite entries (a hostile file) count as 0."""
    x = zero_non_finite(x)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    empty = norm[:, 0] == 0
    out = x / np.where(empty[:, None], np.float32(1), norm)  # no zeros_like pass first
    out[empty] = 0  # rows of only (signed) zeros come out as +0, as they always did
    return out.astype(np.float32, copy=False)


def unit_subsample(site: MlpSite, seed: int, cap: int = UNIT_CAP) -> IntArray:
    """The candidate units matched: all, or a seeded sorted subsample of ``cap``."""
    if site.units <= cap:
        return np.arange(site.units, dtype=np.intp)
    # seeded by width only: every expert of a block gets the same units, so experts can
    # be compared with each other unit for unit (see layers.expert_kinship)
    rng = np.random.default_rng([seed, site.units])
    return np.sort(rng.choice(site.units, cap, replace=False))


def read_rows(weights: ModelWeights, name: str, index: IntArray) -> FloatArray:
    """Selected rows of a 2-D tensor as fp32 (:meth:`ModelWeights.block`: ``pread`` spans).

    Why not the memory map: faulting scattered rows in through a map makes the kernel
    map whole 64 KiB windows around each row, so 4096 rows of a 32000-row embedding
    leave the whole tensor resident -- twice, for two models -- and break the memory
    bound.
    """
    return weights.block(name, index)


def columns(weights: ModelWeights, name: str, cols: IntArray) -> FloatArray:
    """Selected columns of a 2-D tensor as fp32, converting only those elements."""
    return weights.block(name, None, cols)


def candidate_sketch(weights: ModelWeights, site: MlpSite, rmap: ResidualMap,
                     coords: IntArray, units: IntArray) -> UnitSketch:
    """Candidate units mapped into the reference basis, restricted to ``coords``."""
    cols = rmap.columns(coords)  # cand_dim x k
    parts: dict[str, FloatArray] = {}
    for part, name in site.parts.items():
        raw = columns(weights, name, units).T if part == "down" else read_rows(weights, name, units)
        vecs = zero_non_finite(raw) @ cols  # down: dim x units
        parts[part] = unit_rows(vecs.astype(np.float32))
    return UnitSketch(site.label, site.block, site.expert, units, site.units, parts)


def reference_sketch(weights: ModelWeights, site: MlpSite, coords: IntArray) -> UnitSketch:
    """All reference units over the reference coordinates ``coords``."""
    parts: dict[str, FloatArray] = {}
    for part, name in site.parts.items():
        down = part == "down"  # down is dim x units: its rows are residual coordinates
        vecs = read_rows(weights, name, coords).T if down else columns(weights, name, coords)
        parts[part] = unit_rows(vecs)
    return UnitSketch(site.label, site.block, site.expert,
                      np.arange(site.units, dtype=np.intp), site.units, parts)


@dataclass(frozen=True)
class MatchResult:
    """One candidate MLP against one reference MLP."""

    candidate: str
    reference: str
    matched: int  # unit pairs in the assignment
    candidate_units: int  # subsample size actually matched (of total_units)
    total_units: int
    rho_identity: float
    log_p_identity: float
    rho_gate_up: float | None
    agreement: float | None  # share of units the two part-wise matchings map alike
    log_p_gate_up: float | None
    mean_similarity: float
    log_p: float  # Bonferroni min of the two tests (natural log)

    @property
    def p_value(self) -> float:
        return math.exp(self.log_p)


def rank_log_p(x: npt.NDArray[np.intp], y: npt.NDArray[np.intp]) -> tuple[float, float]:
    """Spearman ρ of two integer sequences (no ties) and its one-sided log p (t, n-2 df).

    The t approximation is floored at 1/n!, the exact permutation p-value of a perfect
    order: no ordering of n units can be rarer than that, so the reported p never
    claims more than the exact test could (for n = 256, log10 p >= -507).
    """
    n = len(x)
    if n < 4:
        return 0.0, 0.0
    rx = np.argsort(np.argsort(x)).astype(np.float64)
    ry = np.argsort(np.argsort(y)).astype(np.float64)
    rx -= rx.mean()
    ry -= ry.mean()
    denom = math.sqrt(float(rx @ rx) * float(ry @ ry))
    rho = float(rx @ ry) / denom if denom else 0.0
    r = max(-1.0 + 1e-12, min(rho, 1.0 - 1e-12))  # a perfectly reversed order too
    tstat = r * math.sqrt((n - 2) / (1.0 - r * r))
    df = n - 2
    sf = float(stdtr(df, -tstat))  # scipy.special, not scipy.stats: 0.9 s less import time
    lp = math.log(sf) if sf > 0.0 else -math.inf
    if not math.isfinite(lp):  # far tail: sf ~ I_x(df/2, 1/2) / 2 with x = df / (df + t^2)
        a = df / 2.0
        lp = (math.log(0.5) + a * math.log(df / (df + tstat * tstat)) - math.log(a)
              - float(betaln(a, 0.5)))
    return rho, min(0.0, max(lp, -float(gammaln(n + 1))))


def match(cand: UnitSketch, ref: UnitSketch, *, fast: bool = False) -> MatchResult:
    """Match candidate units to reference units and test the matching (see module doc).

    ``fast`` uses per-unit argmax instead of linear assignment (a screening pass for
    the block search: duplicates possible, statistics approximate).
    """
    shared = [p for p in PARTS if p in cand.parts and p in ref.parts]
    sims: dict[str, FloatArray] = {p: (cand.parts[p] @ ref.parts[p].T).astype(np.float32,
                                                                           copy=False)
                                   for p in shared}
    total: FloatArray = np.zeros((len(cand.units), len(ref.units)), dtype=np.float32)
    for v in sims.values():
        total += v
    total /= max(len(sims), 1)

    def assign(s: FloatArray) -> tuple[IntArray, IntArray]:
        if fast:
            return np.arange(s.shape[0], dtype=np.intp), np.argmax(s, axis=1).astype(np.intp)
        return max_assignment(s)

    rows, cols = assign(total)
    rho_id, lp_id = rank_log_p(cand.units[rows], ref.units[cols])
    mean_sim = float(total[rows, cols].mean()) if len(rows) else 0.0
    pair = ("gate", "up") if "gate" in shared else ("up", "down")
    rho_gu = agree = lp_gu = None
    if all(p in sims for p in pair):
        r1, c1 = assign(sims[pair[0]])
        r2, c2 = assign(sims[pair[1]])
        a = np.full(len(cand.units), -1, dtype=np.intp)
        b = np.full(len(cand.units), -1, dtype=np.intp)
        a[r1], b[r2] = c1, c2
        both = (a >= 0) & (b >= 0)
        rho_gu, lp_gu = rank_log_p(a[both], b[both])
        agree = float(np.mean(a[both] == b[both])) if both.any() else 0.0
    log_p = lp_id if lp_gu is None else min(0.0, min(lp_id, lp_gu) + math.log(2.0))
    return MatchResult(cand.label, ref.label, len(rows), len(cand.units), cand.total_units,
                       rho_id, lp_id, rho_gu, agree, lp_gu, mean_sim, log_p)


def describe(res: MatchResult) -> str:
    """One readable clause for the evidence detail."""
    sub = (f"{res.candidate_units} of {res.total_units} units (seeded subsample)"
           if res.candidate_units < res.total_units else f"{res.matched} units")
    gu = "" if res.rho_gate_up is None else (
        f", gate/up matchings agree on {res.agreement:.0%} (rho {res.rho_gate_up:.3f}, "
        f"log10 p={(res.log_p_gate_up or 0.0) / math.log(10):.1f})")
    return (f"cand {res.candidate} <- ref {res.reference}: {sub}, identity-order rho "
            f"{res.rho_identity:.3f} (log10 p={res.log_p_identity / math.log(10):.1f}){gu}, "
            f"mean matched cosine {res.mean_similarity:.3f}")
