"""A comparison's findings as evidence records: the figures and one engine sentence per
(component, reference), the coverage (what could not be compared and why) and the
effect size the kinds of evidence are read from. Kept apart from :mod:`verdict`, which
runs the comparison, so that how a finding is worded and measured is one small module.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np

from kaieval.provenance import weight_tests as tw
from kaieval.provenance.compare import Finding
from kaieval.records import ComponentEvidence

ALIGNED_ALPHA = 0.01
"""Head matchings at least this significant (uncorrected) give the component its effect size
in the reference's head order; weaker ones leave the identity-order effect."""


def _fmt_p(log_p: float) -> str:
    p = math.exp(log_p)
    return f"p={p:.3g}" if p > 1e-300 else f"log10 p={tw.log10(log_p):.1f}"


def _detail(f: Finding) -> str:
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
    if f.heads is not None:
        parts.append(f"attention {f.heads.text()};")
    if (f.matched or f.heads is not None) and f.log_p is not None:
        how = ("2 x the smaller of correlation and matching" if f.matched
               else "Bonferroni of correlation and head matching")
        parts.append(f"component {_fmt_p(f.log_p)}{f' ({how})' if f.results else ''}"
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


def _not_compared(f: Finding) -> str | None:
    """Why tensors of the component were not compared, in a few words (None: all were)."""
    if not f.skipped:
        return None
    why = sorted({_REASON_WORDS[m.group(1)] for s in f.skipped if (m := _REASON.search(s))})
    return ", ".join(why) or "not comparable"


def _match_rho(f: Finding) -> float | None:
    """Mean over matched sites of the stronger rank statistic (identity order, gate/up)."""
    rhos = [max(s.result.rho_identity, s.result.rho_gate_up or -1.0)
            for s in f.matched if s.result is not None]
    return float(np.mean(rhos)) if rhos else None


def _effect_size(f: Finding) -> float | None:
    """Mean centred r of the aligned tensors: how much of the weights survives.

    Attention whose heads were matched takes the r in the reference's head order, when
    the matching's own test (or a copy) says the alignment is real.
    Where no tensor could be correlated, the matched rank rho stands in; a component
    compared by exact hashes only is 1 when it holds copies. The rank rho is kept apart
    (``match_rho``) because it measures order, not weights: a fine-tune keeps its MLP
    units' order perfectly (rho = 1) while its weights move.
    """
    if f.heads is not None and (f.aligned_copy or f.heads.log_p <= math.log(ALIGNED_ALPHA)):
        return f.heads.aligned_r  # the heads' own agreement says the alignment is real
    if f.aligned_copy and f.matched:
        return f.aligned_similarity  # units reordered: the identity-order r says nothing
    if f.results:
        return float(np.mean([r.r for r in f.results]))
    if f.matched:
        return _match_rho(f)
    return 1.0 if f.copies else None


def _evidence(f: Finding, parameters: int | None = None) -> ComponentEvidence:
    extra: dict[str, Any] = {"parameters": parameters, "not_compared": _not_compared(f),
                             "parameters_copied": f.copied_parameters}
    if not f.comparable:
        return ComponentEvidence(component=f.component, verdict="inconclusive", test="none",
                                 detail=_detail(f), reference=f.reference, **_counts(f),
                                 **extra)
    tests: list[str] = sorted({r.test for r in f.results})
    if f.matched:
        tests.append("hidden_unit_matching")
    if f.heads is not None:
        tests.append("attention_head_matching")
    test = "+".join((["exact_reuse"] if f.copies else []) + tests)
    effect = _effect_size(f)  # a comparable finding has one: its statistic too
    lp = f.log_p
    return ComponentEvidence(
        component=f.component, verdict="derived" if f.derived else "no_evidence", test=test,
        statistic=effect, p_value=None if lp is None else math.exp(lp), detail=_detail(f),
        reference=f.reference, log10_p=None if lp is None else tw.log10(lp), **_counts(f),
        effect_size=effect, match_rho=_match_rho(f), aligned_similarity=f.aligned_similarity,
        **extra)


def _counts(f: Finding) -> dict[str, Any]:
    """The figures ``_detail`` words, as evidence fields: readers need not parse the prose."""
    fisher = f.fisher
    return {"tensors_copied": len(f.copies), "tensors_correlated": len(f.results),
            "tensors_skipped": len(f.skipped), "sites_matched": len(f.matched),
            "fisher_chi2": None if fisher is None else fisher.statistic,
            "fisher_df": None if fisher is None else fisher.df,
            "fisher_log10_p": None if fisher is None else tw.log10(fisher.log_p)}


def evidence_list(findings: list[Finding], params: dict[str, int],
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
