"""The audit rule language in the programme YAML, and rubric evaluation to AuditItem records."""

from __future__ import annotations

from pathlib import Path

import pytest

from kaieval.audit.measures import MEASURES, Figure
from kaieval.audit.rubric import score_component, score_stage
from kaieval.errors import KaiError
from kaieval.records import AuditItem
from kaieval.scoring.leaf_points import audit_scores
from kaieval.spec.load import load_program
from kaieval.spec.program import AuditRule, Component, ComponentKind, Source

PROGRAM = """\
schema: kaieval/program/v1
id: t
name: test programme
axes: [{{id: a, name: A}}]
stages:
  - id: s1
    name: S
    date: 2025-01-01
    total: 10
    advance: 1
    composition:
      - id: aud
        points: 10
        kind: audit
        rubric:
{items}
"""

GOOD = """\
          - id: dom
            title: Domestic
            max: 4
            rule: {measure: sovereignty.domestic_accelerator_share, points: linear,
                   from: 0.0, to: 0.5}
          - id: deps
            title: Few deps
            max: 3
            rule: {measure: sovereignty.foreign_dependencies, points: linear, from: 3, to: 0}
          - id: pilots
            title: Pilots
            max: 2
            rule: {measure: ecosystem.public_pilots, points: steps,
                   steps: [{at: 1, share: 0.5}, {at: 3, share: 1.0}]}
          - id: serve
            title: Serve
            max: 1
            rule: {measure: sovereignty.servable_without_foreign_api, points: boolean}
"""


def load(tmp_path: Path, items: str) -> Component:
    p = tmp_path / "p.yaml"
    p.write_text(PROGRAM.format(items=items), "utf-8")
    prog, _ = load_program(p)
    return prog.stage("s1").component("aud")


def rule(**kw: object) -> AuditRule:
    return AuditRule.model_validate(kw)


def test_linear_rising_and_falling() -> None:
    up = rule(measure="sovereignty.domestic_accelerator_share", points="linear", **{"from": 0.0},
              to=0.5)
    assert [up.share(x) for x in (0.0, 0.25, 0.5, 0.9)] == [0.0, 0.5, 1.0, 1.0]
    down = rule(measure="sovereignty.foreign_dependencies", points="linear", **{"from": 3}, to=0)
    assert [down.share(x) for x in (0, 1, 3, 7)] == pytest.approx([1.0, 2 / 3, 0.0, 0.0])


def test_steps_and_boolean() -> None:
    st = rule(measure="ecosystem.apis", points="steps",
              steps=[{"at": 1, "share": 0.5}, {"at": 3, "share": 1.0}])
    assert [st.share(x) for x in (0, 1, 2, 3, 10)] == [0.0, 0.5, 0.5, 1.0, 1.0]
    b = rule(measure="sovereignty.independent", points="boolean")
    assert (b.share(True), b.share(False)) == (1.0, 0.0)
    nb = rule(measure="sovereignty.independent", points="boolean", award_when=False)
    assert nb.share(False) == 1.0


@pytest.mark.parametrize(("item", "message"), [
    ("          - {id: x, title: X, max: 1, rule: {measure: sovereignty.domestic_acelerator_share, "
     "points: linear, from: 0, to: 1}}",
     "unknown measure 'sovereignty.domestic_acelerator_share'; did you mean "
     "'sovereignty.domestic_accelerator_share'"),
    ("          - {id: x, title: X, max: 1, rule: {measure: ecosystem.apis, points: boolean}}",
     "is a count, not yes/no"),
    ("          - {id: x, title: X, max: 1, rule: {measure: sovereignty.independent, "
     "points: linear, from: 0, to: 1}}", "is yes/no; use points: boolean"),
    ("          - {id: x, title: X, max: 1, rule: {measure: ecosystem.apis, points: linear, "
     "from: 1}}", "needs 'from'"),
    ("          - {id: x, title: X, max: 1, rule: {measure: ecosystem.apis, points: steps, "
     "steps: [{at: 2, share: 1}, {at: 1, share: 0.5}]}}", "increasing 'at'"),
    ("          - {id: x, title: X, max: 1, rule: {measure: ecosystem.apis, points: steps, "
     "steps: [{at: 2, share: 1.5}]}}", "must be"),
    ("          - {id: x, title: X, max: 1, rule: {measure: ecosystem.apis, points: cubic}}",
     "cubic"),
])
def test_bad_rules_are_file_line_errors(tmp_path: Path, item: str, message: str) -> None:
    with pytest.raises(KaiError) as e:
        load(tmp_path, item)
    text = str(e.value)
    assert f"{tmp_path / 'p.yaml'}:16" in text, text  # the line of the offending item
    assert message in text


