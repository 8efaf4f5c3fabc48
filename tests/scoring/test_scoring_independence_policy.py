"""The independence gate reads the kinds of evidence through the programme's policy lines."""

from __future__ import annotations

from kaieval.records import ComponentEvidence, ComponentShare, IndependenceVerdict
from kaieval.scoring.gates import gate_outcome
from kaieval.spec.program import Gate, IndependencePolicy

COPIED = ("block.0.attention", "block.0.mlp", "block.1.attention", "block.1.mlp")
CO_ADAPTED = ("embeddings", "block.2.attention", "block.2.mlp", "block.3.attention",
              "block.3.mlp", "head")


def _line(component: str, kind: str) -> ComponentEvidence:
    copied = kind == "copied"
    return ComponentEvidence(
        component=component, verdict="derived" if kind != "no_evidence" else "no_evidence",
        test="exact_reuse" if copied else "weight_correlation", reference="parent",
        p_value=0.0 if copied else 1e-9, log10_p=None if copied else -9.0,
        tensors_copied=4 if copied else 0, effect_size=1.0 if copied else 0.03, kind=kind,
        parameters=100, detail=f"engine prose for {component}")


def _verdict(kinds: dict[str, str], verdict: str = "partial") -> IndependenceVerdict:
    total = 100 * len(kinds)
    shares = tuple(ComponentShare(kind=k, components=tuple(c for c, kk in kinds.items()
                                                           if kk == k),
                                  parameters=100 * sum(kk == k for kk in kinds.values()),
                                  share=100 * sum(kk == k for kk in kinds.values()) / total)
                   for k in ("copied", "derived_by_training", "co_adapted", "no_evidence",
                             "not_comparable"))
    return IndependenceVerdict(
        stage_id="stage1", team_id="t", source="measured", verdict=verdict,  # type: ignore[arg-type]
        references=("parent",), alpha=0.01,
        evidence=tuple(_line(c, k) for c, k in kinds.items()), shares=shares,
        summary="plain sentence.", sentence="Compared 10 of 10 weight components.")


def _gate(**kw: object) -> Gate:
    return Gate.model_validate({"id": "independence", "kind": "independence",
                                "rule": "foreign weights used as-is or fine-tuned fail", **kw})


ISSUE = {**{c: "copied" for c in COPIED}, **{c: "co_adapted" for c in CO_ADAPTED}}


def test_issue_case_fails_on_the_copied_line_and_quotes_it() -> None:
    out = gate_outcome(_gate(policy={}), _verdict(ISSUE), {}, 0.0)
    assert out.status == "fail"
    assert out.decided_by == "copied: fail"
    assert out.sentence.startswith("Compared 10 of 10 weight components.")
    assert 'policy line "copied: fail"' in out.sentence
    rows = {r.component: r for r in out.components}
    assert rows["block.0.mlp"].kind == "copied" and rows["head"].kind == "co_adapted"
    assert rows["head"].coverage == "compared" and rows["head"].effect_size == 0.03
    assert rows["head"].detail == "engine prose for head"  # kept for the folded detail


def test_co_adaptation_alone_passes_the_stage1_rule() -> None:
    only = {**{c: "no_evidence" for c in COPIED}, **{c: "co_adapted" for c in CO_ADAPTED}}
    out = gate_outcome(_gate(policy={}), _verdict(only), {}, 0.0)
    assert out.status == "pass" and out.decided_by == "co_adapted: pass"


def test_no_dependence_passes_on_no_line() -> None:
    out = gate_outcome(_gate(policy={}), _verdict({"head": "no_evidence"}, "no_evidence"), {},
                       0.0)
    assert out.status == "pass" and out.decided_by == "no line applies: pass"
    assert "no component is copied" in out.sentence


def test_a_policy_that_tolerates_copies_passes_them() -> None:
    policy = IndependencePolicy(copied="pass", derived_by_training="pass")
    out = gate_outcome(_gate(policy=policy.model_dump()), _verdict(ISSUE), {}, 0.0)
    assert out.status == "pass" and out.decided_by == "copied: pass"


def test_whole_model_derivation_is_its_own_line() -> None:
    allc = {c: "derived_by_training" for c in COPIED + CO_ADAPTED}
    policy = {"derived_model": "fail", "copied": "pass", "derived_by_training": "pass"}
    out = gate_outcome(_gate(policy=policy), _verdict(allc, "derived"), {}, 0.0)
    assert out.status == "fail" and out.decided_by == "derived_model: fail"


def test_inconclusive_can_be_flagged() -> None:
    v = _verdict({"embeddings": "not_comparable"}, "inconclusive")
    out = gate_outcome(_gate(policy={"inconclusive": "flag"}), v, {}, 0.0)
    assert out.status == "not_measured" and out.decided_by == "inconclusive: flag"
    assert out.components[0].coverage.startswith("not comparable")


def test_without_a_policy_the_disallow_list_decides_and_is_quoted() -> None:
    out = gate_outcome(_gate(), _verdict(ISSUE), {}, 0.0)
    assert out.status == "fail" and out.decided_by == "disallow: [derived, partial]"
    out = gate_outcome(_gate(disallow=["derived"]), _verdict(ISSUE), {}, 0.0)
    assert out.status == "pass" and "not listed" in out.sentence


def test_a_record_from_before_the_kinds_reads_partial_as_copied() -> None:
    old = IndependenceVerdict(stage_id="stage1", team_id="t", source="measured",
                              verdict="partial", references=("parent",), alpha=0.01,
                              evidence=(ComponentEvidence(component="vision_encoder",
                                                          verdict="derived",
                                                          test="exact_reuse"),),
                              summary="Partial: vision_encoder reused.")
    out = gate_outcome(_gate(policy={}), old, {}, 0.0)
    assert out.status == "fail" and out.decided_by == "copied: fail"
    assert out.sentence.startswith("Partial: vision_encoder reused.")
