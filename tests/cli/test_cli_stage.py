"""`kai stage run`."""

from __future__ import annotations

from pathlib import Path

from tests.cli.conftest import import_cmd
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
