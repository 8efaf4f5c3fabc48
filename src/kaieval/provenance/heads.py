"""Attention heads matched between two models: a reordered copy is still a copy.

Why: reordering attention heads -- the rows of q, k and v head by head and o's columns
with them; with grouped keys and values, whole key/value groups and the query heads
within each group -- leaves a model's function unchanged, like reordering MLP units. So
does a change of basis *inside* a head: v's rows with o's columns (any invertible map),
q's rows with k's (any rotation of each RoPE frequency pair). The component tests
compare tensors in identity order, so an attention copied with its heads reordered read
as co-adapted (the one head that happened to stay in place) or as no evidence at all.

How: each query head h (key/value group g) is described by its two *circuits*, which
every one of those transforms leaves unchanged: the query-key circuit ``Q_hᵀ K_g`` and
the output-value circuit ``O_h V_g``, both over a seeded set of 64 residual coordinates
of the reference's basis (the residual map, :mod:`kaieval.provenance.align`): two
64 x 64 sketches per head. Heads are matched by linear assignment on cosine
similarity, as MLP units are (:mod:`kaieval.provenance.matching`), with the same two
kinds of figure:

* a **test** that survives the search: heads matched once on the query-key circuits and
  once on the output-value circuits, and Spearman's rho between the two matchings says
  whether they agree beyond chance (an independent model's two circuits share no order).
  p from :func:`~kaieval.provenance.matching.rank_log_p`, floored at 1/n! (with four
  heads no agreement can be rarer than 1/24);
* **effect sizes**, never tested (a maximum over permutations is inflated): the mean
  cosine of the matched heads' circuits after one joint matching (``similarity``), and
  the centred r of the sketched tensors with the candidate's heads put in the
  reference's order (``aligned_r``). A similarity of
  :data:`~kaieval.provenance.evidence_kind.IDENTICAL_EFFECT` or more means every head
  computes the same function: copied.

Cost: q, k and v are read at 64 columns and o at 64 rows (whole tensors only where the
residual basis had to be mapped), so a block costs little; it still runs only where it
can change the reading, on an attention that is not the same weights in place and whose
heads look moved (:func:`screen`, on the same rows of o): in a model that already
depends on the reference elsewhere, or -- whatever the rest of the model shows -- where
every head has a strong, distinct match (an attention copied alone and reordered). Where
the residual basis was mapped, heads are matched in a model that depends on the
reference.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from kaieval.errors import KaiError
from kaieval.provenance.align import (
    FloatArray,
    IntArray,
    ResidualMap,
    sketch_coordinates,
    zero_non_finite,
)
from kaieval.provenance.config_triage import read_config
from kaieval.provenance.fused import attention_layout
from kaieval.provenance.lsap import max_assignment
from kaieval.provenance.matching import rank_log_p, unit_rows
from kaieval.provenance.safetensors_io import ModelWeights

PARTS = ("q_proj", "k_proj", "v_proj", "o_proj")
SCREEN_COORDS = 64
"""Residual coordinates of o's rows read by :func:`screen`: enough for each head's
o columns (head_dim x 64 values) to recognise themselves, a few KB per model and block."""


@dataclass(frozen=True)
class Layout:
    """Query heads, key/value heads and the size of each."""

    heads: int
    kv_heads: int
    head_dim: int


@dataclass(frozen=True)
class HeadMatch:
    """One candidate attention against the same block's attention in the reference."""

    layout: Layout
    rho: float  # Spearman rho between the query-key and output-value matchings
    log_p: float  # its one-sided p (natural log), floored at 1/heads!
    similarity: float  # mean matched cosine of both circuits after the joint matching
    aligned_r: float  # mean centred r of the sketched q, k, v, o in the reference's order
    order: tuple[int, ...]  # reference head matched to each candidate query head
    moved: int  # query heads not at their own position

    @property
    def p_value(self) -> float:
        return math.exp(self.log_p)

    def text(self) -> str:
        return (f"heads matched on their query-key and output-value circuits "
                f"({self.layout.heads} query, {self.layout.kv_heads} key/value heads; "
                f"{self.moved} not in their own place): the two matchings agree with rho "
                f"{self.rho:.3f}, log10 p={self.log_p / math.log(10):.1f}; matched circuit "
                f"cosine {self.similarity:.4f}, centred r in the reference's head order "
                f"{self.aligned_r:.4f}")


