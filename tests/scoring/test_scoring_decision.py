"""Decisions and their wording: the ranks a reason states agree with the places given."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from rich.console import Console

from kaieval.records import CommitteeSheet, IndependenceVerdict, Record, RepechageVote
from kaieval.report import print_summary
from kaieval.scoring.decision import ordinal
from kaieval.scoring.results import StageResult
from kaieval.scoring.stage import Entrant, run_stage
from kaieval.spec.dossier import Submission
from kaieval.spec.load import load_program
from kaieval.spec.program import Program, Source

PROGRAM = """
schema: kaieval/program/v1
id: decision-prog
name: Decision wording
axes:
  - {{id: tech, name: Technology}}
stages:
  - id: s1
    name: Stage one
    date: 2026-01-15
    total: 10
    {rule}
    composition:
      - id: experts
        points: 10
        axis: tech
        kind: committee
        rubric:
          - {{id: i1, title: Item, max: 10}}
    gates:
      - {{id: independence, kind: independence, rule: "own weights", disallow: [derived]}}
    repechage: {{slots: 1, majority: 0.5, candidates: cut}}
    robustness_replicates: 0
"""

# Points on the committee item (three sheets each, plain mean); "gee" is derived: gated
# while 2nd on points, above three teams that pass the gates.
LEVEL = {"ace": 9.0, "gee": 8.0, "bee": 7.0, "cee": 6.0, "dee": 5.0}
STANDING = re.compile(
    r"^(?P<rank>\d+)(?:st|nd|rd|th) of (?P<ranked>\d+) on points"
    r"(?:; (?P<erank>\d+)(?:st|nd|rd|th) among the (?P<eligible>\d+) teams that passed the gates)?"
    r"; (?P<places>\d+|no) places? advances?(?:$|; )")


def _program(tmp_path: Path, rule: str = "cut: 1") -> Program:
    path = tmp_path / "program.yaml"
    path.write_text(PROGRAM.format(rule=rule))
    return load_program(path)[0]


def _records(derived: tuple[str, ...] = ("gee",), repechage_votes: int = 0) -> list[Record]:
    recs: list[Record] = []
    for team, level in LEVEL.items():
        for e in range(3):
            recs.append(CommitteeSheet(stage_id="s1", team_id=team, source=Source.COMMITTEE,
                                       component_id="experts", evaluator_id=f"e{e}",
                                       scores={"i1": level}))
        recs.append(IndependenceVerdict(
            stage_id="s1", team_id=team, source=Source.MEASURED,
            verdict="derived" if team in derived else "no_evidence", references=("foreign",),
            alpha=0.01, summary="test verdict"))
    for e in range(repechage_votes):
        recs.append(RepechageVote(stage_id="s1", team_id="dee", source=Source.COMMITTEE,
                                  evaluator_id=f"e{e}"))
    return recs


def _run(program: Program, records: list[Record]) -> StageResult:
    entrants = [Entrant(t, t.title(), Submission(), f"sha256:{t}") for t in LEVEL]
    return run_stage(program, program.stage("s1"), entrants, records, seed=0)


def _assert_consistent(res: StageResult) -> None:
    """Every reason's ranks match the result, and 'advance' iff the eligible rank is a place."""
    ranked = sorted(res.teams, key=lambda t: t.rank)
    eligible = [t for t in ranked if t.decision != "gated"]
    places = sum(1 for t in res.teams if t.decision == "advance")
    for team in ranked:
        m = STANDING.match(team.decision_reason)
        if team.decision == "gated":
            assert team.decision_reason.startswith(
                f"{ordinal(team.rank)} of {len(ranked)} on points; gate '")
            continue
        assert m is not None, team.decision_reason
        assert int(m["rank"]) == team.rank
        assert int(m["ranked"]) == len(ranked)
        stated_places = 0 if m["places"] == "no" else int(m["places"])
        assert stated_places == places
        erank = eligible.index(team) + 1
        if len(eligible) < len(ranked):
            assert int(m["erank"]) == erank and int(m["eligible"]) == len(eligible)
        else:
            assert m["erank"] is None and erank == team.rank
        on_points = "advance" if erank <= stated_places else "cut"
        assert team.decision == on_points or (on_points == "cut"
                                              and team.decision == "repechage")


