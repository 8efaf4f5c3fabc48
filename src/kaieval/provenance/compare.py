"""One reference compared with the candidate: MLP matching and component tests, pipelined.

Why a module of its own: this is the streaming part of ``kai provenance`` -- what is read,
in which order, on which thread -- while :mod:`kaieval.provenance.verdict` decides and
words the verdict from what it returns.

Order of work (:func:`compare_reference`): one task list for the thread pool
(:func:`kaieval.provenance.workers.after_imap`), in the order the weight files hold the
tensors. First the residual map (the shared tokens' embedding rows and an assignment over
the hidden size: the longest serial step), then per block its MLP sites (sketch and
same-position match, :class:`~kaieval.provenance.layers.SitePlan`), which wait for the
map, and its components' tests, which do not. So on a cold page cache every core works on
the blocks the disk has delivered, instead of the tests waiting for the map and then for
every MLP of both models to be matched.

The component tests are run *speculatively*, with no residual map applied and no block
moved. Once every site is matched, the block search
(:meth:`~kaieval.provenance.layers.SitePlan.finish`) may move a block and the map may
transform the residual basis; only the components this changes are tested again (all of
them when the map transforms, else those with a tensor in a moved block). Every test
draws from its own seeded generator (:func:`tensor_rng`), and a test that maps nothing
computes exactly what it would with a map that does not transform, so the results are
the same, bit for bit, as testing after the map and the search, in any order or thread
count.
"""

from __future__ import annotations

import functools
import math
import re
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from kaieval.provenance import weight_tests as tw
from kaieval.provenance.align import FloatArray, ResidualMap, residual_axis
from kaieval.provenance.evidence_kind import IDENTICAL_EFFECT
from kaieval.provenance.fingerprint import SUB, Reference, StoredSub
from kaieval.provenance.heads import (
    HeadMatch,
    attention_names,
    layout,
    match_heads,
    same_layout,
    screen,
)
from kaieval.provenance.layers import SiteFinding, SitePlan, plan_matching
from kaieval.provenance.matching import MatchResult, MlpSite, UnitSketch
from kaieval.provenance.safetensors_io import ModelWeights
from kaieval.provenance.tensor_groups import EMBEDDINGS, HEAD, NORMS, is_norm
from kaieval.provenance.vocab import shared_rows
from kaieval.provenance.workers import after_imap, ordered_map, thread_count

_BLOCK_NO = re.compile(r"(?:^|\.)(?:layers|h|blocks|block|layer)\.(\d+)\.")


@dataclass
class Finding:
    """What one candidate component showed against one reference."""

    reference: str
    component: str
    results: list[tw.CorrelationResult] = field(default_factory=list)
    copies: list[tw.ExactMatch] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    fisher: tw.FisherResult | None = None
    significant: bool = False
    sites: list[SiteFinding] = field(default_factory=list)
    compared_block: int | None = None  # reference block compared with, when not the same
    basis: str | None = None  # residual map applied to the candidate's tensors, if any
    kinship: list[str] = field(default_factory=list)
    copied_parameters: int = 0  # the candidate's parameters in byte-identical tensors
    heads: HeadMatch | None = None  # attention heads matched (see kaieval.provenance.heads)

    @property
    def comparable(self) -> bool:
        return bool(self.results or self.copies or self.matched)

    @property
    def matched(self) -> list[SiteFinding]:
        return [s for s in self.sites if s.result is not None]

    @property
    def match_log_p(self) -> float | None:
        lps = [s.log_p for s in self.matched]
        if not lps:
            return None
        return lps[0] if len(lps) == 1 else tw.fisher_combine(lps).log_p

    @property
    def aligned_similarity(self) -> float | None:
        """Mean matched cosine after aligning heads or MLP units (the weakest site's)."""
        if self.heads is not None:
            return self.heads.similarity
        sims = [s.result.mean_similarity for s in self.matched if s.result is not None]
        return min(sims) if sims else None

    @property
    def aligned_copy(self) -> bool:
        """The same weights with heads or units reordered (a function-preserving copy)."""
        sim = self.aligned_similarity
        return sim is not None and sim >= IDENTICAL_EFFECT

    @property
    def log_p(self) -> float | None:
        """The component's p-value: Fisher of correlations, Bonferroni with the matchings."""
        lps = [lp for lp in (self.fisher.log_p if self.fisher else None, self.match_log_p,
                             self.heads.log_p if self.heads else None)
               if lp is not None]
        if not lps:
            return None
        return lps[0] if len(lps) == 1 else min(0.0, min(lps) + math.log(len(lps)))

    @property
    def derived(self) -> bool:
        return bool(self.copies) or self.significant or self.aligned_copy