def layout(weights: ModelWeights) -> Layout | None:
    """Head counts from the model folder's ``config.json``; None where there is none."""
    root = weights.root
    if not root.is_dir() or not (root / "config.json").is_file():
        return None
    try:
        cfg, _ = read_config(root)
    except KaiError:
        return None
    found = attention_layout(cfg)
    return None if found is None else Layout(*found)


def attention_names(names: list[str]) -> dict[str, str] | None:
    """q/k/v/o weight names of one attention component (Llama layout), or None."""
    found = {p: n for n in names for p in PARTS if n.endswith(f".{p}.weight")}
    return found if len(found) == len(PARTS) else None


STRONG_MATCH = 0.5
"""Screen cosine every head must reach with its own, distinct best match for the heads to be
matched even in a model that shows no dependence elsewhere (an attention copied alone,
reordered so that no head stayed in place). Independent heads sit near 0: their o columns
over 64 coordinates are head_dim x 64 >= 1,024 numbers, so |cos| ~ 0.03."""


@dataclass(frozen=True)
class Screen:
    """What a few rows of o say: some head is most like another (``moved``), and every head
    has a distinct best match with cosine >= :data:`STRONG_MATCH` (``strong``)."""

    moved: bool
    strong: bool


def screen(cand: ModelWeights, ref: ModelWeights, o_name: str, ref_o_name: str,
           lay: Layout, seed: int) -> Screen:
    """A cheap screen on 64 rows of o (a few KB per model and block).

    Why: matching heads reads every row of q, k and v (for 64 columns) in both models. A
    fine-tune keeps every head in place (each one most like itself), so this screen spares
    it those reads; a reordered copy, heads whose insides were re-based, or heads trained
    from scratch next to copied blocks are matched.
    """
    ci, ri = cand.tensors[o_name], ref.tensors[ref_o_name]
    if ci.shape != ri.shape or len(ci.shape) != 2 or ci.shape[1] != lay.heads * lay.head_dim:
        return Screen(False, False)
    coords = sketch_coordinates(ci.shape[0], SCREEN_COORDS, seed)
    a = _per_head(cand.block(o_name, coords), lay.heads, rows=False)
    b = _per_head(ref.block(ref_o_name, coords), lay.heads, rows=False)
    sim = a @ b.T
    best = np.argmax(sim, axis=1)
    moved = bool((best != np.arange(lay.heads)).any())
    strong = len(np.unique(best)) == lay.heads and bool(
        (sim[np.arange(lay.heads), best] >= STRONG_MATCH).all())
    return Screen(moved, strong)


def _per_head(x: FloatArray, n: int, rows: bool) -> FloatArray:
    """Unit-length vector per head: its block of rows (q, k, v) or of columns (o)."""
    blocks = x.reshape(n, -1) if rows else np.ascontiguousarray(
        x.reshape(x.shape[0], n, -1).transpose(1, 0, 2)).reshape(n, -1)
    return unit_rows(blocks)


def _order(sim: npt.NDArray[np.floating[Any]]) -> IntArray:
    """The reference head matched to each candidate head."""
    rows, cols = max_assignment(sim)
    out = np.empty(sim.shape[0], dtype=np.intp)
    out[rows] = cols
    return out


def _heads_of(order: IntArray, size: int) -> IntArray:
    """Row indices that put heads in ``order`` (head i's block moves to position order[i])."""
    inverse = np.argsort(order)
    return (inverse[:, None] * size + np.arange(size)[None, :]).ravel()


def _centred_r(x: FloatArray, y: FloatArray) -> float:
    a = zero_non_finite(x).astype(np.float64).ravel()
    b = zero_non_finite(y).astype(np.float64).ravel()
    a -= a.mean()
    b -= b.mean()
    denom = math.sqrt(float(a @ a) * float(b @ b))
    return float(a @ b) / denom if denom else 0.0


