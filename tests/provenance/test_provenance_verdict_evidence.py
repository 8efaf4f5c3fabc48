"""Findings as evidence records: figures as fields, coverage in words, one line per
uncompared component (whole comparisons: test_provenance_verdict.py)."""

from __future__ import annotations

import math

from kaieval.provenance import weight_tests as tw
from kaieval.provenance.compare import Finding
from kaieval.provenance.verdict_evidence import evidence_list


def _correlation(name: str, r: float, log_p: float) -> tw.CorrelationResult:
    return tw.CorrelationResult(name=name, test="correlation", n=4096, r=r,
                                statistic=r * 64, log_p=log_p, method="unit_clt")


def test_figures_are_fields_and_the_sentence_names_them() -> None:
    found = Finding(reference="ref", component="block.0.attn",
                    results=[_correlation("q", 0.4, -40.0), _correlation("k", 0.2, -10.0)],
                    fisher=tw.FisherResult(statistic=100.0, df=4, log_p=-45.0),
                    significant=True)
    (ev,) = evidence_list([found], {"block.0.attn": 1000})
    assert ev.verdict == "derived" and ev.reference == "ref"
    assert math.isclose(ev.effect_size or 0.0, 0.3) and math.isclose(ev.statistic or 0, 0.3)
    assert (ev.tensors_correlated, ev.tensors_copied, ev.fisher_df) == (2, 0, 4)
    assert math.isclose(ev.p_value or 0.0, math.exp(-45.0))
    assert ev.parameters == 1000 and ev.not_compared is None
    assert "2 tensor(s), centred r mean 0.300" in ev.detail
    assert "Fisher chi2=100.0 df=4" in ev.detail and "Holm-significant" in ev.detail


def test_uncompared_component_is_one_inconclusive_line_with_the_reason() -> None:
    skipped = ["blocks.1.mlp.up (shapes 64x32 vs 48x32)", "blocks.1.mlp.down (shapes x)"]
    lines = evidence_list([Finding(reference="a", component="block.1.mlp", skipped=skipped),
                           Finding(reference="b", component="block.1.mlp", skipped=skipped)],
                          {})
    assert len(lines) == 1  # not once per reference
    (ev,) = lines
    assert ev.verdict == "inconclusive" and ev.test == "none"
    assert ev.not_compared == "shapes differ" and ev.tensors_skipped == 2
    assert ev.detail.startswith("vs a: not compared: blocks.1.mlp.up")


def test_a_component_compared_against_one_reference_drops_the_uncompared_line() -> None:
    copied = Finding(reference="b", component="embed",
                     copies=[tw.ExactMatch("embed.weight", "embed.weight", "ab")],
                     copied_parameters=64)
    lines = evidence_list([Finding(reference="a", component="embed",
                                   skipped=["embed.weight (absent)"]), copied], {"embed": 64})
    assert [(e.reference, e.test) for e in lines] == [("b", "exact_reuse")]
    assert lines[0].effect_size == 1.0 and lines[0].parameters_copied == 64
    assert "1 tensor(s) byte-identical (embed.weight = embed.weight)" in lines[0].detail
