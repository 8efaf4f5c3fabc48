"""The report renders what the real stage engine produces (not only hand-built records)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from rich.console import Console

from kaieval.records import (
    ArenaVotes,
    BenchmarkResult,
    CommitteeSheet,
    IndependenceVerdict,
    Record,
    RepechageVote,
    Vote,
)
from kaieval.report import print_summary, write_reports
from kaieval.scoring.results import StageResult
from kaieval.scoring.stage import Entrant, run_stage
from kaieval.spec.dossier import Submission, Target
from kaieval.spec.load import load_program
from kaieval.spec.program import Program, Source

PROGRAM = """
schema: kaieval/program/v1
id: report-prog
name: Report test programme
axes:
  - {id: tech, name: Technology}
  - {id: sov, name: Sovereignty}
  - {id: eco, name: Ecosystem}
stages:
  - id: s1
    name: 1차 평가
    date: 2026-01-15
    total: 100
    cut: 1
    composition:
      - {id: bench, points: 40, axis: tech, kind: benchmarks, benchmarks: [{id: b1, task: b1}]}
      - id: experts
        points: 35
        kind: committee
        rubric:
          - {id: i1, title: Report, max: 10, axis: tech}
          - {id: i2, title: Data, max: 10, axis: sov}
      - {id: users, points: 25, axis: eco, kind: users}
    gates:
      - {id: independence, kind: independence, rule: "own weights", disallow: [derived, partial]}
    repechage: {slots: 1, majority: 0.5}
    robustness_replicates: 100
"""
TEAMS = {"alpha": 9.0, "beta": 7.5, "gamma": 7.0, "delta": 6.8, "eps": 9.5}


@pytest.fixture()
def program(tmp_path: Path) -> Program:
    path = tmp_path / "program.yaml"
    path.write_text(PROGRAM, encoding="utf-8")
    return load_program(path)[0]


def _records() -> list[Record]:
    rng = np.random.default_rng(3)
    recs: list[Record] = []
    for team, level in TEAMS.items():
        for e in range(6 if team != "delta" else 0):  # delta: no sheets, experts not measured
            s = float(np.clip(level + rng.normal(0, 1.0), 0, 10))
            recs.append(CommitteeSheet(stage_id="s1", team_id=team, source=Source.SIMULATED,
                                       component_id="experts", evaluator_id=f"e{e}",
                                       scores={"i1": s, "i2": s}))
        items = tuple(float(x) for x in rng.random(40) < level / 12)
        recs.append(BenchmarkResult(stage_id="s1", team_id=team, source=Source.MEASURED,
                                    benchmark_id="b1", task="b1", score=float(np.mean(items)),
                                    item_scores=items))
    for team in TEAMS:
        recs.append(IndependenceVerdict(stage_id="s1", team_id=team, source=Source.MEASURED,
                                        verdict="derived" if team == "eps" else "no_evidence",
                                        references=("foreign",), alpha=0.01, summary="test"))
    names = list(TEAMS)
    votes = tuple(Vote(voter_id=f"u{k}", a=names[k % 5], b=names[(k + 1) % 5],
                       winner="a" if rng.random() < 0.6 else "b") for k in range(200))
    recs.extend(ArenaVotes(stage_id="s1", team_id="*", source=Source.SIMULATED,
                           votes=votes).split())
    for e in range(6):
        recs.append(RepechageVote(stage_id="s1", team_id="delta" if e < 4 else "gamma",
                                  source=Source.SIMULATED, evaluator_id=f"e{e}"))
    return recs


def _run(program: Program) -> StageResult:
    sub = Submission(target=Target(name="Frontier", published={"b1": 0.8}))
    entrants = [Entrant(t, f"{t.title()} 컨소시엄", sub, f"sha256:{t}") for t in TEAMS]
    return run_stage(program, program.stage("s1"), entrants, _records(), seed=5,
                     banner="Simulated inputs — test")


def test_engine_result_renders_and_roundtrips(program: Program, tmp_path: Path) -> None:
    result = _run(program)
    write_reports([result], tmp_path, title="engine", banner=result.banner)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    for team in result.teams:
        assert f'data-team="{team.team_id}" data-decision="{team.decision}"' in html
    assert 'data-decision="gated"' in html
    assert result.team("delta").not_measured == ("experts",)
    delta_row = html.split('data-team="delta" data-decision=')[1].split("</tr>")[0]
    assert 'class="not-measured"' in delta_row
    assert 'class="sim">simulated' in html
    for cls in ("chart-radar", "chart-totals", "chart-history"):
        assert f'class="{cls}"' in html
    back = StageResult.model_validate(json.loads((tmp_path / "s1.json").read_text("utf-8")))
    assert back == result
    console = Console(record=True, width=200)
    print_summary(result, console)
    text = console.export_text()
    assert "Simulated inputs — test" in text and "gated" in text and "Repechage:" in text
