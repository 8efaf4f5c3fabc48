"""`kai report`."""

from __future__ import annotations

from pathlib import Path

from typer.testing import CliRunner

from kaieval.cli import app

runner = CliRunner()


def test_missing_stage_result_is_one_line_and_writes_nothing(workdir: Path) -> None:
    out = workdir / "reports"
    res = runner.invoke(app, ["report", "--out", str(out), "s1", "--db",
                              f"sqlite:///{workdir / 'k.sqlite'}"])
    assert res.exit_code == 2
    errors = [ln for ln in res.output.splitlines() if ln.startswith("error:")]
    assert errors == ["error: no stored result for stage 's1' (run 'main')"]
    assert not out.exists()
