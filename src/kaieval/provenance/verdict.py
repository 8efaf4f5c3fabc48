"""The independence verdict: run the weight tests per component and reference, decide, record.

Decision rule (documented in docs/provenance.md):

* a component is significant against a reference when one of its informative
  tensors is a byte-identical copy, or when its p-value is significant after Holm
  correction across every (component, reference) pair. The p-value of a component
  is Fisher's combination of its same-position tensor correlations; for an MLP it
  is twice the smaller of that and the hidden-unit matching p-value
  (:mod:`kaieval.provenance.matching`, Fisher over a mixture's experts), whose
  block search (:mod:`kaieval.provenance.layers`) also says which reference block
  seeded it -- and the block's other tensors are then compared with that block;
* its effect size then says which kind of evidence it is -- copied, derived by
  training or co-adapted -- and the verdict (derived, partial, no_evidence,
  inconclusive) follows from the parameters each kind covers: both in
  :mod:`kaieval.provenance.evidence_kind`.

Beside the weight lines, one ``tokenizer`` line per reference gives the tokenizer
lineage verdict of :mod:`kaieval.provenance.tokenizer_lineage` (the code of ``kai
tokenizer-lineage``) on the two folders' tokenizers, read by :mod:`kaieval.tokenizer`
in whatever format they ship; "not measured" where a side has none it can read. A
shared tokenizer is not weight reuse: these lines join neither the Holm correction
nor the decision above.
"""

from __future__ import annotations

import functools
import math
import queue
import re
import threading
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar, cast

import numpy as np
from threadpoolctl import threadpool_limits

from kaieval.errors import KaiError
from kaieval.hashing import sha256_file
from kaieval.provenance import weight_tests as tw
from kaieval.provenance.align import FloatArray, ResidualMap, residual_axis
from kaieval.provenance.evidence_kind import WHOLE_MODEL_SHARE, EffectThresholds, decide
from kaieval.provenance.fingerprint import SUB, Reference, StoredSub, load_reference
from kaieval.provenance.layers import SiteFinding, block_mapping, match_reference
from kaieval.provenance.matching import SKETCH_DIM, UNIT_CAP, find_sites
from kaieval.provenance.safetensors_io import ModelWeights, open_model
from kaieval.provenance.tensor_groups import (
    EMBEDDINGS,
    HEAD,
    component_of,
    group_by_component,
    is_norm,
)
from kaieval.provenance.tokenizer_lineage import (
    BASELINE_FILE,
    compare_loaded,
    lineage_evidence,
    lineage_not_measured,
    load_baseline,
)
from kaieval.provenance.vocab import model_vocab, shared_rows
from kaieval.provenance.workers import ordered_imap, thread_count
from kaieval.records import ComponentEvidence, IndependenceVerdict
from kaieval.tokenizer import TokenizerFile, load_tokenizer

PERMUTATIONS = 999
PERMUTATION_SEED = 20250804

DETECTION_POWER: str | None = None
"""What the calibration suite measured, quoted in a ``no_evidence`` summary. ``None`` means:
read the bundled summary (``provenance/data/calibration.json``, written by
``benchmarks/provenance_calibration.py``); ``check_independence(detection_power=...)``
overrides both."""

CALIBRATION_SUMMARY = Path(__file__).parent / "data" / "calibration.json"


def bundled_thresholds() -> EffectThresholds:
    """The effect-size thresholds of the bundled calibration summary (empty if none)."""
    return EffectThresholds.from_summary(CALIBRATION_SUMMARY)


def bundled_detection_power() -> str | None:
    """The calibration suite's measured rates as one sentence, or ``None`` if not bundled.

    The summary records which engine code it measured; when the code has changed since, the
    sentence says so rather than passing old rates off as this code's.
    """
    from kaieval.provenance.calibration import code_fingerprint, measured_rates

    if not CALIBRATION_SUMMARY.is_file():
        return None
    try:
        rates = measured_rates(CALIBRATION_SUMMARY)
    except KaiError:
        return None
    text = rates.sentence()
    if rates.code_sha256 != code_fingerprint():
        text += f" (measured on engine code {rates.code_sha256[:19]}…, not this version)"
    return text

_BLOCK_NO = re.compile(r"(?:^|\.)(?:layers|h|blocks|block|layer)\.(\d+)\.")


