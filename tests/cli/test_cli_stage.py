"""`kai stage run`."""

from __future__ import annotations

from pathlib import Path

import pytest
from cli_helpers import import_cmd  # type: ignore[import-not-found]
from typer.testing import CliRunner

from kaieval.cli import app

runner = CliRunner()


def test_stage_run_errors_are_one_line(workdir: Path) -> None:
    res = runner.invoke(app, ["stage", "run", "--program", str(workdir / "program.yaml"),
                              "--stage", "nope", str(workdir / "alpha.yaml"),
                              "--db", f"sqlite:///{workdir / 'k.sqlite'}"])
    assert res.exit_code == 2
    assert "no stage 'nope'" in res.output


def test_rerunning_a_stage_writes_nothing(workdir: Path) -> None:
    from kaieval.store import Store

    db = f"sqlite:///{workdir / 'k.sqlite'}"
    teams = [str(workdir / f"{t}.yaml") for t in ("alpha", "beta", "gamma")]
    runner.invoke(app, [*import_cmd(workdir, workdir / "sheets.jsonl"), "--db", db])
    runner.invoke(app, [*import_cmd(workdir, workdir / "verdicts.jsonl"), "--db", db])
    args = ["stage", "run", "--program", str(workdir / "program.yaml"), "--stage", "s1",
            *teams, "--db", db]
    assert runner.invoke(app, args).exit_code == 0
    before = len(Store(db).audit_entries())
    assert runner.invoke(app, args).exit_code == 0
    assert len(Store(db).audit_entries()) == before


def test_stage_result_and_reports_quote_the_signed_checkpoint(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import json

    from kaieval.store import Store

    keys = workdir / "keys"
    monkeypatch.setenv("KAI_KEY_DIR", str(keys))
    assert runner.invoke(app, ["keys", "init"]).exit_code == 0
    db = f"sqlite:///{workdir / 'k.sqlite'}"
    runner.invoke(app, [*import_cmd(workdir, workdir / "sheets.jsonl"), "--db", db])
    runner.invoke(app, [*import_cmd(workdir, workdir / "verdicts.jsonl"), "--db", db])
    head = Store(db).audit_head()
    out = workdir / "out"
    res = runner.invoke(app, ["stage", "run", "--program", str(workdir / "program.yaml"),
                              "--stage", "s1", *[str(workdir / f"{t}.yaml") for t in
                                                 ("alpha", "beta", "gamma")],
                              "--db", db, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "audit log: 18 entries" in res.output and "signed by key" in res.output
    quoted = json.loads((out / "s1.json").read_text())["audit_checkpoint"]
    assert (quoted["size"], quoted["head"]) == head and quoted["signature"]
    assert Store(db).stage_result("s1")["audit_checkpoint"] == quoted
    assert "audit log: 18 entries" in (out / "report.html").read_text()
    res = runner.invoke(app, ["audit-log", "verify", "--db", db, "--checkpoint",
                              str(out / "s1.json")])
    assert res.exit_code == 0, res.output


def _run(workdir: Path, db: str, *extra: str) -> list[str]:
    return ["stage", "run", "--program", str(workdir / "program.yaml"), "--stage", "s1",
            *[str(workdir / f"{t}.yaml") for t in ("alpha", "beta", "gamma")], "--db", db,
            *extra]


def test_an_empty_store_decides_nothing(workdir: Path) -> None:
    from kaieval.store import Store

    db = f"sqlite:///{workdir / 'k.sqlite'}"
    res = runner.invoke(app, _run(workdir, db, "--out", str(workdir / "out")))
    assert res.exit_code == 1
    assert "not decided" in res.output
    for team in ("alpha", "beta", "gamma"):
        assert f"{team}: component 'experts' not measured" in res.output
    assert Store(db).stage_result("s1") is None and not (workdir / "out").exists()
    res = runner.invoke(app, _run(workdir, db, "--provisional", "--out", str(workdir / "out")))
    assert res.exit_code == 0, res.output
    assert "PROVISIONAL" in res.output
    assert "PROVISIONAL" in (workdir / "out" / "report.html").read_text()
    assert Store(db).stage_result("s1") is None
    assert Store(db).stage_result("s1", "provisional") is not None


def test_a_tie_at_the_cut_decided_only_by_ids_is_no_decision(workdir: Path) -> None:
    import json

    db = f"sqlite:///{workdir / 'k.sqlite'}"
    sheets = workdir / "sheets.jsonl"
    lines = [json.loads(x) for x in sheets.read_text().splitlines()]
    for line in lines:  # gamma scores exactly what beta scores
        if line["team_id"] == "gamma":
            line["scores"] = next(x["scores"] for x in lines if x["team_id"] == "beta"
                                  and x["evaluator_id"] == line["evaluator_id"])
    sheets.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    for f in ("sheets.jsonl", "verdicts.jsonl"):
        assert runner.invoke(app, [*import_cmd(workdir, workdir / f), "--db", db]).exit_code == 0
    res = runner.invoke(app, _run(workdir, db))
    assert res.exit_code == 1
    assert "nothing separates beta (through) from gamma (cut)" in res.output


def test_a_store_failing_verification_decides_nothing(workdir: Path) -> None:
    import sqlite3

    db = f"sqlite:///{workdir / 'k.sqlite'}"
    for f in ("sheets.jsonl", "verdicts.jsonl"):
        assert runner.invoke(app, [*import_cmd(workdir, workdir / f), "--db", db]).exit_code == 0
    con = sqlite3.connect(workdir / "k.sqlite")
    con.execute("UPDATE results SET payload = replace(payload, '\"q\":9.5', '\"q\":10.0')")
    con.commit()
    con.close()
    res = runner.invoke(app, _run(workdir, db))
    assert res.exit_code == 1
    assert "the store fails verification" in res.output


@pytest.mark.parametrize(("executor", "says"), [
    ("ray:127.0.0.1:1", "cannot reach a Ray cluster at 127.0.0.1:1"),
    ("ray:nowhere", "bad Ray address 'nowhere'"),
    ("ray:", "bad Ray address ''"),
    ("spark", "unknown executor 'spark'"),
])
def test_stage_measure_bad_executor_is_one_line(workdir: Path, executor: str, says: str) -> None:
    res = runner.invoke(app, ["stage", "measure", "--program", str(workdir / "program.yaml"),
                              "--stage", "s1", str(workdir / "alpha.yaml"),
                              "--db", f"sqlite:///{workdir / 'k.sqlite'}",
                              "--executor", executor])
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and says in lines[0] and "--executor" in lines[0], res.output
    assert "Traceback" not in res.output
    assert not (workdir / "k.sqlite").exists()  # nothing loaded, nothing written