def tensor_rng(seed: int, reference: str, name: str) -> np.random.Generator:
    """Per-tensor generator: results do not depend on the order tensors are visited."""
    return np.random.default_rng([seed, zlib.crc32(reference.encode()), zlib.crc32(name.encode())])


def _ref_name(name: str, blocks: dict[int, int]) -> str:
    """The reference tensor compared with ``name``: same name, in the mapped block if any."""
    m = _BLOCK_NO.search(name)
    if m is None or int(m.group(1)) not in blocks:
        return name
    return name[:m.start(1)] + str(blocks[int(m.group(1))]) + name[m.end(1):]


def _load_pair(cand: ModelWeights, ref: ModelWeights, name: str, rname: str,
               rng: np.random.Generator, rmap: ResidualMap | None, *,
               rows_exchangeable: bool = True,
               ) -> tuple[FloatArray, FloatArray, tw.NullPlan | None]:
    """Both tensors as fp32 -- for a matrix, only the part its test will correlate.

    A 2-D tensor with no residual map is read as the seeded sub-matrix of
    :func:`tw.plan_null` (at most ``MAX_NULL_ROWS`` x ``MAX_NULL_UNITS``), which is
    returned with it: the test's result is the one the whole tensor would give, at the
    cost of reading and converting ~1 M elements per side whatever the model size.
    With a residual map the residual axis must stay whole for the map to act on, so
    each other axis longer than ``MAX_NULL_ROWS`` keeps a seeded subset and the test
    cuts again after mapping.
    """
    info = cand.tensors[name]
    if len(info.shape) != 2:
        return cand.load(name), ref.load(rname), None
    if rmap is None:
        plan = tw.plan_null(info.shape, rows_exchangeable=rows_exchangeable, rng=rng)
        return (cand.block(name, plan.rows, plan.cols), ref.block(rname, plan.rows, plan.cols),
                plan)
    if max(info.shape) <= tw.MAX_NULL_ROWS:
        return cand.load(name), ref.load(rname), None
    raxis = residual_axis(name, info.shape, rmap.cand_dim)
    keep = [None if n <= tw.MAX_NULL_ROWS or axis == raxis
            else np.sort(rng.choice(n, tw.MAX_NULL_ROWS, replace=False)).astype(np.intp)
            for axis, n in enumerate(info.shape)]
    return cand.block(name, *keep), ref.block(rname, *keep), None


def _stored_sub_test(cand: ModelWeights, ref: ModelWeights, name: str, rname: str,
                     sub: StoredSub, mapped: bool, rng: np.random.Generator,
                     permutations: int, skipped: list[str]) -> tw.CorrelationResult | None:
    """Correlate the candidate's elements at a fingerprint's stored sub-matrix positions."""
    shape = cand.tensors[name].shape
    if mapped:
        skipped.append(f"{name} (the fingerprint keeps a sub-matrix; the residual map needs "
                       "the whole residual axis)")
        return None
    if shape != sub.shape:
        skipped.append(f"{name} (shapes {list(shape)} vs {list(sub.shape)})")
        return None
    if not tw.comparable(cand, name):
        skipped.append(f"{name} (not a float tensor)")
        return None
    x = cand.block(name, sub.plan.rows, sub.plan.cols)
    res = tw.correlation_test(name, x, ref.load(f"{SUB}{rname}"), rng=rng,
                              permutations=permutations, plan=sub.plan)
    if res is None:
        skipped.append(f"{name} (constant or non-finite)")
    return res


