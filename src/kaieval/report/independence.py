"""Independence results on the terminal: the evidence table, the verdict and its scope.

Reads only the fields of :class:`~kaieval.records.ComponentEvidence` (never its prose
``detail``) and of a black-box result. Used by ``kai provenance``; anything that shows a
verdict to a person (web, reports) can reuse it. It lives with the renderers, not in the
engine, so changing how a verdict looks does not change the provenance code the
calibration summary was measured on.
"""

from __future__ import annotations

import dataclasses
import json
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from kaieval.provenance.blackbox import BlackBoxResult
    from kaieval.records import ComponentEvidence, IndependenceVerdict

VERDICT_STYLE = {"derived": "bold red", "partial": "bold yellow", "no_evidence": "green",
                 "inconclusive": "dim"}
KIND_LABELS = {"copied": "copied", "derived_by_training": "derived by training",
               "co_adapted": "co-adapted (weak)", "no_evidence": "no evidence",
               "not_comparable": "not comparable"}
KIND_STYLE = {"copied": "bold red", "derived_by_training": "bold red",
              "co_adapted": "yellow", "no_evidence": "green", "not_comparable": "dim"}


def fmt_p(p: float | None, log10_p: float | None = None) -> str:
    """A p-value in two significant digits; below float range it underflows to 0, and the
    recorded log10 (when there is one) gives its order of magnitude instead."""
    if p is None:
        return "-"
    if p == 0.0:
        return f"1e{log10_p:.0f}" if log10_p is not None else "<1e-300"
    return f"{p:.2g}"


def reference_of(ev: ComponentEvidence, refs: tuple[str, ...]) -> str:
    """The reference an evidence line compares with (a lone reference when not recorded)."""
    if ev.reference is not None:
        return ev.reference
    return refs[0] if len(refs) == 1 else "?"


def is_tokenizer_line(ev: ComponentEvidence) -> bool:
    """The tokenizer-lineage line: evidence beside the weight verdict, not part of it."""
    return ev.lineage is not None


def test_label(ev: ComponentEvidence) -> str:
    """The test(s) of a line; a tokenizer line also names its lineage verdict."""
    if is_tokenizer_line(ev):
        return f"{ev.test} ({ev.lineage})"
    return ev.test.replace("+", " + ")


def effect(ev: ComponentEvidence) -> str:
    """The effect size: the stronger of mean centred r and matched rank rho (records before
    it existed: mean centred r); exact copies alone have none to show."""
    if is_tokenizer_line(ev) or ev.test in ("none", "exact_reuse"):
        return "-"
    value = ev.effect_size if ev.effect_size is not None else ev.statistic
    return "-" if value is None else f"{value:+.3f}"


def kind_label(ev: ComponentEvidence) -> str:
    """The kind of evidence (copied, derived by training, ...), or the line's verdict where
    the record has no kind (tokenizer lines, records written before kinds existed)."""
    if ev.kind is not None:
        return f"[{KIND_STYLE[ev.kind]}]{KIND_LABELS[ev.kind]}[/]"
    return f"[{VERDICT_STYLE[ev.verdict]}]{ev.verdict}[/]"


def coverage(ev: ComponentEvidence) -> str:
    """Compared, partly compared, or not comparable, and why (tokenizer lines: measured or
    not; their lineage word says the rest)."""
    if is_tokenizer_line(ev):
        return "not measured" if ev.lineage == "not measured" else "compared"
    if ev.verdict == "inconclusive" or ev.kind == "not_comparable":
        return f"not comparable: {ev.not_compared or 'nothing to compare'}"
    if ev.not_compared:
        return f"partly: {ev.not_compared}"
    return "compared"


def _p_value(ev: ComponentEvidence) -> str:
    return fmt_p(ev.p_value, ev.log10_p if ev.log10_p is not None else ev.fisher_log10_p)


def evidence_table(verdict: IndependenceVerdict) -> Table:
    """One row per (component, reference): test, effect size, p-value, kind, coverage."""
    table = Table(title=f"Independence evidence: {verdict.team_id} (stage {verdict.stage_id})",
                  show_lines=False, header_style="bold")
    table.add_column("component", no_wrap=True)
    table.add_column("reference", overflow="fold")
    table.add_column("test", overflow="fold")
    table.add_column("effect", justify="right", no_wrap=True)
    table.add_column("p-value", justify="right", no_wrap=True)
    table.add_column("evidence", no_wrap=True)
    table.add_column("coverage", overflow="fold")
    for ev in verdict.evidence:
        table.add_row(ev.component, reference_of(ev, verdict.references),
                      test_label(ev), effect(ev), _p_value(ev), kind_label(ev), coverage(ev))
    return table


