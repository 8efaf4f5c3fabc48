"""Depth, width and mixture-of-experts search: which reference MLP seeded which candidate MLP.

Why: derived models change shape. Pruning drops blocks (or hidden units),
depth up-scaling duplicates blocks, layer splicing inserts fresh ones, and
upcycling turns a dense MLP into several experts initialised from it. Comparing
block i only with block i misses all of these. So every candidate MLP ("site":
a dense MLP or one expert) is tested first against the reference site at the
same position (the "diagonal"), and -- when that is absent or not significant --
against every reference site: a cheap screening pass (a few units, argmax
instead of assignment) picks the best reference site, which then gets the full
test of :func:`kaieval.provenance.matching.match`.

Validity: the searched p-value is multiplied by the number of reference sites
searched (Bonferroni for picking the best), and a site tested both ways reports
twice the smaller p-value. Unit widths may differ (a shrunk intermediate size is
a rectangular assignment); residual widths are handled by the residual map.

Memory: candidate sketches are small (<= UNIT_CAP units x sketch) and kept; each
reference site is sketched when visited and released, so the reference is read
once per pass (at most three passes: diagonal, screening, confirmation).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from kaieval.provenance.align import MAX_TOKENS, ResidualMap, estimate_map, identity_map
from kaieval.provenance.fingerprint import Reference
from kaieval.provenance.matching import (
    MatchResult,
    MlpSite,
    UnitSketch,
    candidate_sketch,
    describe,
    match,
    read_rows,
    unit_subsample,
)
from kaieval.provenance.safetensors_io import ModelWeights
from kaieval.provenance.tensor_groups import EMBEDDINGS, component_of
from kaieval.provenance.vocab import shared_rows
from kaieval.provenance.workers import ordered_map, thread_count

SCREEN_UNITS = 128
"""Candidate units used in the screening pass of the block search."""


@dataclass(frozen=True)
class SiteFinding:
    """The evidence for one candidate MLP site against one reference."""

    block: int
    expert: int | None
    label: str
    result: MatchResult | None  # the pair reported (None: nothing comparable)
    log_p: float
    route: str  # "diagonal", "search" or "diagonal+search"
    searched: int  # reference sites the search considered (Bonferroni factor)
    ref_site: MlpSite | None = None

    @property
    def source(self) -> str | None:
        return None if self.result is None else self.result.reference

    def text(self) -> str:
        if self.result is None:
            return f"cand {self.label}: no reference MLP comparable"
        how = {"diagonal": "same position",
               "search": f"best of {self.searched} reference MLPs, p x {self.searched}",
               "diagonal+search": f"best of same position and a search over {self.searched} "
                                  "reference MLPs, p x 2"}[self.route]
        return f"{describe(self.result)} [{how}]"


def _same(c: UnitSketch, r: MlpSite) -> bool:
    return c.block == r.block and c.expert == r.expert


def _screen_view(c: UnitSketch, units: int) -> UnitSketch:
    if len(c.units) <= units:
        return c
    step = len(c.units) / units
    pick = (np.arange(units) * step).astype(np.intp)
    return UnitSketch(c.label, c.block, c.expert, c.units[pick], c.total_units,
                      {p: v[pick] for p, v in c.parts.items()})


def search_sites(cand: Sequence[UnitSketch], ref_sites: Sequence[MlpSite],
                 load_ref: Callable[[MlpSite], UnitSketch], *, alpha: float,
                 screen_units: int = SCREEN_UNITS,
                 prefetch: Callable[[MlpSite], None] | None = None) -> list[SiteFinding]:
    """Map every candidate site to its best reference site, with a valid p-value.

    ``prefetch(site)`` (optional) is told which reference site comes next, so its
    bytes can be read from disk while the current pair is matched.
    """
    by_pos = {(s.block, s.expert): s for s in ref_sites}
    pairs = [(i, rs) for i, c in enumerate(cand)
             if (rs := diagonal_site(c, by_pos)) is not None]
    threads = thread_count()

    def diagonal(k: int) -> MatchResult:
        """Candidate site ``pairs[k]`` against the reference site at its position."""
        if prefetch is not None and k + threads < len(pairs):
            prefetch(pairs[k + threads][1])
        i, rs = pairs[k]
        return match(cand[i], load_ref(rs))

    # sites are independent: matched on every core, results in order (workers.py)
    diag = dict(zip([i for i, _ in pairs], ordered_map(diagonal, range(len(pairs))),
                    strict=True))
    return search_rest(cand, ref_sites, load_ref, diag, alpha=alpha,
                       screen_units=screen_units)


def diagonal_site(c: UnitSketch, by_pos: dict[tuple[int, int | None], MlpSite],
                  ) -> MlpSite | None:
    """The reference site at the candidate site's position, if it has units."""
    rs = by_pos.get((c.block, c.expert))
    return rs if rs is not None and rs.units > 0 else None


