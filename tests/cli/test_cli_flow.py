"""The `kai` command as a user runs it, without torch: validate, import, score, report, audit."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from kaieval.cli import app

runner = CliRunner()

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
                "scores": {"q": level + (e - 2) * 0.25}}))
    (tmp_path / "sheets.jsonl").write_text("\n".join(lines) + "\n")
    return tmp_path


def test_help_lists_every_command() -> None:
    res = runner.invoke(app, ["--help"])
    assert res.exit_code == 0
    for cmd in ("demo", "validate", "stage", "report", "records", "audit-log", "program"):
        assert cmd in res.output


def test_full_flow(workdir: Path) -> None:
    db = f"sqlite:///{workdir / 'k.sqlite'}"
    teams = [str(workdir / f"{t}.yaml") for t in ("alpha", "beta", "gamma")]
    res = runner.invoke(app, ["validate", str(workdir / "program.yaml"), *teams])
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["records", "import", str(workdir / "sheets.jsonl"), "--db", db])
    assert res.exit_code == 0, res.output
    assert "15 inserted" in res.output
    res = runner.invoke(app, ["records", "import", str(workdir / "sheets.jsonl"), "--db", db])
    assert "15 unchanged" in res.output
    out = workdir / "reports"
    res = runner.invoke(app, ["stage", "run", "--program", str(workdir / "program.yaml"),
                              "--stage", "s1", *teams, "--db", db, "--out", str(out)])
    assert res.exit_code == 0, res.output
    data = json.loads((out / "s1.json").read_text())
    decisions = {t["team_id"]: t["decision"] for t in data["teams"]}
    assert decisions == {"alpha": "advance", "beta": "advance", "gamma": "cut"}
    res = runner.invoke(app, ["report", "--out", str(workdir / "again"), "s1", "--db", db])
    assert res.exit_code == 0, res.output
    assert (workdir / "again" / "report.html").exists()
    res = runner.invoke(app, ["audit-log", "verify", "--db", db])
    assert res.exit_code == 0, res.output
    # tamper with a stored sheet outside kaieval: verify must notice
    con = sqlite3.connect(workdir / "k.sqlite")
    con.execute("UPDATE results SET payload = replace(payload, '\"q\":9.5', '\"q\":10.0')")
    con.commit()
    con.close()
    res = runner.invoke(app, ["audit-log", "verify", "--db", db])
    assert res.exit_code == 1


def test_bad_record_line_writes_nothing(workdir: Path) -> None:
    db = f"sqlite:///{workdir / 'k.sqlite'}"
    good = (workdir / "sheets.jsonl").read_text().splitlines()
    bad = workdir / "bad.jsonl"
    bad.write_text("\n".join([*good[:3], '{"kind": "sheet", "stage_id": 5}', *good[3:]]))
    res = runner.invoke(app, ["records", "import", str(bad), "--db", db])
    assert res.exit_code == 2
    assert f"{bad}:4" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["records", "list", "--db", db])
    assert res.exit_code == 0 and res.output.strip() == ""


def test_stage_run_errors_are_one_line(workdir: Path) -> None:
    res = runner.invoke(app, ["stage", "run", "--program", str(workdir / "program.yaml"),
                              "--stage", "nope", str(workdir / "alpha.yaml"),
                              "--db", f"sqlite:///{workdir / 'k.sqlite'}"])
    assert res.exit_code == 2
    assert "no stage 'nope'" in res.output


def test_program_show_prints_the_template() -> None:
    res = runner.invoke(app, ["program", "show", "k-ai-2025"])
    assert res.exit_code == 0
    assert "schema: kaieval/program/v1" in res.output
    res = runner.invoke(app, ["program", "show", "nope"])
    assert res.exit_code == 2


def test_rerunning_a_stage_writes_nothing(workdir: Path) -> None:
    from kaieval.store import Store

    db = f"sqlite:///{workdir / 'k.sqlite'}"
    teams = [str(workdir / f"{t}.yaml") for t in ("alpha", "beta", "gamma")]
    runner.invoke(app, ["records", "import", str(workdir / "sheets.jsonl"), "--db", db])
    args = ["stage", "run", "--program", str(workdir / "program.yaml"), "--stage", "s1",
            *teams, "--db", db]
    assert runner.invoke(app, args).exit_code == 0
    before = len(Store(db).audit_entries())
    assert runner.invoke(app, args).exit_code == 0
    assert len(Store(db).audit_entries()) == before