@dataclass
class _Finding:
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
    def log_p(self) -> float | None:
        """The component's p-value: Fisher of correlations, Bonferroni with the matching."""
        lps = [lp for lp in (self.fisher.log_p if self.fisher else None, self.match_log_p)
               if lp is not None]
        if not lps:
            return None
        return lps[0] if len(lps) == 1 else min(0.0, min(lps) + math.log(len(lps)))

    @property
    def derived(self) -> bool:
        return bool(self.copies) or self.significant


def _rng(seed: int, reference: str, name: str) -> np.random.Generator:
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


def _compare_component(cand: ModelWeights, ref: ModelWeights, ref_name: str, component: str,
                       names: list[str], vocabs: tuple[dict[str, int], dict[str, int]] | None,
                       seed: int, permutations: int, blocks: dict[int, int] | None = None,
                       rmap: ResidualMap | None = None,
                       subs: dict[str, StoredSub] | None = None) -> _Finding:
    """Every same-name tensor of one component, streamed two tensors at a time.

    ``blocks`` (candidate block -> reference block, from the MLP block search) sends a
    moved block's tensors to the reference block that seeded it. ``rmap`` (when it
    :attr:`~ResidualMap.transforms`) writes candidate tensors in the reference's
    residual basis first -- except the embeddings, whose rows estimated the map.
    ``subs`` (a fingerprint's stored sub-matrices) stand in for reference tensors that
    are not stored whole: the candidate's same elements are read and tested.
    """
    f = _Finding(ref_name, component)
    mapped = rmap is not None and rmap.transforms and component != EMBEDDINGS
    dense = rmap.dense() if mapped and rmap is not None else None
    for name in names:
        rname = _ref_name(name, blocks or {})
        if rname != name:
            m = _BLOCK_NO.search(rname)
            f.compared_block = int(m.group(1)) if m else None
        if subs and rname in subs and rname not in ref.tensors:
            got = _stored_sub_test(cand, ref, name, rname, subs[rname], dense is not None,
                                   _rng(seed, ref_name, name), permutations, f.skipped)
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
        rng = _rng(seed, ref_name, name)
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


def _compare_ahead(cand: ModelWeights, ref: Reference, ref_name: str,
                   comps: list[tuple[str, list[str]]], vocabs: tuple[dict[str, int],
                                                                dict[str, int]] | None,
                   seed: int, permutations: int, moved: dict[int, int],
                   rmap: ResidualMap | None, k: int) -> _Finding:
    """Component ``k`` of ``comps`` compared (on a worker thread), the one after it prefetched.

    Components are independent given the residual map and the block mapping, and each
    tensor's test draws from its own seeded generator, so they run in parallel with
    results identical to one at a time (:mod:`kaieval.provenance.workers`). The disk
    reads the component ``threads`` places ahead while this one is tested.
    """
    ahead = k + thread_count()
    if ahead < len(comps):
        cand.prefetch(comps[ahead][1])
        ref.weights.prefetch(_ref_name(n, moved) for n in comps[ahead][1])
    comp, names = comps[k]
    return _compare_component(cand, ref.weights, ref_name, comp, names, vocabs, seed,
                              permutations, moved, rmap, ref.subs)


def _fmt_p(log_p: float) -> str:
    p = math.exp(log_p)
    return f"p={p:.3g}" if p > 1e-300 else f"log10 p={tw.log10(log_p):.1f}"