def search_rest(cand: Sequence[UnitSketch], ref_sites: Sequence[MlpSite],
                load_ref: Callable[[MlpSite], UnitSketch], diag: dict[int, MatchResult], *,
                alpha: float, screen_units: int = SCREEN_UNITS) -> list[SiteFinding]:
    """:func:`search_sites` once the diagonal matches (``diag``: site index -> result) are in.

    Sites with no significant diagonal match are screened against every reference site
    and confirmed against the best; every site then gets its finding and p-value.
    """
    log_alpha = math.log(alpha)
    by_pos = {(s.block, s.expert): s for s in ref_sites}
    need = [i for i in range(len(cand)) if i not in diag or diag[i].log_p > log_alpha]
    best: dict[int, MatchResult] = {}
    picked: dict[int, MlpSite] = {}
    if need and ref_sites:
        views = [_screen_view(cand[i], screen_units) for i in need]

        def screen_column(rs: MlpSite) -> list[float]:
            r = load_ref(rs)
            return [match(v, r, fast=True).log_p for v in views]

        screen = np.array(ordered_map(screen_column, ref_sites)).T.reshape(
            len(need), len(ref_sites))
        pick = {i: int(np.argmin(screen[k])) for k, i in enumerate(need)}
        picked.update({i: ref_sites[j] for i, j in pick.items()})

        def confirm(j: int) -> list[tuple[int, MatchResult]]:
            r = load_ref(ref_sites[j])
            return [(i, match(cand[i], r)) for i, jj in pick.items() if jj == j]

        for found in ordered_map(confirm, sorted(set(pick.values()))):
            best.update(found)
    n_ref = len(ref_sites)
    out: list[SiteFinding] = []
    for i, c in enumerate(cand):
        d, s = diag.get(i), best.get(i)
        if d is None and s is None:
            out.append(SiteFinding(c.block, c.expert, c.label, None, 0.0, "diagonal", 0))
            continue
        if s is None:
            assert d is not None
            out.append(SiteFinding(c.block, c.expert, c.label, d, d.log_p, "diagonal", 1,
                                   by_pos[(c.block, c.expert)]))
            continue
        lp_s = min(0.0, s.log_p + math.log(n_ref))
        if d is None:
            out.append(SiteFinding(c.block, c.expert, c.label, s, lp_s, "search", n_ref,
                                   picked[i]))
            continue
        two = math.log(2.0)
        if d.log_p <= lp_s:
            out.append(SiteFinding(c.block, c.expert, c.label, d, min(0.0, d.log_p + two),
                                   "diagonal+search", n_ref, by_pos[(c.block, c.expert)]))
        else:
            out.append(SiteFinding(c.block, c.expert, c.label, s, min(0.0, lp_s + two),
                                   "diagonal+search", n_ref, picked[i]))
    return out


def block_mapping(findings: Sequence[SiteFinding], log_threshold: float) -> list[str]:
    """Readable lines "cand block 3 <- ref block 1" for the significant sites."""
    return [f"cand {f.label} <- ref {f.source}" for f in findings
            if f.result is not None and f.log_p <= log_threshold]


def expert_kinship(cand: Sequence[UnitSketch]) -> list[tuple[str, str, float]]:
    """Experts of one block tested against each other: (expert, expert, log p).

    Experts upcycled from one dense MLP share its units in the same order, so the
    identity-order test finds them; independently initialised experts do not.
    """
    out: list[tuple[str, str, float]] = []
    blocks: dict[int, list[UnitSketch]] = {}
    for c in cand:
        if c.expert is not None:
            blocks.setdefault(c.block, []).append(c)
    for group in blocks.values():
        for a in range(len(group)):
            for b in range(a + 1, len(group)):
                x, y = group[a], group[b]
                if len(x.units) == len(y.units) and np.array_equal(x.units, y.units):
                    out.append((x.label, y.label, match(x, y).log_p))
    return out


Vocabs = tuple[dict[str, int], dict[str, int]]


def residual_map(cand: ModelWeights, ref: Reference, vocabs: Vocabs | None, cand_dim: int,
                  ref_dim: int, seed: int) -> ResidualMap:
    """Estimate the residual map from the embedding rows of shared tokens (see align.py).

    Rows pair by token string when both tokenizers are known; without tokenizers,
    same-size vocabularies pair id for id; otherwise nothing is guessed (identity).
    """
    def emb(w: ModelWeights, dim: int) -> str | None:
        return next((n for n in w.names() if component_of(n) == EMBEDDINGS
                     and len(w.tensors[n].shape) == 2 and w.tensors[n].shape[1] == dim), None)

    cn, rn = emb(cand, cand_dim), emb(ref.weights, ref_dim)
    if cn is None or rn is None:
        return identity_map(cand_dim, ref_dim, note="no embedding matrix to align with")
    crows, rrows = cand.tensors[cn].shape[0], ref.weights.tensors[rn].shape[0]
    if vocabs is not None:
        rows = shared_rows(vocabs[0], vocabs[1], candidate_rows=crows, reference_rows=rrows)
        ci, ri = rows.candidate, rows.reference
    elif crows == rrows:  # no tokenizers: same-size vocabularies are taken id for id
        ci = ri = np.arange(crows, dtype=np.intp)
    else:
        return identity_map(cand_dim, ref_dim,
                            note="no readable tokenizer pair (any format) to align rows")
    rng = np.random.default_rng([seed, len(ci)])
    if len(ci) > MAX_TOKENS:
        keep = np.sort(rng.choice(len(ci), MAX_TOKENS, replace=False))
        ci, ri = ci[keep], ri[keep]
    x, y = ordered_map(lambda job: read_rows(*job),  # both models' rows read at once
                       [(cand, cn, ci), (ref.weights, rn, ri)])
    return estimate_map(x, y, rng=rng)


