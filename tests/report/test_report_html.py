"""The HTML report: content, stable hooks for browser tests, escaping, self-containment."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import pytest
from report_factories import BANNER, make_selection, make_stage1

from kaieval.errors import KaiError
from kaieval.records import ComponentEvidence, IndependenceVerdict
from kaieval.report import render_html
from kaieval.scoring.gates import gate_outcome
from kaieval.scoring.results import GateOutcome, StageResult
from kaieval.spec.program import Gate

VOID = {"meta", "br", "link", "img", "input", "hr", "wbr", "source", "col", "area", "base"}


class _Balance(HTMLParser):
    """Checks every non-void element is closed in order (the templates close everything)."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.stack: list[str] = []
        self.errors: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        if tag not in VOID:
            self.stack.append(tag)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)

    def handle_endtag(self, tag: str) -> None:
        if not self.stack or self.stack[-1] != tag:
            self.errors.append(f"</{tag}> closes <{self.stack[-1] if self.stack else None}>")
            return
        self.stack.pop()


def _render(results: list[StageResult] | None = None, banner: str | None = BANNER) -> str:
    return render_html(results or [make_selection(), make_stage1()],
                       title="K-AI 2025 — 독자 AI 파운데이션 모델", banner=banner)


def _row(html: str, stage_id: str, team_id: str) -> str:
    """The ranked-table row of one team inside one stage section."""
    section = html.split(f'id="stage-{stage_id}"', 1)[1]
    m = re.search(rf'<tr data-team="{team_id}" data-decision="[a-z]+".*?</tr>', section, re.S)
    assert m, f"no row for {team_id} in {stage_id}"
    return m.group(0)


def test_html_shows_banner_teams_not_measured_gate_reason_and_charts() -> None:
    html = _render()
    assert BANNER.replace("'", "&#39;") in html
    for team in make_stage1().teams + make_selection().teams:
        assert team.team_name in html
    assert "not measured" in html
    assert "vision encoder weights match a published reference model" in html
    for cls in ("chart-radar", "chart-totals", "chart-history"):
        assert f'class="{cls}"' in html
    assert "독자 AI 파운데이션 모델" in html


def test_banner_at_top_and_in_every_stage_header() -> None:
    html = _render()
    assert html.count('class="banner"') == 3  # page top + two stage headers
    top = html.split('id="overview"')[0]
    assert 'class="banner"' in top
    for stage_id in ("selection", "stage1"):
        header = html.split(f'id="stage-{stage_id}"')[1].split("<h3>")[0]
        assert 'class="banner"' in header


def test_no_banner_when_none_given_and_stages_have_none() -> None:
    results = [make_stage1().model_copy(update={"banner": None})]
    assert 'class="banner"' not in _render(results, banner=None)


def test_stage_banner_used_when_no_page_banner() -> None:
    html = _render([make_stage1()], banner=None)
    assert html.split('id="overview"')[0].count('class="banner"') == 1


def test_stable_ids_and_data_attributes() -> None:
    html = _render()
    assert 'id="stage-selection"' in html and 'id="stage-stage1"' in html
    stage1 = make_stage1()
    for team in stage1.teams:
        row = _row(html, "stage1", team.team_id)
        assert f'data-decision="{team.decision}"' in row
    assert 'data-decision="gated"' in _row(html, "stage1", "epsilon")
    assert 'data-decision="cut"' in _row(html, "stage1", "delta")


def test_not_measured_is_written_out_never_zero() -> None:
    html = _render()
    row = _row(html, "stage1", "delta")
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    users_cell = cells[5]  # rank, team, total, benchmarks, experts, users
    assert 'class="not-measured"' in users_cell
    assert "0.0" not in users_cell
    assert "of 75 measured" in row


def test_simulated_components_are_labelled_measured_ones_not() -> None:
    row = _row(_render(), "stage1", "alpha")
    cells = re.findall(r"<td[^>]*>(.*?)</td>", row, re.S)
    benchmarks, experts, users = cells[3], cells[4], cells[5]
    assert 'class="sim"' not in benchmarks and "measured" in benchmarks
    assert 'class="sim">simulated' in experts
    assert 'class="sim">simulated' in users