def _detail(f: _Finding) -> str:
    parts = [f"vs {f.reference}:"]
    if f.copies:
        shown = ", ".join(f"{c.candidate} = {c.reference}" for c in f.copies[:4])
        more = f" and {len(f.copies) - 4} more" if len(f.copies) > 4 else ""
        parts.append(f"{len(f.copies)} tensor(s) byte-identical ({shown}{more});")
    if f.results and f.fisher is not None:
        rs = [r.r for r in f.results]
        parts.append(f"{len(rs)} tensor(s), centred r mean {np.mean(rs):.3f} "
                     f"(min {min(rs):.3f}, max {max(rs):.3f}); Fisher chi2={f.fisher.statistic:.1f}"
                     f" df={f.fisher.df} {_fmt_p(f.fisher.log_p)}"
                     f"{' (Holm-significant)' if f.significant and not f.matched else ''};")
        best = max(f.results, key=lambda r: abs(r.statistic))
        perms = f", {best.permutations} permutations" if best.permutations else ""
        if best.subsample:
            perms += (f", seeded {best.subsample[0]}-row x {best.subsample[1]}-unit "
                      "sub-matrix")
        parts.append(f"strongest {best.name} r={best.r:.3f} {_fmt_p(best.log_p)} "
                     f"({best.method}{perms});")
        raws = [r.raw_cosine for r in f.results if r.raw_cosine is not None]
        if raws:
            parts.append(f"raw cosine {min(raws):.4f}-{max(raws):.4f} shown for context only "
                         f"({tw.NORM_EXPLANATION});")
        fr = [r.shared_fraction for r in f.results if r.shared_fraction is not None]
        if fr:
            n_rows = f.results[0].n
            parts.append(f"rows of shared tokens only ({fr[0]:.0%} of the candidate's vocabulary"
                         f" shared; {n_rows} elements);")
    if f.basis is not None:
        parts.append(f"candidate tensors written in the reference's residual basis first "
                     f"({f.basis} estimated from shared-token embedding rows);")
    if f.compared_block is not None:
        parts.append(f"compared with reference block {f.compared_block}, the block the MLP "
                     "search found seeded it;")
    if f.matched:
        parts.append("hidden-unit matching: " + "; ".join(s.text() for s in f.matched) + ";")
        if len(f.matched) > 1 and f.match_log_p is not None:
            parts.append(f"{len(f.matched)} experts/MLPs Fisher-combined "
                         f"{_fmt_p(f.match_log_p)};")
        if f.log_p is not None:
            both = " (2 x the smaller of correlation and matching)" if f.results else ""
            parts.append(f"component {_fmt_p(f.log_p)}{both}"
                         f"{' (Holm-significant)' if f.significant else ''};")
    if f.kinship:
        parts.append("experts share initialisation with each other: " + ", ".join(f.kinship)
                     + " (upcycled from one MLP);")
    if f.skipped:
        parts.append(f"not compared: {', '.join(f.skipped[:3])}"
                     f"{f' and {len(f.skipped) - 3} more' if len(f.skipped) > 3 else ''}")
    return " ".join(parts).rstrip(";")


_REASON = re.compile(r"\((shapes|absent|not a float|constant|the fingerprint|no tokenizer)")
_REASON_WORDS = {"shapes": "shapes differ", "absent": "absent from the reference",
                 "not a float": "not a float tensor", "constant": "constant or non-finite",
                 "the fingerprint": "the fingerprint keeps only a sub-matrix",
                 "no tokenizer": "no tokenizer to align rows"}


def _not_compared(f: _Finding) -> str | None:
    """Why tensors of the component were not compared, in a few words (None: all were)."""
    if not f.skipped:
        return None
    why = sorted({_REASON_WORDS[m.group(1)] for s in f.skipped if (m := _REASON.search(s))})
    return ", ".join(why) or "not comparable"


def _match_rho(f: _Finding) -> float | None:
    """Mean over matched sites of the stronger rank statistic (identity order, gate/up)."""
    rhos = [max(s.result.rho_identity, s.result.rho_gate_up or -1.0)
            for s in f.matched if s.result is not None]
    return float(np.mean(rhos)) if rhos else None


def _effect_size(f: _Finding) -> float | None:
    """Mean centred r of the aligned tensors: how much of the weights survives.

    Where no tensor could be correlated, the matched rank rho stands in; a component
    compared by exact hashes only is 1 when it holds copies. The rank rho is kept apart
    (``match_rho``) because it measures order, not weights: a fine-tune keeps its MLP
    units' order perfectly (rho = 1) while its weights move.
    """
    if f.results:
        return float(np.mean([r.r for r in f.results]))
    if f.matched:
        return _match_rho(f)
    return 1.0 if f.copies else None


def _evidence(f: _Finding, parameters: int | None = None) -> ComponentEvidence:
    extra: dict[str, Any] = {"parameters": parameters, "not_compared": _not_compared(f),
                             "parameters_copied": f.copied_parameters}
    if not f.comparable:
        return ComponentEvidence(component=f.component, verdict="inconclusive", test="none",
                                 detail=_detail(f), reference=f.reference, **_counts(f),
                                 **extra)
    tests: list[str] = sorted({r.test for r in f.results})
    if f.matched:
        tests.append("hidden_unit_matching")
    test = "+".join((["exact_reuse"] if f.copies else []) + tests)
    if f.results:
        stat = float(np.mean([r.r for r in f.results]))
    elif f.matched:  # effect size: the stronger of the two rank correlations, per site
        stat = float(np.mean([max(s.result.rho_identity, s.result.rho_gate_up or -1.0)
                              for s in f.matched if s.result is not None]))
    else:
        stat = 1.0
    lp = f.log_p
    return ComponentEvidence(
        component=f.component, verdict="derived" if f.derived else "no_evidence", test=test,
        statistic=stat, p_value=None if lp is None else math.exp(lp), detail=_detail(f),
        reference=f.reference, log10_p=None if lp is None else tw.log10(lp), **_counts(f),
        effect_size=_effect_size(f), match_rho=_match_rho(f), **extra)


