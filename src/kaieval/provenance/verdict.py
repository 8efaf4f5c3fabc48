"""The independence verdict: run the weight tests per component and reference, decide, record.

Decision rule (documented in docs/provenance.md):

* a component is ``derived`` from a reference when one of its informative
  tensors is a byte-identical copy, or when its Fisher-combined p-value is
  significant after Holm correction across every (component, reference) pair;
* the model is ``derived`` when, for some reference, at least half of the
  comparable language-model components (embeddings, blocks, head) are derived;
* ``partial`` when some component is derived but the language model is not
  (Naver's case: a reused vision encoder on a from-scratch language model);
* ``no_evidence`` when something was compared and nothing is significant --
  which is not proof of training from scratch, only of no detected dependence;
* ``inconclusive`` when nothing could be compared at all.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kaieval.errors import KaiError
from kaieval.hashing import sha256_file
from kaieval.provenance import tests_weights as tw
from kaieval.provenance.components import (
    EMBEDDINGS,
    HEAD,
    component_of,
    group_by_component,
    is_language_model,
    is_norm,
)
from kaieval.provenance.safetensors_io import ModelWeights, open_model
from kaieval.provenance.vocab import read_vocab, shared_rows
from kaieval.records import ComponentEvidence, IndependenceVerdict

LM_DERIVED_FRACTION = 0.5
PERMUTATIONS = 999
PERMUTATION_SEED = 20250804


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

    @property
    def comparable(self) -> bool:
        return bool(self.results or self.copies)

    @property
    def derived(self) -> bool:
        return bool(self.copies) or self.significant


def _rng(seed: int, reference: str, name: str) -> np.random.Generator:
    """Per-tensor generator: results do not depend on the order tensors are visited."""
    return np.random.default_rng([seed, zlib.crc32(reference.encode()), zlib.crc32(name.encode())])


def _compare_component(cand: ModelWeights, ref: ModelWeights, ref_name: str, component: str,
                       names: list[str], vocabs: tuple[dict[str, int], dict[str, int]] | None,
                       seed: int, permutations: int) -> _Finding:
    """Every same-name tensor of one component, streamed two tensors at a time."""
    f = _Finding(ref_name, component)
    for name in names:
        if name not in ref.tensors:
            f.skipped.append(f"{name} (absent)")
            continue
        if not (tw.comparable(cand, name) and tw.comparable(ref, name)):
            f.skipped.append(f"{name} (not a float tensor)")
            continue
        ci, ri = cand.tensors[name], ref.tensors[name]
        rng = _rng(seed, ref_name, name)
        res: tw.CorrelationResult | None
        if component in (EMBEDDINGS, HEAD) and len(ci.shape) == 2 and len(ri.shape) == 2:
            rows = None if vocabs is None else shared_rows(
                vocabs[0], vocabs[1], candidate_rows=ci.shape[0], reference_rows=ri.shape[0])
            if ci.shape == ri.shape and (rows is None or rows.identical):
                res = tw.compare_tensor(cand, ref, name, rng=rng, permutations=permutations,
                                        rows_exchangeable=False)
            elif rows is None or ci.shape[1] != ri.shape[1]:
                why = ("no tokenizer.json pair to align rows" if rows is None
                       else "hidden sizes differ")
                f.skipped.append(f"{name} (shapes {list(ci.shape)} vs {list(ri.shape)}, {why})")
                continue
            else:
                res = tw.embedding_test(cand, ref, name, name, rows, rng=rng,
                                        permutations=permutations)
        elif ci.shape != ri.shape:
            f.skipped.append(f"{name} (shapes {list(ci.shape)} vs {list(ri.shape)})")
            continue
        else:
            res = tw.compare_tensor(cand, ref, name, rng=rng, permutations=permutations,
                                    norm=is_norm(name))
        if res is None:
            f.skipped.append(f"{name} (constant or non-finite)")
        else:
            f.results.append(res)
    if f.results:
        f.fisher = tw.fisher_combine([r.log_p for r in f.results])
    return f


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
                     f"{' (Holm-significant)' if f.significant else ''};")
        best = max(f.results, key=lambda r: abs(r.statistic))
        perms = f", {best.permutations} permutations" if best.permutations else ""
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
    if f.skipped:
        parts.append(f"not compared: {', '.join(f.skipped[:3])}"
                     f"{f' and {len(f.skipped) - 3} more' if len(f.skipped) > 3 else ''}")
    return " ".join(parts).rstrip(";")


def _evidence(f: _Finding) -> ComponentEvidence:
    if not f.comparable:
        return ComponentEvidence(component=f.component, verdict="inconclusive", test="none",
                                 detail=_detail(f))
    tests: list[str] = sorted({r.test for r in f.results})
    test = "+".join((["exact_reuse"] if f.copies else []) + tests)
    return ComponentEvidence(
        component=f.component, verdict="derived" if f.derived else "no_evidence", test=test,
        statistic=float(np.mean([r.r for r in f.results])) if f.results else 1.0,
        p_value=f.fisher.p_value if f.fisher else None, detail=_detail(f))


def _input_hashes(label: str, w: ModelWeights) -> dict[str, str]:
    base = w.root if w.root.is_dir() else w.root.parent
    files = list(w.weight_files) + [base / n for n in ("tokenizer.json", "config.json")
                                    if w.root.is_dir() and (base / n).is_file()]
    return {f"{label}/{p.relative_to(base).as_posix()}": sha256_file(p) for p in files}


def _decide(findings: list[_Finding], refs: list[str]) -> tuple[str, str]:
    """Overall verdict and its one-sentence summary."""
    derived = [f for f in findings if f.derived]
    for ref in refs:
        lm = [f for f in findings if f.reference == ref and f.comparable
              and is_language_model(f.component)]
        hit = [f for f in lm if f.derived]
        if lm and len(hit) >= LM_DERIVED_FRACTION * len(lm):
            return "derived", (f"Derived: {len(hit)} of {len(lm)} comparable language-model "
                               f"components are derived from {ref} "
                               f"({_names([f.component for f in hit])}).")
    if derived:
        comps = sorted({f.component for f in derived})
        srcs = sorted({f.reference for f in derived})
        how = "reused or derived"
        return "partial", (f"Partial: {_names(comps)} {how} from {', '.join(srcs)}, while the "
                           "language model as a whole shows no derivation.")
    if any(f.comparable for f in findings):
        n = len({f.component for f in findings if f.comparable})
        return "no_evidence", (f"No evidence of dependence: {n} component(s) compared with "
                               f"{len(refs)} reference(s) ({', '.join(refs)}), nothing "
                               "significant after Holm correction; this does not prove "
                               "training from scratch.")
    return "inconclusive", ("Inconclusive: no tensor of the candidate could be compared with "
                            f"any of the {len(refs)} reference(s).")


def _names(components: Sequence[str]) -> str:
    shown = ", ".join(components[:6])
    return shown + (f" and {len(components) - 6} more" if len(components) > 6 else "")


def check_independence(candidate: Path, references: Sequence[Path], *, alpha: float = 0.01,
                       stage_id: str, team_id: str, trust_remote_code: bool = False,
                       permutations: int = PERMUTATIONS,
                       seed: int = PERMUTATION_SEED,
                       progress: Callable[[int, int, str], None] | None = None,
                       ) -> IndependenceVerdict:
    """Test whether ``candidate``'s weights derive from any of ``references`` (measured).

    ``progress(done, total, label)`` is called after each component comparison so a
    CLI can show a rich progress bar without this module importing one.
    """
    if not references:
        raise KaiError("no reference models given to test independence against",
                       where=str(candidate))
    if not 0.0 < alpha < 1.0:
        raise KaiError(f"alpha must be in (0, 1), got {alpha}", where="check_independence")
    cand = open_model(Path(candidate), trust_remote_code=trust_remote_code)
    groups = group_by_component(cand.names())
    cand_hashes = tw.hash_index(cand)
    cand_vocab = read_vocab(cand.tokenizer) if cand.tokenizer else None
    hashes = _input_hashes("candidate", cand)
    findings: list[_Finding] = []
    ref_names: list[str] = []
    for path in references:
        ref = open_model(Path(path), trust_remote_code=trust_remote_code)
        name = ref.name if ref.name not in ref_names else f"{ref.name}#{len(ref_names)}"
        ref_names.append(name)
        hashes.update(_input_hashes(f"reference/{name}", ref))
        copies = tw.exact_reuse(cand_hashes, tw.hash_index(ref))
        vocabs = (cand_vocab, read_vocab(ref.tokenizer)) \
            if cand_vocab is not None and ref.tokenizer else None
        for comp, names in groups.items():
            f = _compare_component(cand, ref, name, comp, names, vocabs, seed, permutations)
            f.copies = [c for c in copies if component_of(c.candidate) == comp]
            findings.append(f)
            if progress is not None:
                progress(len(findings), len(groups) * len(references), f"{comp} vs {name}")
    tested = [f for f in findings if f.fisher is not None]
    for f, rej in zip(tested, tw.holm([f.fisher.log_p for f in tested if f.fisher], alpha),
                      strict=True):
        f.significant = rej
    verdict, summary = _decide(findings, ref_names)
    tests = ["exact_reuse", "weight_correlation", "norm_correlation", "embedding_shared_vocab"]
    settings = {"alpha": alpha, "tests": tests, "permutation_seed": seed,
                "permutations": permutations, "matrix_null": "unit_permutation",
                "unit_clt_min": tw.UNIT_CLT_MIN,
                "min_hash_numel": tw.MIN_HASH_NUMEL, "multiplicity": "holm",
                "combine": "fisher", "lm_derived_fraction": LM_DERIVED_FRACTION,
                "trust_remote_code": trust_remote_code}
    return IndependenceVerdict(
        stage_id=stage_id, team_id=team_id, source="measured", input_hashes=hashes,
        settings=settings, verdict=verdict, references=tuple(ref_names), alpha=alpha,
        evidence=_evidence_list(findings), summary=summary)


def _evidence_list(findings: list[_Finding]) -> tuple[ComponentEvidence, ...]:
    """Comparable (component, reference) pairs; one inconclusive line per uncompared component."""
    out: list[ComponentEvidence] = []
    seen: dict[str, bool] = {}
    for f in findings:
        seen[f.component] = seen.get(f.component, False) or f.comparable
    for f in findings:
        if f.comparable:
            out.append(_evidence(f))
        elif not seen[f.component]:
            out.append(_evidence(f))
            seen[f.component] = True  # one line is enough
    return tuple(out)