@dataclass(frozen=True)
class _Sketch:
    """q, k, v at the sketch's residual columns and o at its rows, in the reference basis."""

    q: FloatArray  # heads*head_dim x k
    k: FloatArray  # kv_heads*head_dim x k
    v: FloatArray  # kv_heads*head_dim x k
    o: FloatArray  # k x heads*head_dim

    def circuits(self, lay: Layout) -> tuple[FloatArray, FloatArray]:
        """Unit-length query-key and output-value circuit per query head (heads x k*k)."""
        n = self.q.shape[1]
        group = lay.heads // lay.kv_heads
        q = self.q.reshape(lay.heads, lay.head_dim, n)
        k = np.repeat(self.k.reshape(lay.kv_heads, lay.head_dim, n), group, axis=0)
        v = np.repeat(self.v.reshape(lay.kv_heads, lay.head_dim, n), group, axis=0)
        o = self.o.reshape(n, lay.heads, lay.head_dim).transpose(1, 0, 2)
        qk = np.matmul(q.transpose(0, 2, 1), k).reshape(lay.heads, -1)
        ov = np.matmul(o, v).reshape(lay.heads, -1)
        return unit_rows(qk.astype(np.float32)), unit_rows(ov.astype(np.float32))


def _sketch(w: ModelWeights, names: dict[str, str], coords: IntArray,
            rmap: ResidualMap | None) -> _Sketch:
    """The sketch of one model's attention; the candidate's through the residual map."""
    if rmap is None:
        return _Sketch(w.block(names["q_proj"], None, coords),
                       w.block(names["k_proj"], None, coords),
                       w.block(names["v_proj"], None, coords), w.block(names["o_proj"], coords))
    cols = rmap.columns(coords)  # cand_dim x k: reference coordinates from the candidate's
    q, k, v = (zero_non_finite(w.load(names[p])) @ cols for p in PARTS[:3])
    return _Sketch(q, k, v, cols.T @ zero_non_finite(w.load(names["o_proj"])))


def _fits(w: ModelWeights, names: dict[str, str], lay: Layout, dim: int) -> bool:
    q_rows, kv_rows = lay.heads * lay.head_dim, lay.kv_heads * lay.head_dim
    want = {"q_proj": (q_rows, dim), "k_proj": (kv_rows, dim), "v_proj": (kv_rows, dim),
            "o_proj": (dim, q_rows)}
    return all(w.tensors[names[p]].shape == shape for p, shape in want.items())


def match_heads(cand: ModelWeights, ref: ModelWeights, names: dict[str, str],
                ref_names: dict[str, str], lay: Layout, rmap: ResidualMap | None, *,
                seed: int) -> HeadMatch | None:
    """Match the candidate's heads with the reference's (same layout), or None if the
    tensors do not have the layout's shapes."""
    ref_o = ref.tensors[ref_names["o_proj"]].shape
    if len(ref_o) != 2:
        return None
    ref_dim = ref_o[0]
    cand_dim = ref_dim if rmap is None else rmap.cand_dim
    if not (_fits(ref, ref_names, lay, ref_dim) and _fits(cand, names, lay, cand_dim)):
        return None
    coords = sketch_coordinates(ref_dim, SCREEN_COORDS, seed)
    xs, ys = _sketch(cand, names, coords, rmap), _sketch(ref, ref_names, coords, None)
    (cqk, cov), (rqk, rov) = xs.circuits(lay), ys.circuits(lay)
    s_qk, s_ov = cqk @ rqk.T, cov @ rov.T
    rho, log_p = rank_log_p(_order(s_qk), _order(s_ov))
    order = _order((s_qk + s_ov) / 2)
    lead = np.arange(lay.heads)
    similarity = float(np.mean([s_qk[lead, order].mean(), s_ov[lead, order].mean()]))
    group = lay.heads // lay.kv_heads
    kv_order = order[::group] // group  # a group goes where its first query head went
    q_idx, kv_idx = _heads_of(order, lay.head_dim), _heads_of(kv_order, lay.head_dim)
    r = float(np.mean([_centred_r(xs.q[q_idx], ys.q), _centred_r(xs.k[kv_idx], ys.k),
                       _centred_r(xs.v[kv_idx], ys.v), _centred_r(xs.o[:, q_idx], ys.o)]))
    return HeadMatch(lay, rho, log_p, similarity, r, tuple(int(i) for i in order),
                     int(np.sum(order != lead)))


def same_layout(a: Layout | None, b: Layout | None) -> Layout | None:
    return a if a is not None and a == b else None
