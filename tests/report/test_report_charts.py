"""Chart geometry and the axis scaling rule."""

from __future__ import annotations

import re

from report_factories import make_selection, make_stage1

from kaieval.report.charts import history_svg, radar_svg, team_styles, totals_svg
from kaieval.report.wording import axis_scales, cut_threshold
from kaieval.scoring.results import ComponentScore, StageResult, TeamResult


def test_axis_scales_from_component_tree() -> None:
    scales = axis_scales(make_stage1())
    # benchmarks 40 + report_quality 10 + training_evidence 10 (rubric children with axes)
    assert scales["independent_technology"].maximum == 60
    assert scales["sovereign_ai"].maximum == 10
    assert scales["ecosystem"].maximum == 30  # openness_plan 5 + users 25
    assert {s.basis for s in scales.values()} == {"max possible"}


def _strip_child_axes(result: StageResult) -> StageResult:
    """The record without rubric-level axes: the structural maximum is incomplete."""
    teams: list[TeamResult] = []
    for team in result.teams:
        comps = tuple(c.model_copy(update={"children": tuple(
            k.model_copy(update={"axis": None}) for k in c.children)})
            if c.component_id == "experts" else c for c in team.components)
        teams.append(team.model_copy(update={"components": comps}))
    return result.model_copy(update={"teams": tuple(teams)})


def test_axis_scale_falls_back_to_highest_team_and_says_so() -> None:
    result = _strip_child_axes(make_stage1())
    scales = axis_scales(result)
    assert scales["independent_technology"].basis == "highest team"  # 51 > 40 possible
    assert scales["independent_technology"].maximum == 51.0
    assert scales["sovereign_ai"].basis == "highest team"
    # users 25 possible, but 엡실론's 4.5 openness points from the now axis-less rubric exceed it
    assert scales["ecosystem"].basis == "highest team" and scales["ecosystem"].maximum == 26.5
    svg = radar_svg(result, team_styles([result]))
    assert "Independent technology*" in svg and "scaled to the highest team" in svg


def test_radar_has_one_polygon_per_team_within_bounds() -> None:
    result = make_stage1()
    svg = str(radar_svg(result, team_styles([result])))
    polys = re.findall(r'<polygon class="radar-team" data-team="([a-z]+)" points="([^"]+)"', svg)
    assert sorted(t for t, _ in polys) == sorted(t.team_id for t in result.teams)
    for _, pts in polys:
        for xy in pts.split():
            x, y = (float(v) for v in xy.split(","))
            assert 0 <= x <= 600 and 0 <= y <= 340


def test_radar_without_axes_says_so() -> None:
    result = make_stage1()
    bare = result.model_copy(update={"teams": tuple(t.model_copy(update={"axes": {}})
                                                    for t in result.teams)})
    assert "No axis subtotals" in radar_svg(bare, {})


def test_totals_bars_whiskers_and_cut_line() -> None:
    result = make_stage1()
    svg = str(totals_svg(result))
    assert svg.count('<g class="bar"') == 5
    assert svg.count("interval ") == 5
    assert cut_threshold(result) == result.team("gamma").total
    assert 'class="cut-line"' in svg and "lowest advancing total 70.8" in svg
    assert 'data-team="epsilon" data-decision="gated"' in svg


def test_totals_without_cut_has_no_cut_line() -> None:
    result = make_stage1()
    everyone = result.model_copy(update={"teams": tuple(
        t.model_copy(update={"decision": "advance"}) for t in result.teams)})
    assert 'class="cut-line"' not in totals_svg(everyone)


def test_history_skips_stages_a_team_is_absent_from() -> None:
    results = [make_selection(), make_stage1()]
    svg = str(history_svg(results, team_styles(results)))
    assert len(re.findall(r'<circle data-team="zeta"', svg)) == 1
    assert len(re.findall(r'<circle data-team="alpha"', svg)) == 2
    assert svg.count("<line x1=") - svg.count('stroke="#e9ecef"') - 6 == 5  # 5 joined teams


def test_team_styles_stable_across_stages() -> None:
    styles = team_styles([make_selection(), make_stage1()])
    assert next(iter(styles)) == "alpha"
    assert len({c for c, _ in styles.values()}) == len(styles)


def test_component_helper_keeps_children_order() -> None:
    comp = make_stage1().team("alpha").components[0]
    assert isinstance(comp, ComponentScore)
    assert [c.component_id for c in comp.children] == ["nia", "common", "individual"]