def compare_component(cand: ModelWeights, ref: ModelWeights, ref_name: str, component: str,
                      names: list[str], vocabs: tuple[dict[str, int], dict[str, int]] | None,
                      seed: int, permutations: int, blocks: dict[int, int] | None = None,
                      rmap: ResidualMap | None = None,
                      subs: dict[str, StoredSub] | None = None) -> Finding:
    """Every same-name tensor of one component, streamed two tensors at a time.

    ``blocks`` (candidate block -> reference block, from the MLP block search) sends a
    moved block's tensors to the reference block that seeded it. ``rmap`` (when it
    :attr:`~ResidualMap.transforms`) writes candidate tensors in the reference's
    residual basis first -- except the embeddings, whose rows estimated the map.
    ``subs`` (a fingerprint's stored sub-matrices) stand in for reference tensors that
    are not stored whole: the candidate's same elements are read and tested.
    """
    f = Finding(ref_name, component)
    mapped = rmap is not None and rmap.transforms and component != EMBEDDINGS
    dense = rmap.dense() if mapped and rmap is not None else None
    for name in names:
        rname = _ref_name(name, blocks or {})
        if rname != name:
            m = _BLOCK_NO.search(rname)
            f.compared_block = int(m.group(1)) if m else None
        if subs and rname in subs and rname not in ref.tensors:
            got = _stored_sub_test(cand, ref, name, rname, subs[rname], dense is not None,
                                   tensor_rng(seed, ref_name, name), permutations, f.skipped)
            if got is not None:
                f.results.append(got)
            continue
        if rname not in ref.tensors:
            f.skipped.append(f"{name} (absent)")
            continue
        if not (tw.comparable(cand, name) and tw.comparable(ref, rname)):
            f.skipped.append(f"{name} (not a float tensor)")
            continue
        ci, ri = cand.tensors[name], ref.tensors[rname]
        rng = tensor_rng(seed, ref_name, name)
        res: tw.CorrelationResult | None
        if component in (EMBEDDINGS, HEAD) and len(ci.shape) == 2 and len(ri.shape) == 2:
            rows = None if vocabs is None else shared_rows(
                vocabs[0], vocabs[1], candidate_rows=ci.shape[0], reference_rows=ri.shape[0])
            xform = None
            cshape: tuple[int, ...] = ci.shape
            if rmap is not None and dense is not None:
                xform = functools.partial(rmap.apply, name, dense=dense)
                cshape = rmap.mapped_shape(name, ci.shape)
                f.basis = rmap.kind
            if cshape == ri.shape and (rows is None or rows.identical):
                x, y, plan = _load_pair(cand, ref, name, rname, rng, rmap if xform else None,
                                        rows_exchangeable=False)
                res = tw.correlation_test(name, x if xform is None else xform(x), y, rng=rng,
                                          permutations=permutations, rows_exchangeable=False,
                                          plan=plan)
            elif rows is None or cshape[1] != ri.shape[1]:
                why = ("no readable tokenizer pair (any format) to align rows" if rows is None
                       else "hidden sizes differ")
                f.skipped.append(f"{name} (shapes {list(ci.shape)} vs {list(ri.shape)}, {why})")
                continue
            else:
                res = tw.embedding_test(cand, ref, name, rname, rows, rng=rng,
                                        permutations=permutations, transform=xform)
        elif dense is None and ci.shape != ri.shape:
            f.skipped.append(f"{name} (shapes {list(ci.shape)} vs {list(ri.shape)})")
            continue
        elif rmap is not None and dense is not None:
            if rmap.mapped_shape(name, ci.shape) != ri.shape:
                f.skipped.append(f"{name} (shapes {list(ci.shape)} vs {list(ri.shape)} in the "
                                 "reference basis)")
                continue
            f.basis = rmap.kind
            x, y, _ = _load_pair(cand, ref, name, rname, rng, rmap)
            res = tw.correlation_test(name, rmap.apply(name, x, dense), y, rng=rng,
                                      permutations=permutations, norm=is_norm(name))
        else:
            norm = is_norm(name)
            x, y, plan = (_load_pair(cand, ref, name, rname, rng, None) if not norm
                          else (cand.load(name), ref.load(rname), None))
            res = tw.correlation_test(name, x, y, rng=rng, permutations=permutations,
                                      norm=norm, plan=plan)
        if res is None:
            f.skipped.append(f"{name} (constant or non-finite)")
        else:
            f.results.append(res)
    if f.results:
        f.fisher = tw.fisher_combine([r.log_p for r in f.results])
    return f