def _counts(f: _Finding) -> dict[str, Any]:
    """The figures ``_detail`` words, as evidence fields: readers need not parse the prose."""
    fisher = f.fisher
    return {"tensors_copied": len(f.copies), "tensors_correlated": len(f.results),
            "tensors_skipped": len(f.skipped), "sites_matched": len(f.matched),
            "fisher_chi2": None if fisher is None else fisher.statistic,
            "fisher_df": None if fisher is None else fisher.df,
            "fisher_log10_p": None if fisher is None else tw.log10(fisher.log_p)}


def _input_hashes(label: str, w: ModelWeights) -> dict[str, str]:
    base = w.root if w.root.is_dir() else w.root.parent
    files = list(w.weight_files) + [base / n for n in ("tokenizer.json", "config.json")
                                    if w.root.is_dir() and (base / n).is_file()]
    return {f"{label}/{p.relative_to(base).as_posix()}": sha256_file(p) for p in files}


class _BackgroundHashes:
    """Input-file hashes computed on one background thread while the tests run.

    The record must name every input byte, so every weight file is read and hashed once.
    File reads and SHA-256 release the GIL, so on a cold page cache this I/O overlaps the
    (CPU-bound) tests instead of adding to them. A daemon thread: an error elsewhere does
    not wait for the hashing to finish.
    """

    def __init__(self) -> None:
        self._todo: queue.Queue[tuple[str, ModelWeights] | None] = queue.Queue()
        self._done: list[dict[str, str] | BaseException] = []
        self._thread = threading.Thread(target=self._run, name="kai-input-hashes", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (job := self._todo.get()) is not None:
            try:
                self._done.append(_input_hashes(*job))
            except BaseException as e:  # re-raised in the caller's thread by result()
                self._done.append(e)

    def add(self, label: str, w: ModelWeights) -> None:
        self._todo.put((label, w))

    def result(self) -> dict[str, str]:
        """Every queued model's hashes, in the order they were added."""
        self._todo.put(None)
        self._thread.join()
        out: dict[str, str] = {}
        for item in self._done:
            if isinstance(item, BaseException):
                raise item
            out.update(item)
        return out


def _moved_blocks(found: list[SiteFinding], alpha: float) -> dict[int, int]:
    """Candidate block -> reference block for dense MLPs the search placed elsewhere."""
    out: dict[int, int] = {}
    for s in found:
        if s.expert is None and s.ref_site is not None and s.log_p <= math.log(alpha) \
                and s.ref_site.block != s.block:
            out[s.block] = s.ref_site.block
    return out


def _model_tokenizer(w: ModelWeights, *, fingerprint: bool = False,
                     ) -> tuple[TokenizerFile | None, str]:
    """The tokenizer of a model folder (any format :mod:`kaieval.tokenizer` reads), or why not.

    An unreadable tokenizer does not stop the weight tests: its one-line error becomes
    the tokenizer line's "not measured" reason.
    """
    if fingerprint:
        return None, "a fingerprint keeps no tokenizer files"
    if not w.root.is_dir():
        return None, "a single weights file has no tokenizer folder"
    try:
        return load_tokenizer(w.root), ""
    except KaiError as e:
        return None, str(e)


def _tokenizer_line(cand: tuple[TokenizerFile | None, str],
                    ref: tuple[TokenizerFile | None, str], name: str, alpha: float,
                    baseline: dict[str, list[float]]) -> ComponentEvidence:
    if cand[0] is None:
        return lineage_not_measured(name, f"candidate: {cand[1]}")
    if ref[0] is None:
        return lineage_not_measured(name, f"reference {name}: {ref[1]}")
    return lineage_evidence(compare_loaded(cand[0], ref[0], alpha=alpha, baseline=baseline),
                            name)


def _tokenizer_hashes(label: str, w: ModelWeights, tok: TokenizerFile | None,
                      ) -> dict[str, str]:
    """The tokenizer files read (``tokenizer.json`` is hashed with the weights already)."""
    if tok is None or not w.root.is_dir():
        return {}
    return {f"{label}/{p.relative_to(w.root).as_posix()}": sha256_file(p) for p in tok.files
            if p.is_file() and p.resolve().is_relative_to(w.root.resolve())}


_F = TypeVar("_F", bound=Callable[..., Any])


def _one_blas_thread(fn: _F) -> _F:
    """Run ``fn`` with BLAS limited to one thread.

    Why: the products here are small (at most 2048 x 512 per tensor), so a second BLAS
    thread mostly spins -- measured on the 2 GB benchmark it burnt 9 s of CPU for no
    gain in wall time -- while the input-hashing thread needs that core.
    """
    @functools.wraps(fn)
    def run(*args: Any, **kwargs: Any) -> Any:
        with threadpool_limits(limits=1, user_api="blas"):
            return fn(*args, **kwargs)
    return cast(_F, run)


@_one_blas_thread
def check_independence(candidate: Path, references: Sequence[Path], *, alpha: float = 0.01,
                       stage_id: str, team_id: str, trust_remote_code: bool = False,
                       permutations: int = PERMUTATIONS,
                       seed: int = PERMUTATION_SEED,
                       progress: Callable[[int, int, str], None] | None = None,
                       detection_power: str | None = None,
                       reference_names: Sequence[str] | None = None,
                       effect_thresholds: EffectThresholds | None = None,
                       ) -> IndependenceVerdict:
    """Test whether ``candidate``'s weights derive from any of ``references`` (measured).

    References are model folders or fingerprint files
    (:func:`kaieval.provenance.fingerprint.write_fingerprint`).
    ``progress(done, total, label)`` is called after each component comparison so a
    CLI can show a rich progress bar without this module importing one.
    ``detection_power`` (default :data:`DETECTION_POWER`) is quoted in a
    ``no_evidence`` summary: what the calibration suite measured.
    ``reference_names`` (one per reference) replace the names read from the files, so a
    verdict names registry references as the registry does.
    ``effect_thresholds`` (default: the bundled calibration summary's) separate derived by
    training from co-adapted components.
    """
    if not references:
        raise KaiError("no reference models given to test independence against",
                       where=str(candidate))
    if not 0.0 < alpha < 1.0:
        raise KaiError(f"alpha must be in (0, 1), got {alpha}", where="check_independence")
    cand = open_model(Path(candidate), trust_remote_code=trust_remote_code)
    hashing = _BackgroundHashes()  # started first: it reads every byte, the rest samples
    hashing.add("candidate", cand)
    groups = group_by_component(cand.names())
    cand_quick = tw.quick_index(cand)
    cand_full: dict[str, str] = {}  # full hashes, computed only where quick hashes collide
    cand_vocab = model_vocab(cand)
    cand_sites = find_sites(cand)
    cand_tok = _model_tokenizer(cand)
    tok_baseline = load_baseline()
    tok_lines: list[ComponentEvidence] = []
    tok_hashes = _tokenizer_hashes("candidate", cand, cand_tok[0])
    findings: list[_Finding] = []
    ref_names: list[str] = []
    maps: dict[str, str] = {}
    block_map: list[str] = []
    if reference_names is not None and len(reference_names) != len(references):
        raise KaiError("one name per reference", where="check_independence")
    for k, path in enumerate(references):
        ref = load_reference(Path(path), trust_remote_code=trust_remote_code)
        given = reference_names[k] if reference_names is not None else ref.name
        name = given if given not in ref_names else f"{given}#{len(ref_names)}"
        ref_names.append(name)
        hashing.add(f"reference/{name}", ref.weights)
        ref_tok = _model_tokenizer(ref.weights, fingerprint=ref.fingerprint)
        tok_lines.append(_tokenizer_line(cand_tok, ref_tok, name, alpha, tok_baseline))
        tok_hashes.update(_tokenizer_hashes(f"reference/{name}", ref.weights, ref_tok[0]))
        ref_quick = ref.quick_hashes()
        if ref_quick is None:  # a fingerprint without quick hashes: compare every tensor
            want, ref_full = list(cand_quick), ref.hashes()
        else:
            want, ref_want = tw.collisions(cand_quick, ref_quick)
            ref_full = ref.hashes(ref_want) if ref_want else {}
        missing = [n for n in want if n not in cand_full]
        cand_full.update(tw.hash_index(cand, missing))
        copies = tw.exact_reuse({n: cand_full[n] for n in want if n in cand_full}, ref_full)
        vocabs = (cand_vocab, ref.vocab) if cand_vocab is not None and ref.vocab else None
        rmap, found, kin = match_reference(cand, cand_sites, ref, vocabs, seed, alpha)
        if rmap is not None:
            maps[name] = rmap.describe()
        moved = _moved_blocks(found, alpha)
        block_map += [f"{name}: {line}" for line in block_mapping(found, math.log(alpha))]
        comps = list(groups.items())
        compare = functools.partial(_compare_ahead, cand, ref, name, comps, vocabs, seed,
                                    permutations, moved, rmap)
        for (comp, _), f in zip(comps, ordered_imap(compare, range(len(comps))), strict=True):
            f.copies = [c for c in copies if component_of(c.candidate) == comp]
            f.copied_parameters = sum(math.prod(cand.tensors[n].shape)
                                      for n in {c.candidate for c in f.copies})
            f.sites = [s for s in found if f"block.{s.block}.mlp" == comp]
            f.kinship = [f"{a}/{b} log10 p={tw.log10(lp):.1f}" for a, b, lp in kin
                         if a.startswith(f"block {comp.split('.')[1]} ")
                         and lp <= math.log(alpha / len(kin))] \
                if comp.endswith(".mlp") else []  # Bonferroni over all expert pairs
            findings.append(f)
            if progress is not None:
                progress(len(findings), len(groups) * len(references), f"{comp} vs {name}")
    tested = [f for f in findings if f.log_p is not None]
    for f, rej in zip(tested, tw.holm([f.log_p for f in tested if f.log_p is not None], alpha),
                      strict=True):
        f.significant = rej
    power = detection_power if detection_power is not None else DETECTION_POWER
    if power is None:
        power = bundled_detection_power()
    thresholds = effect_thresholds if effect_thresholds is not None else bundled_thresholds()
    params = {comp: sum(math.prod(cand.tensors[n].shape) for n in names)
              for comp, names in groups.items()}
    decision = decide(_evidence_list(findings, params) + tuple(tok_lines), ref_names,
                      alpha=alpha, thresholds=thresholds, power=power)
    tests = ["exact_reuse", "weight_correlation", "norm_correlation", "embedding_shared_vocab",
             "hidden_unit_matching"]
    settings = {"alpha": alpha, "tests": tests, "permutation_seed": seed,
                "permutations": permutations, "matrix_null": "unit_permutation",
                "unit_clt_min": tw.UNIT_CLT_MIN,
                "min_hash_numel": tw.MIN_HASH_NUMEL, "quick_hash_bytes": tw.QUICK_BYTES,
                "multiplicity": "holm",
                "combine": "fisher", "whole_model_share": WHOLE_MODEL_SHARE,
                "effect_thresholds_source": thresholds.source,
                "trust_remote_code": trust_remote_code,
                "matching": {"unit_cap": UNIT_CAP, "sketch_dim": SKETCH_DIM, "seed": seed,
                             "statistics": ["identity_order_spearman", "gate_up_agreement"],
                             "residual_maps": maps},
                "tokenizer_lineage": {"null": BASELINE_FILE, "alpha": alpha,
                                      "in_verdict": False}}
    return IndependenceVerdict(
        stage_id=stage_id, team_id=team_id, source="measured",
        input_hashes={**hashing.result(), **tok_hashes},
        settings=settings, verdict=decision.verdict, references=tuple(ref_names), alpha=alpha,
        evidence=decision.evidence, summary=decision.sentence, sentence=decision.sentence,
        block_map=tuple(block_map), shares=decision.shares,
        effect_thresholds=dict(thresholds.by_type))


def _evidence_list(findings: list[_Finding], params: dict[str, int],
                   ) -> tuple[ComponentEvidence, ...]:
    """Comparable (component, reference) pairs; one inconclusive line per uncompared component."""
    out: list[ComponentEvidence] = []
    seen: dict[str, bool] = {}
    for f in findings:
        seen[f.component] = seen.get(f.component, False) or f.comparable
    for f in findings:
        if f.comparable:
            out.append(_evidence(f, params.get(f.component)))
        elif not seen[f.component]:
            out.append(_evidence(f, params.get(f.component)))
            seen[f.component] = True  # one line is enough
    return tuple(out)