def test_interval_rule_robustness_and_repechage_are_shown() -> None:
    html = _render()
    stage1 = html.split('id="stage-stage1"')[1]
    assert "81.5–86.0" in stage1  # alpha's interval
    assert "the lowest-ranked team is cut" in stage1
    assert "The cut is fragile: 델타 Foundation had a 23% chance of surviving" in stage1
    assert "20260115" in stage1 and "benchmark items, evaluators, votes" in stage1
    rep = stage1.split("<h3>Repechage</h3>")[1].split("<h3>")[0]
    assert 'data-team="motif" class="winner"' in rep
    assert "6 / 10" in rep and "wins the slot" in rep and "more than 50 %" in rep
    assert 'class="sim">simulated' in rep


def test_evidence_section_lists_every_component_detail_and_evidence() -> None:
    html = _render()
    block = html.split('<div class="team-evidence" data-team="alpha">')[2]  # stage1's
    block = block.split('<div class="team-evidence"')[0]
    for cid in ("benchmarks", "nia", "common", "individual", "experts", "report_quality",
                "users"):
        assert f'data-component="{cid}"' in block
    assert "trimmed mean of 10 sheets for report_quality" in block
    assert "Bradley–Terry strength from 49 users" in block


def test_gates_section_has_reason_and_evidence_lines() -> None:
    stage1 = _render().split('id="stage-stage1"')[1]
    gates = stage1.split("<h3>Gates</h3>")[1].split("<h3>")[0]
    assert 'data-team="epsilon" data-gate-status="fail"' in gates
    assert "hidden-unit matching: 0.998 mean cosine vs reference-vit" in gates
    assert "Weights initialised and then trained on the team&#39;s own data" in gates


def test_footer_has_input_hashes_and_code_version() -> None:
    stage1 = _render().split('id="stage-stage1"')[1]
    footer = stage1.split('<footer class="provenance">')[1]
    assert "sha256:" + "1" * 64 in footer
    assert "0.1.0+gdeadbeef0000" in footer
    assert "kaieval/stage-result/v1" in footer


def test_html_parses_with_balanced_tags() -> None:
    parser = _Balance()
    parser.feed(_render())
    parser.close()
    assert parser.errors == []
    assert parser.stack == []
    assert parser.tags.count("svg") == 5  # history + (totals + radar) per stage


def test_self_contained_no_external_resources() -> None:
    html = _render()
    assert "<script" not in html
    assert "<link" not in html
    assert not re.search(r'\ssrc=', html)
    urls = set(re.findall(r"https?://[^\s\"'<>)]+", html))
    assert urls <= {"http://www.w3.org/2000/svg"}
    assert '<meta charset="utf-8">' in html


def test_team_names_and_reasons_are_escaped_everywhere() -> None:
    evil = '<script>alert("x")</script>'
    stage = make_stage1(name_override={"alpha": evil})
    stage = stage.model_copy(update={"rule": "<b>bold</b> & rule"})
    html = _render([make_selection(), stage], banner="<img src=x onerror=alert(1)>")
    assert "<script" not in html
    assert "<img" not in html
    assert "<b>bold</b>" not in html
    assert "&lt;script&gt;" in html
    svgs = re.findall(r"<svg.*?</svg>", html, re.S)
    assert any("&lt;script&gt;" in s for s in svgs)  # SVG text escaped too
    parser = _Balance()
    parser.feed(html)
    assert parser.errors == []


def test_render_is_deterministic() -> None:
    assert _render() == _render()


def test_refuses_empty_duplicate_and_mixed_programmes() -> None:
    with pytest.raises(KaiError, match="no stage results"):
        render_html([], title="t", banner=None)
    with pytest.raises(KaiError, match="appears twice"):
        render_html([make_stage1(), make_stage1()], title="t", banner=None)
    other = make_selection().model_copy(update={"program_id": "other-prog"})
    with pytest.raises(KaiError, match="different programmes"):
        render_html([other, make_stage1()], title="t", banner=None)