def test_gated_team_above_an_advancing_team_is_worded_consistently(tmp_path: Path) -> None:
    res = _run(_program(tmp_path), _records())
    by = {t.team_id: t for t in res.teams}
    assert by["gee"].rank == 2 and by["gee"].decision == "gated"
    assert by["cee"].rank == 4 and by["cee"].decision == "advance"
    # the contradiction this replaces: "rank 4; within the 3 places that advance"
    assert by["cee"].decision_reason == ("4th of 5 on points; 3rd among the 4 teams that "
                                         "passed the gates; 3 places advance")
    assert by["dee"].decision_reason == ("5th of 5 on points; 4th among the 4 teams that "
                                         "passed the gates; 3 places advance")
    assert by["gee"].decision_reason.startswith(
        "2nd of 5 on points; gate 'independence' failed: verdict 'derived'")
    assert "places" not in by["gee"].decision_reason
    _assert_consistent(res)


def test_wording_in_advance_mode_and_with_several_gated_teams(tmp_path: Path) -> None:
    res = _run(_program(tmp_path, "advance: 2"), _records(derived=("ace", "bee")))
    by = {t.team_id: t for t in res.teams}
    assert [by[t].decision for t in ("ace", "gee", "bee", "cee", "dee")] == [
        "gated", "advance", "gated", "advance", "cut"]
    assert by["cee"].decision_reason == ("4th of 5 on points; 2nd among the 3 teams that "
                                         "passed the gates; 2 places advance")
    _assert_consistent(res)


def test_without_gated_teams_the_two_ranks_agree_and_one_is_written(tmp_path: Path) -> None:
    res = _run(_program(tmp_path), _records(derived=()))
    assert res.team("dee").decision == "cut"
    assert res.team("dee").decision_reason == "5th of 5 on points; 4 places advance"
    _assert_consistent(res)


def test_only_one_team_passes_the_gates(tmp_path: Path) -> None:
    res = _run(_program(tmp_path, "advance: 1"),
               _records(derived=("ace", "gee", "bee", "cee")))
    assert res.team("dee").decision == "advance"
    assert res.team("dee").decision_reason == ("5th of 5 on points; the only team that passed "
                                               "the gates; 1 place advances")


def test_repechage_winner_keeps_its_standing(tmp_path: Path) -> None:
    res = _run(_program(tmp_path), _records(repechage_votes=3))
    dee = res.team("dee")
    assert dee.decision == "repechage"
    assert dee.decision_reason == ("5th of 5 on points; 4th among the 4 teams that passed the "
                                   "gates; 3 places advance; cut on score, then won the "
                                   "repechage with 3 of 3 votes")
    _assert_consistent(res)


def test_terminal_shows_the_rank_the_reason_states(tmp_path: Path) -> None:
    res = _run(_program(tmp_path), _records())
    console = Console(record=True, width=200)
    print_summary(res, console)
    text = console.export_text()
    assert ("4. Cee: advance — 4th of 5 on points; 3rd among the 4 teams that passed the gates; "
            "3 places advance") in text
    assert "Rank: rank on points among all teams, gated ones included" in text


@pytest.mark.parametrize(("n", "word"), [(1, "1st"), (2, "2nd"), (3, "3rd"), (4, "4th"),
                                         (11, "11th"), (12, "12th"), (13, "13th"),
                                         (21, "21st"), (22, "22nd"), (101, "101st"),
                                         (111, "111th")])
def test_ordinal(n: int, word: str) -> None:
    assert ordinal(n) == word
