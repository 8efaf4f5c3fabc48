"""Attention heads matched between two models: a head-permuted copy is still a copy.

Why: reordering attention heads -- the rows of q, k and v head by head and o's columns
with them; with grouped keys and values, whole key/value groups and the query heads
within each group -- leaves a model's function unchanged, like reordering MLP units.
The component tests compare tensors in identity order, so an attention copied with its
heads reordered read as co-adapted (the one head that happened to stay in place) or as
no evidence at all.

How: each head is described by its block of q rows, k rows, v rows and o columns, in
the reference's residual basis (the residual map, :mod:`kaieval.provenance.align`).
Heads are matched by linear assignment on cosine similarity, as MLP units are
(:mod:`kaieval.provenance.matching`), with the same two kinds of figure:

* a **test** that survives the search: the query heads are matched once on q and once on
  o, the key/value heads once on k and once on v, and Spearman's rho between the two
  matchings says whether they agree beyond chance (an independent model's q and o, or
  k and v, share no order). p from :func:`~kaieval.provenance.matching.rank_log_p`,
  floored at 1/n! (with four heads no agreement can be rarer than 1/24), Bonferroni over
  the two;
* **effect sizes**, never tested (a maximum over permutations is inflated): the mean
  cosine of the matched heads over the four tensors after one joint matching, and the
  centred r of the tensors with the candidate's heads put in the reference's order. At
  :data:`~kaieval.provenance.evidence_kind.IDENTICAL_EFFECT` or more the attention is
  the same weights in another order: copied.

Cost: the four tensors of both models are read whole, so this runs only where it can
change the reading: in a model that already depends on the reference elsewhere, on an
attention that is not byte-identical in place and whose heads look reordered
(:func:`looks_reordered`, a screen on a few rows of o), or whenever the residual basis
had to be mapped.
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
from kaieval.provenance.lsap import max_assignment
from kaieval.provenance.matching import rank_log_p, unit_rows
from kaieval.provenance.safetensors_io import ModelWeights

PARTS = ("q_proj", "k_proj", "v_proj", "o_proj")
SCREEN_COORDS = 64
"""Residual coordinates of o's rows read by :func:`looks_reordered`: enough for each head's
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
    rho_q_o: float
    rho_k_v: float | None  # None with fewer than 4 key/value heads (no rank test)
    log_p: float  # Bonferroni minimum of the agreement tests (natural log)
    similarity: float  # mean matched cosine over q, k, v, o after the joint matching
    aligned_r: float  # mean centred r of the four tensors in the reference's head order
    order: tuple[int, ...]  # reference head matched to each candidate query head
    moved: int  # query heads not at their own position

    @property
    def p_value(self) -> float:
        return math.exp(self.log_p)

    def text(self) -> str:
        kv = "" if self.rho_k_v is None else f", k/v matchings rho {self.rho_k_v:.3f}"
        return (f"heads matched ({self.layout.heads} query, {self.layout.kv_heads} key/value "
                f"heads; {self.moved} not in their own place): q/o matchings rho "
                f"{self.rho_q_o:.3f}{kv}, log10 p={self.log_p / math.log(10):.1f}; matched "
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
    heads, kv = cfg.get("num_attention_heads"), cfg.get("num_key_value_heads")
    hidden, head_dim = cfg.get("hidden_size"), cfg.get("head_dim")
    kv = heads if kv is None else kv
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0
               for v in (heads, kv)):
        return None
    assert isinstance(heads, int) and isinstance(kv, int)
    if head_dim is None and isinstance(hidden, int) and hidden % heads == 0:
        head_dim = hidden // heads
    if not isinstance(head_dim, int) or isinstance(head_dim, bool) or head_dim <= 0 \
            or heads % kv:
        return None
    return Layout(heads, kv, head_dim)


def attention_names(names: list[str]) -> dict[str, str] | None:
    """q/k/v/o weight names of one attention component (Llama layout), or None."""
    found = {p: n for n in names for p in PARTS if n.endswith(f".{p}.weight")}
    return found if len(found) == len(PARTS) else None