def test_minimal_stage_without_optional_parts_renders() -> None:
    base = make_stage1()
    teams = tuple(t.model_copy(update={"total_interval": None, "survival_probability": None,
                                       "gates": ()}) for t in base.teams)
    bare = base.model_copy(update={"teams": teams, "robustness": None, "repechage": None,
                                   "banner": None, "input_hashes": {}, "simulated_sources": ()})
    html = _render([bare], banner=None)
    assert "Robustness was not computed for this stage." in html
    assert "No repechage in this stage." in html
    assert "This stage has no gates." in html
    assert "not computed" in html
    assert "No input hashes recorded." in html
    empty = bare.model_copy(update={"teams": ()})
    parser = _Balance()
    parser.feed(_render([empty], banner=None))
    assert parser.errors == [] and parser.stack == []


def _independence_gate(team: str, kinds: dict[str, str], verdict: str) -> GateOutcome:
    """A gate outcome as scoring makes it, from a verdict record and a policy."""
    lines = tuple(ComponentEvidence(
        component=c, verdict="inconclusive" if k == "not_comparable" else
        "no_evidence" if k == "no_evidence" else "derived",
        test="none" if k == "not_comparable" else "weight_correlation", reference="parent",
        p_value=None if k == "not_comparable" else 1e-9, effect_size=None if k ==
        "not_comparable" else 0.03, kind=k, parameters=100,  # type: ignore[arg-type]
        not_compared="shapes differ" if k == "not_comparable" else None,
        detail=f"engine prose {c} <b>") for c, k in kinds.items())
    n_compared = sum(k != "not_comparable" for k in kinds.values())
    v = IndependenceVerdict(stage_id="stage1", team_id=team, source="measured",
                            verdict=verdict, references=("parent",),  # type: ignore[arg-type]
                            alpha=0.01, evidence=lines, summary="s",
                            sentence=f"Compared {n_compared} of {len(kinds)} weight "
                                     "components with parent.")
    gate = Gate.model_validate({"id": "independence", "kind": "independence",
                                "rule": "Foreign weights used as-is fail", "policy": {}})
    return gate_outcome(gate, v, {}, 0.0)


def test_gate_leads_with_a_sentence_then_a_table_and_folds_the_engine_detail() -> None:
    base = make_stage1()
    gates = {"alpha": _independence_gate("alpha", {"block.0.mlp": "copied",
                                                   "head": "co_adapted"}, "partial"),
             "beta": _independence_gate("beta", {"block.0.mlp": "not_comparable",
                                                 "head": "not_comparable",
                                                 "norms": "no_evidence"}, "no_evidence")}
    teams = tuple(t.model_copy(update={"gates": (gates[t.team_id],)}) if t.team_id in gates
                  else t for t in base.teams)
    html = _render([base.model_copy(update={"teams": teams})])
    section = html.split("<h3>Gates</h3>")[1].split("<h3>")[0]
    alpha = section.split('data-team="alpha"')[1].split('data-team="')[0]
    assert "Compared 2 of 2 weight components with parent." in alpha
    assert "The gate fails by policy line &#34;copied: fail&#34;" in alpha
    assert '<code class="policy-line">copied: fail</code>' in alpha
    assert alpha.index("gate-sentence") < alpha.index("independence-rows") \
        < alpha.index("<details")
    assert 'data-kind="copied"' in alpha and "co-adapted (weak)" in alpha
    assert "engine prose head &lt;b&gt;" in alpha  # escaped, inside the folded details
    beta = section.split('data-team="beta"')[1].split('data-team="')[0]
    # mostly not comparable reads as such, not like a team tested throughout
    assert "Compared 1 of 3 weight components with parent." in beta
    assert beta.count("not comparable: shapes differ") == 2
    assert "The gate passes by policy line &#34;no line applies: pass&#34;" in beta