def test_committee_item_with_rule_refused(tmp_path: Path) -> None:
    p = tmp_path / "p.yaml"
    p.write_text(PROGRAM.format(items=GOOD).replace("kind: audit", "kind: committee"), "utf-8")
    with pytest.raises(KaiError, match="only audit components use rules"):
        load_program(p)


FIGS = {
    "sovereignty.domestic_accelerator_share": Figure(
        "sovereignty.domestic_accelerator_share", 0.25, "t.yaml:9 (compute)", "256 ATOM"),
    "sovereignty.foreign_dependencies": Figure("sovereignty.foreign_dependencies", 1.0,
                                               "t.yaml:20 (dependencies)"),
    "ecosystem.public_pilots": Figure("ecosystem.public_pilots", 3.0, "t.yaml:30 (pilots)"),
    "sovereignty.servable_without_foreign_api": Figure(
        "sovereignty.servable_without_foreign_api", None, "t.yaml:5 (model)", "endpoint-only"),
}


def test_not_measured_item_gets_no_record(tmp_path: Path) -> None:
    comp = load(tmp_path, GOOD)
    items, skipped = score_component(comp, FIGS, stage_id="s1", team_id="alpha")
    assert {i.item_id: i.points for i in items} == pytest.approx(
        {"dom": 2.0, "deps": 2.0, "pilots": 2.0})
    assert [(s.item_id, s.measure) for s in skipped] == [
        ("serve", "sovereignty.servable_without_foreign_api")]
    assert "endpoint-only" in skipped[0].reason
    dom = next(i for i in items if i.item_id == "dom")
    for part in ("sovereignty.domestic_accelerator_share = 25.0%", "t.yaml:9", "256 ATOM",
                 "linear", "50% of 4"):
        assert part in dom.evidence
    assert dom.source is Source.DECLARED and dom.max_points == 4


def test_audit_scores_reads_the_items(tmp_path: Path) -> None:
    comp = load(tmp_path, GOOD)
    figs = dict(FIGS)
    figs["sovereignty.servable_without_foreign_api"] = Figure(
        "sovereignty.servable_without_foreign_api", True, "t.yaml:5", source="measured")
    items, skipped = score_component(comp, figs, stage_id="s1", team_id="alpha")
    assert skipped == []
    ls = audit_scores(comp, "s1", ["alpha", "beta"], items)
    assert ls.points[0] == pytest.approx(10 * 7 / 10)  # 2+2+2+1 of 10 rubric points
    assert "not measured" in ls.detail[1]  # no records for beta: not measured, not zero
    assert any("dom: 2/4" in e for e in ls.evidence[0])


def test_items_round_trip_as_records(tmp_path: Path) -> None:
    from kaieval.records import record_from_json

    comp = load(tmp_path, GOOD)
    items, _ = score_component(comp, FIGS, stage_id="s1", team_id="alpha")
    again = record_from_json(items[0].model_dump(mode="json"))
    assert isinstance(again, AuditItem) and again == items[0]
    assert items[0].settings["rule"]["from"] == 0.0


def test_template_axis_totals_unchanged_and_audit_rules_valid() -> None:
    prog, _ = load_program("k-ai-2025")
    sel = prog.stage("selection")
    assert [(c.id, c.points) for c in sel.composition] == [
        ("sel_independent", 40), ("sel_sovereign", 30), ("sel_ecosystem", 30)]
    audits = [c for c in sel.leaves() if c.kind is ComponentKind.AUDIT]
    assert [c.id for c in audits] == ["sel_sovereign_audit", "sel_ecosystem_audit"]
    for c in audits:
        assert all(it.rule is not None and it.rule.measure in MEASURES for it in c.rubric)
    for st in prog.stages[1:]:
        assert [c.points for c in st.composition] == [40, 35, 25]


def test_score_stage_ignores_stage_without_audit() -> None:
    prog, _ = load_program("k-ai-2025")
    items, skipped = score_stage(prog.stage("stage1"), FIGS, team_id="alpha")
    assert items == [] and skipped == []


def test_item_without_rule_left_unscored(tmp_path: Path) -> None:
    comp = load(tmp_path, "          - {id: x, title: X, max: 1}")
    items, skipped = score_component(comp, FIGS, stage_id="s1", team_id="alpha")
    assert items == [] and [s.item_id for s in skipped] == ["x"]
    assert "no rule" in skipped[0].reason