Vocabs = tuple[dict[str, int], dict[str, int]]


@dataclass(frozen=True)
class _Sites:
    """What :func:`schedule` needs of a plan before its residual map exists: the sites."""

    sites: list[MlpSite]


Task = tuple[str, int]  # ("map", 0), ("site", site index), ("component", component index)


def schedule(comps: list[tuple[str, list[str]]], plan: SitePlan | _Sites | None,
             ) -> list[Task]:
    """Tasks in the order the files hold their tensors: each block's MLP sites just before
    that block's first component (sites of a block no component names go first).

    The norms go first of all: their test is the longest single task (a 999-permutation
    null for every norm vector, all on one thread) and reads only a few KB, so started
    first it runs beside the others instead of alone at the end.
    """
    by_block: dict[int, list[int]] = {}
    for i, site in enumerate(plan.sites if plan is not None else []):
        by_block.setdefault(site.block, []).append(i)
    first: list[Task] = [("component", k) for k, (comp, _) in enumerate(comps) if comp == NORMS]
    out: list[Task] = []
    for k, (comp, _) in enumerate(comps):
        m = re.fullmatch(r"block\.(\d+)\..*", comp)
        if m is not None and int(m.group(1)) in by_block:
            out += [("site", i) for i in by_block.pop(int(m.group(1)))]
        if comp != NORMS:
            out.append(("component", k))
    return first + [("site", i) for sites in by_block.values() for i in sites] + out


@dataclass
class ReferenceResult:
    """What one reference's comparison gives the verdict (``check_independence``)."""

    rmap: ResidualMap | None
    found: list[SiteFinding]
    kinship: list[tuple[str, str, float]]
    moved: dict[int, int]
    findings: list[Finding] = field(default_factory=list)  # one per component, in order


