"""Shared by the CLI tests: a tiny programme, three dossiers and committee sheets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

PROGRAM = """\
schema: kaieval/program/v1
id: mini
name: Mini programme
axes: [{id: tech, name: Technology}]
stages:
  - id: s1
    name: Stage one
    date: 2026-01-15
    total: 60
    cut: 1
    composition:
      - id: experts
        points: 60
        axis: tech
        kind: committee
        rubric: [{id: q, title: Quality, max: 10}]
    gates:
      - {id: independence, kind: independence, rule: own weights}
    robustness_replicates: 200
"""


def _dossier(tid: str) -> str:
    return f"""\
schema: kaieval/dossier/v1
team: {{id: {tid}, name: Team {tid.title()}, lead: {tid.title()} Inc}}
submissions:
  s1: {{technical_report: {tid}.md}}
"""


@pytest.fixture()
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "program.yaml").write_text(PROGRAM)
    for tid in ("alpha", "beta", "gamma"):
        (tmp_path / f"{tid}.yaml").write_text(_dossier(tid))
        (tmp_path / f"{tid}.md").write_text("report")
    lines = []
    for tid, level in (("alpha", 9), ("beta", 7), ("gamma", 4)):
        for e in range(5):
            lines.append(json.dumps({
                "kind": "sheet", "stage_id": "s1", "team_id": tid, "source": "committee",
                "component_id": "experts", "evaluator_id": f"e{e}",
                "affiliation": f"University {e}", "scores": {"q": level + (e - 2) * 0.25}}))
    (tmp_path / "sheets.jsonl").write_text("\n".join(lines) + "\n")
    verdicts = [json.dumps({
        "kind": "verdict", "stage_id": "s1", "team_id": tid, "source": "measured",
        "verdict": "no_evidence", "references": ["ref-a"], "alpha": 0.01,
        "input_hashes": {"candidate": f"sha256:{tid}"}}) for tid in ("alpha", "beta", "gamma")]
    (tmp_path / "verdicts.jsonl").write_text("\n".join(verdicts) + "\n")
    return tmp_path