def looks_reordered(cand: ModelWeights, ref: ModelWeights, o_name: str, ref_o_name: str,
                    lay: Layout, seed: int) -> bool:
    """A cheap screen on a few rows of o: is some candidate head most like another head?

    Why: matching heads reads q, k, v and o of both models whole. A fine-tune keeps every
    head in place (each one most like itself), so this screen spares it that read; a
    reordered copy, or heads trained from scratch next to copied blocks, are matched.
    """
    ci, ri = cand.tensors[o_name], ref.tensors[ref_o_name]
    if ci.shape != ri.shape or len(ci.shape) != 2 or ci.shape[1] != lay.heads * lay.head_dim:
        return False
    coords = sketch_coordinates(ci.shape[0], SCREEN_COORDS, seed)
    a = _per_head(cand.block(o_name, coords), lay.heads, rows=False)
    b = _per_head(ref.block(ref_o_name, coords), lay.heads, rows=False)
    return bool((np.argmax(a @ b.T, axis=1) != np.arange(lay.heads)).any())


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


def match_heads(cand: ModelWeights, ref: ModelWeights, names: dict[str, str],
                ref_names: dict[str, str], lay: Layout, rmap: ResidualMap | None,
                ) -> HeadMatch | None:
    """Match the candidate's heads with the reference's (same layout), or None if the
    tensors do not have the layout's shapes."""
    dense = rmap.dense() if rmap is not None and rmap.transforms else None
    q_rows, kv_rows = lay.heads * lay.head_dim, lay.kv_heads * lay.head_dim
    want = {"q_proj": (q_rows, None), "k_proj": (kv_rows, None), "v_proj": (kv_rows, None),
            "o_proj": (None, q_rows)}
    xs: dict[str, FloatArray] = {}
    ys: dict[str, FloatArray] = {}
    for part, (rows, cols) in want.items():
        x = cand.load(names[part])
        if rmap is not None and dense is not None:
            x = rmap.apply(names[part], x, dense)
        y = ref.load(ref_names[part])
        if x.shape != y.shape or x.ndim != 2 or (rows is not None and x.shape[0] != rows) \
                or (cols is not None and x.shape[1] != cols):
            return None
        xs[part], ys[part] = x, y
    per = {p: (_per_head(xs[p], n, p != "o_proj"), _per_head(ys[p], n, p != "o_proj"))
           for p, n in (("q_proj", lay.heads), ("k_proj", lay.kv_heads),
                        ("v_proj", lay.kv_heads), ("o_proj", lay.heads))}
    sims = {p: a @ b.T for p, (a, b) in per.items()}
    rho_qo, lp_qo = rank_log_p(_order(sims["q_proj"]), _order(sims["o_proj"]))
    rho_kv: float | None = None
    lps = [lp_qo]
    if lay.kv_heads >= 4:
        rho_kv, lp_kv = rank_log_p(_order(sims["k_proj"]), _order(sims["v_proj"]))
        lps.append(lp_kv)
    log_p = min(0.0, min(lps) + math.log(len(lps)))
    q_order = _order((sims["q_proj"] + sims["o_proj"]) / 2)
    kv_order = _order((sims["k_proj"] + sims["v_proj"]) / 2)
    cos = [float(np.mean(sims[p][np.arange(len(o)), o]))
           for p, o in (("q_proj", q_order), ("k_proj", kv_order), ("v_proj", kv_order),
                        ("o_proj", q_order))]
    q_idx, kv_idx = _heads_of(q_order, lay.head_dim), _heads_of(kv_order, lay.head_dim)
    aligned = {"q_proj": xs["q_proj"][q_idx], "k_proj": xs["k_proj"][kv_idx],
               "v_proj": xs["v_proj"][kv_idx], "o_proj": xs["o_proj"][:, q_idx]}
    r = float(np.mean([_centred_r(aligned[p], ys[p]) for p in PARTS]))
    return HeadMatch(lay, rho_qo, rho_kv, log_p, float(np.mean(cos)), r,
                     tuple(int(i) for i in q_order),
                     int(np.sum(q_order != np.arange(lay.heads))))


def same_layout(a: Layout | None, b: Layout | None) -> Layout | None:
    return a if a is not None and a == b else None