@dataclass
class SitePlan:
    """One reference's MLP matching, split into per-site tasks and a final search.

    Why split: each candidate site's sketch and its same-position (diagonal) match need
    only that block's tensors, so :func:`kaieval.provenance.verdict.check_independence`
    runs them as the disk delivers each block, on the same threads as the component
    tests, instead of waiting for every MLP of both models before testing anything.
    :meth:`site` is that task; :meth:`finish` takes every site's result (in site order)
    and runs the search for the sites whose diagonal match was not significant. The
    results are those of :func:`search_sites` on the same sketches, bit for bit.
    """

    cand: ModelWeights
    ref: Reference
    rmap: ResidualMap
    coords: npt.NDArray[np.intp]
    sites: list[MlpSite]  # the candidate's, of the residual width mapped
    ref_sites: list[MlpSite]
    seed: int
    alpha: float

    def diagonal(self, i: int) -> MlpSite | None:
        """The reference site candidate site ``i`` is matched with first, if any."""
        site = self.sites[i]
        by_pos = {(s.block, s.expert): s for s in self.ref_sites}
        rs = by_pos.get((site.block, site.expert))
        return rs if rs is not None and rs.units > 0 else None

    def tensors(self, i: int) -> tuple[list[str], list[str]]:
        """The candidate's and reference's tensors :meth:`site` reads (for read-ahead)."""
        rs = self.diagonal(i)
        return (list(self.sites[i].parts.values()),
                [] if rs is None or self.ref.fingerprint else list(rs.parts.values()))

    def site(self, i: int) -> tuple[UnitSketch, MatchResult | None]:
        """Candidate site ``i`` sketched, and matched with the reference site at its position."""
        site = self.sites[i]
        sk = candidate_sketch(self.cand, site, self.rmap, self.coords,
                              unit_subsample(site, self.seed))
        rs = self.diagonal(i)
        load = self.ref.sketch_loader(self.coords)
        return sk, None if rs is None else match(sk, load(rs))

    def finish(self, done: Sequence[tuple[UnitSketch, MatchResult | None]],
               ) -> tuple[list[SiteFinding], list[tuple[str, str, float]]]:
        """Every site's finding (searching where the diagonal was not significant) and
        the candidate's expert-to-expert kinship tests."""
        sketches = [sk for sk, _ in done]
        diag = {i: d for i, (_, d) in enumerate(done) if d is not None}
        found = search_rest(sketches, self.ref_sites, self.ref.sketch_loader(self.coords),
                            diag, alpha=self.alpha)
        return found, expert_kinship(sketches)


def plan_matching(cand: ModelWeights, cand_sites: list[MlpSite], ref: Reference,
                  vocabs: Vocabs | None, seed: int, alpha: float) -> SitePlan | None:
    """Align the residual stream (reads the shared tokens' embedding rows) and plan the
    MLP matching; None when either model has no MLP."""
    if not cand_sites or not ref.sites:
        return None
    cand_dim, ref_dim = cand_sites[0].dim, ref.sites[0].dim
    rmap = residual_map(cand, ref, vocabs, cand_dim, ref_dim, seed)
    return SitePlan(cand, ref, rmap, ref.coords(ref_dim, seed),
                    [s for s in cand_sites if s.dim == cand_dim],
                    [s for s in ref.sites if s.dim == ref_dim], seed, alpha)


def match_reference(cand: ModelWeights, cand_sites: list[MlpSite], ref: Reference,
                vocabs: Vocabs | None, seed: int, alpha: float,
                ) -> tuple[ResidualMap | None, list[SiteFinding], list[tuple[str, str, float]]]:
    """Align the residual stream, then match every candidate MLP against the reference's.

    Returns the map (None when either model has no MLP), one finding per candidate MLP
    site, and the candidate's expert-to-expert kinship tests.
    """
    plan = plan_matching(cand, cand_sites, ref, vocabs, seed, alpha)
    if plan is None:
        return None, [], []
    threads = thread_count()

    def site(i: int) -> tuple[UnitSketch, MatchResult | None]:
        if i + threads < len(plan.sites):  # the disk reads an MLP ahead while this one runs
            ahead_c, ahead_r = plan.tensors(i + threads)
            cand.prefetch(ahead_c)
            ref.weights.prefetch(ahead_r)
        return plan.site(i)

    found, kin = plan.finish(ordered_map(site, range(len(plan.sites))))
    return plan.rmap, found, kin
