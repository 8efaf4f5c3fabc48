"""The `kai` commands one after another, as a user runs them (no torch): validate, import,
score, report, audit-log. Each command's own cases are in test_cli_<module>.py."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

from cli_helpers import import_cmd  # type: ignore[import-not-found]
from typer.testing import CliRunner

from kaieval.cli import app

runner = CliRunner()


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
    res = runner.invoke(app, [*import_cmd(workdir, workdir / "sheets.jsonl"), "--db", db])
    assert res.exit_code == 0, res.output
    assert "15 inserted" in res.output
    res = runner.invoke(app, [*import_cmd(workdir, workdir / "sheets.jsonl"), "--db", db])
    assert "15 unchanged" in res.output
    out = workdir / "reports"
    run = ["stage", "run", "--program", str(workdir / "program.yaml"), "--stage", "s1", *teams,
           "--db", db, "--out", str(out)]
    res = runner.invoke(app, run)  # no independence verdicts yet: no decision
    assert res.exit_code == 1
    assert "alpha: gate 'independence' not measured" in res.output
    assert not out.exists()
    res = runner.invoke(app, [*import_cmd(workdir, workdir / "verdicts.jsonl"), "--db", db])
    assert "3 inserted" in res.output, res.output
    res = runner.invoke(app, run)
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
