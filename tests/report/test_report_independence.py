"""The terminal view of a verdict reads evidence fields only, never the prose ``detail``."""

from __future__ import annotations

from rich.console import Console

from kaieval.records import ComponentEvidence, IndependenceVerdict
from kaieval.report.independence import evidence_table, fmt_p, print_verdict

# prose that says something else than the fields: a reader that parsed it would show it
MISLEADING = ("vs elsewhere: 99 tensor(s) byte-identical (a = b); Fisher chi2=1.0 df=2 "
              "log10 p=-5.0; component log10 p=-7.0")


def verdict_with_fields() -> IndependenceVerdict:
    ev = (
        ComponentEvidence(component="embeddings", verdict="derived", test="correlation",
                          statistic=0.99, p_value=0.0, log10_p=-812.4, detail=MISLEADING,
                          reference="parent", tensors_copied=0, tensors_correlated=1,
                          fisher_chi2=3741.06, fisher_df=2, fisher_log10_p=-812.4),
        ComponentEvidence(component="block.0.mlp", verdict="derived",
                          test="exact_reuse+correlation", statistic=1.0, p_value=2.5e-12,
                          log10_p=-11.6, detail=MISLEADING, reference="other",
                          tensors_copied=3, tensors_correlated=2, fisher_chi2=55.55,
                          fisher_df=4, fisher_log10_p=-11.6),
        ComponentEvidence(component="norms", verdict="no_evidence", test="norm_correlation",
                          statistic=0.01, p_value=0.0, fisher_log10_p=-400.2, detail=MISLEADING,
                          reference="parent", fisher_chi2=1.04, fisher_df=2),
        ComponentEvidence(component="head", verdict="inconclusive", test="none",
                          detail=MISLEADING),
    )
    return IndependenceVerdict(stage_id="s1", team_id="t", source="measured",
                               verdict="derived", references=("parent", "other"), alpha=0.01,
                               evidence=ev, summary="summary")


def _render(v: IndependenceVerdict) -> str:
    console = Console(record=True, width=200, highlight=False)
    console.print(evidence_table(v))
    return console.export_text()


def _row(text: str, component: str) -> list[str]:
    line = next(ln for ln in text.splitlines() if f" {component} " in ln)
    return [c.strip() for c in line.split("│")[1:-1]]


def test_table_shows_the_fields_not_the_detail() -> None:
    text = _render(verdict_with_fields())
    assert "elsewhere" not in text and "99 identical" not in text and "1e-7" not in text
    assert _row(text, "embeddings") == ["embeddings", "parent", "correlation", "+0.990",
                                        "1e-812", "derived", "compared"]
    assert _row(text, "block.0.mlp") == ["block.0.mlp", "other", "exact_reuse + correlation",
                                         "+1.000", "2.5e-12", "derived", "compared"]
    # no component p recorded: Fisher's log10 p gives the order of magnitude
    assert _row(text, "norms")[4] == "1e-400"
    # no reference recorded and several references: unknown, not guessed from the prose
    assert _row(text, "head")[1:4] == ["?", "none", "-"]
    assert _row(text, "head")[6] == "not comparable: nothing to compare"


def test_table_shows_kind_effect_and_coverage_fields() -> None:
    v = verdict_with_fields()
    ev = v.evidence[0].model_copy(update={"kind": "co_adapted", "effect_size": 0.031,
                                          "not_compared": "shapes differ"})
    text = _render(v.model_copy(update={"evidence": (ev,)}))
    assert _row(text, "embeddings")[3:] == ["+0.031", "1e-812", "co-adapted (weak)",
                                            "partly: shapes differ"]


def test_tokenizer_line_coverage_is_measured_or_not() -> None:
    v = verdict_with_fields()
    tok = ComponentEvidence(component="tokenizer", verdict="inconclusive",
                            test="tokenizer_lineage", lineage="inconclusive", reference="parent")
    gone = tok.model_copy(update={"component": "tokenizer2", "lineage": "not measured"})
    text = _render(v.model_copy(update={"evidence": (tok, gone)}))
    assert _row(text, "tokenizer")[6] == "compared"
    assert _row(text, "tokenizer2")[6] == "not measured"


def test_sentence_comes_before_the_table() -> None:
    v = verdict_with_fields().model_copy(update={"sentence": "Compared 3 of 4 components."})
    console = Console(record=True, width=200, highlight=False)
    print_verdict(v, console, details=False)
    text = console.export_text()
    assert text.index("Compared 3 of 4 components.") < text.index("Independence evidence")


def test_fmt_p() -> None:
    assert fmt_p(None) == "-"
    assert fmt_p(0.0) == "<1e-300"
    assert fmt_p(0.0, -1234.4) == "1e-1234"
    assert fmt_p(0.0123) == "0.012"


def test_print_verdict_prints_detail_only_when_asked() -> None:
    v = verdict_with_fields()
    for details in (False, True):
        console = Console(record=True, width=200, highlight=False)
        print_verdict(v, console, details=details)
        text = console.export_text()
        assert ("elsewhere" in text) is details
        assert "Holm-corrected across the 3 tested" in text
        assert "against the listed references only (parent, other)" in text