def compare_reference(cand: ModelWeights, ref: Reference, ref_name: str,
                      comps: list[tuple[str, list[str]]], cand_sites: list[MlpSite],
                      vocabs: Vocabs | None, *, seed: int, alpha: float, permutations: int,
                      moved_blocks: Callable[[list[SiteFinding], float], dict[int, int]],
                      progress: Callable[[int, str], None] | None = None) -> ReferenceResult:
    """Match the MLPs and test every component of ``comps`` against ``ref`` (see module doc).

    ``moved_blocks(found, alpha)`` says which candidate blocks the search placed at another
    reference block; ``progress(k, component)`` is called as each component's test is in.
    """
    compare = functools.partial(compare_component, cand, ref.weights, ref_name, vocabs=vocabs,
                                seed=seed, permutations=permutations, subs=ref.subs)
    holder: list[SitePlan | None] = []

    def plan_task() -> SitePlan | None:
        holder.append(plan_matching(cand, cand_sites, ref, vocabs, seed, alpha))
        return holder[0]

    # the site tasks are known before the map is: they depend on the sites only
    sites_of = [s for s in cand_sites if s.dim == cand_sites[0].dim] \
        if cand_sites and ref.sites else []
    tasks: list[Task] = [("map", 0), *schedule(comps, _Sites(sites_of))]
    after = [0 if kind == "site" else None for kind, _ in tasks]
    threads = thread_count()

    def reads(task: Task) -> tuple[list[str], list[str]]:
        kind, i = task
        if kind == "site":
            return holder[0].tensors(i) if holder and holder[0] is not None else ([], [])
        return (comps[i][1], comps[i][1]) if kind == "component" else ([], [])

    def hint(j: int) -> None:
        """Task ``j`` starts: the task ``threads`` places after it is hinted to the disk."""
        if j + threads < len(tasks):
            ahead_c, ahead_r = reads(tasks[j + threads])
            cand.prefetch(ahead_c)
            ref.weights.prefetch(ahead_r)

    def run(j: int) -> tuple[UnitSketch, MatchResult | None] | Finding | SitePlan | None:
        kind, i = tasks[j]
        if kind == "map":
            return plan_task()
        if kind == "site":
            plan = holder[0]
            assert plan is not None
            return plan.site(i)
        return compare(comps[i][0], comps[i][1])  # speculative: no map applied, none moved

    sites: dict[int, tuple[UnitSketch, MatchResult | None]] = {}
    spec: dict[int, Finding] = {}
    for (kind, i), got in zip(tasks, after_imap(run, after, started=hint), strict=True):
        if kind == "component":
            assert isinstance(got, Finding)
            spec[i] = got
            if progress is not None:
                progress(i, comps[i][0])
        elif kind == "site":
            assert isinstance(got, tuple)
            sites[i] = got
    plan = holder[0]
    rmap = None if plan is None else plan.rmap
    found: list[SiteFinding] = []
    kin: list[tuple[str, str, float]] = []
    if plan is not None:
        found, kin = plan.finish([sites[i] for i in range(len(plan.sites))])
    moved = moved_blocks(found, alpha)
    # the speculative tests assumed no residual map and no block moved: test again the
    # components either changes (all, when the map transforms; else those in moved blocks)
    redo = [k for k, (_, names) in enumerate(comps)
            if (rmap is not None and rmap.transforms)
            or any(_ref_name(n, moved) != n for n in names)]
    again = ordered_map(lambda k: compare(comps[k][0], comps[k][1], blocks=moved, rmap=rmap),
                        redo)
    spec.update(zip(redo, again, strict=True))
    _align_heads(cand, ref, comps, spec, found, moved, rmap, alpha, seed)
    return ReferenceResult(rmap, found, kin, moved, [spec[k] for k in range(len(comps))])


def _align_heads(cand: ModelWeights, ref: Reference, comps: list[tuple[str, list[str]]],
                 spec: dict[int, Finding], found: list[SiteFinding], moved: dict[int, int],
                 rmap: ResidualMap | None, alpha: float, seed: int) -> None:
    """Match attention heads where they may have been reordered (:mod:`.heads`); a plain
    fine-tune, or an independent model, costs a screen on a few rows of o per block."""
    lay = None if ref.fingerprint else same_layout(layout(cand), layout(ref.weights))
    if lay is None:
        return
    bar = math.log(alpha / max(len(comps), 1))  # Bonferroni: a plain signal, not the verdict
    depends = any(s.log_p <= math.log(alpha) for s in found if s.result is not None) or any(
        f.fisher is not None and f.fisher.log_p <= bar for f in spec.values())
    mapped = rmap if rmap is not None and rmap.transforms else None
    if mapped is not None and not depends:
        return
    jobs: list[tuple[int, dict[str, str], dict[str, str]]] = []
    for k, (comp, names) in enumerate(comps):
        f = spec[k]
        parts = attention_names(names) if comp.endswith(".attention") else None
        if parts is None:
            continue
        ref_parts = {p: _ref_name(n, moved) for p, n in parts.items()}
        if not all(n in ref.weights.tensors for n in ref_parts.values()):
            continue
        effect = float(np.mean([r.r for r in f.results])) if f.results else None
        if effect is None or effect < IDENTICAL_EFFECT:  # else the same weights in place
            jobs.append((k, parts, ref_parts))

    def run(job: tuple[int, dict[str, str], dict[str, str]]) -> HeadMatch | None:
        _, parts, ref_parts = job
        if mapped is None:
            seen = screen(cand, ref.weights, parts["o_proj"], ref_parts["o_proj"], lay, seed)
            if not (seen.moved and (depends or seen.strong)):
                return None
        return match_heads(cand, ref.weights, parts, ref_parts, lay, mapped, seed=seed)

    for (k, _, _), got in zip(jobs, ordered_map(run, jobs), strict=True):
        spec[k].heads = got