def print_verdict(verdict: IndependenceVerdict, console: Console, *, details: bool) -> None:
    """The plain sentence, the compact table, then the scope; engine detail on request."""
    style = VERDICT_STYLE[verdict.verdict]
    console.print(f"Verdict: [{style}]{verdict.verdict}[/]")
    console.print(verdict.sentence or verdict.summary, markup=False, highlight=False)
    console.print(evidence_table(verdict))
    if details:
        for ev in verdict.evidence:
            console.print(f"  {ev.component}: {ev.detail}", markup=False, highlight=False)
    else:
        console.print("(--details prints the engine's full evidence per line)", style="dim")
    tested = sum(1 for ev in verdict.evidence
                 if ev.p_value is not None and not is_tokenizer_line(ev))
    if verdict.effect_thresholds:
        bars = ", ".join(f"{k} {v:.2f}" for k, v in sorted(verdict.effect_thresholds.items()))
        console.print("Derived by training = significant with an effect size at least the "
                      f"smallest the calibration suite's fine-tunes produced ({bars}); below "
                      "it, co-adapted.", markup=False, highlight=False)
    console.print(f"alpha = {verdict.alpha:g}, Holm-corrected across the {tested} tested "
                  "(component, reference) pairs; byte-identical tensors are decisive on their "
                  "own. Raw cosine of norm weights is never used as evidence (norms start at "
                  "1.0, so any two models look alike).", markup=False, highlight=False)
    console.print("This verdict is against the listed references only ("
                  + ", ".join(verdict.references) + "): 'no_evidence' means no dependence on "
                  "them was detected, not that the model was trained from scratch.",
                  markup=False, highlight=False)
    if any(is_tokenizer_line(ev) for ev in verdict.evidence):
        console.print("Tokenizer lines: the kai tokenizer-lineage verdict on the two folders' "
                      "tokenizers, p-value against the bundled null of independent tokenizers "
                      "(not Holm-corrected). A shared tokenizer is not weight reuse: these "
                      "lines do not enter the verdict above.", markup=False, highlight=False)


def print_blackbox(result: BlackBoxResult, console: Console) -> None:
    """Per reference and statistic: similarity with it vs with the controls, how far the
    pair stands out among unrelated pairs (t), p-values, decision."""
    table = Table(title=f"Black-box evidence: {result.candidate.get('name', 'candidate')} "
                        f"({len(result.prompt_ids)} prompts, {len(result.controls)} controls, "
                        f"{result.mode})", header_style="bold")
    for col in ("reference", "statistic", "with ref", "with controls", "effect", "t (pairs)",
                "p (pairs)", "p (Holm)", "p (prompts)", "verdict"):
        table.add_column(col, justify="left" if col in ("reference", "statistic", "verdict")
                         else "right")
    for r in result.references:
        for st in r.statistics:
            verdict = ("[bold red]dependent[/]" if st.significant else
                       "[dim]reported only[/]" if st.p_holm is None else "[green]no_evidence[/]")
            table.add_row(r.reference, st.statistic, f"{st.mean_reference:.3f}",
                          f"{st.mean_controls:.3f}", f"{st.effect:+.3f}", f"{st.t_pairs:.2f}",
                          fmt_p(st.p_pairs), "-" if st.p_holm is None else fmt_p(st.p_holm),
                          fmt_p(st.p_prompts), verdict)
    console.print(table)
    hit = result.significant
    console.print("Verdict: " + (f"[bold red]behavioural evidence of dependence on "
                                 f"{', '.join(hit)}[/]" if hit else "[green]no_evidence[/]"))
    if result.mode == "sampled":
        console.print("[yellow]Fallback: no log-probs from " + ", ".join(result.no_logprobs)
                      + f"; every model was compared on {result.n_samples} sampled next "
                      "tokens per prompt instead.[/]")
    console.print(f"alpha = {result.alpha:g}, Holm-corrected across {len(result.references)} "
                  f"reference(s) and the distribution statistics; {result.n_permutations} "
                  f"permutations, seed {result.seed}, top-{result.top_k} log-probs. Method: "
                  f"{result.method}. Similarity cannot tell weight reuse from distillation "
                  "on the reference's outputs; the verdict is against the listed references "
                  "only.", markup=False, highlight=False)


def blackbox_json(result: BlackBoxResult) -> str:
    """A black-box result as indented JSON, with its significant references listed."""
    data = dataclasses.asdict(result)
    data["significant"] = list(result.significant)
    return json.dumps(data, ensure_ascii=False, indent=2)
