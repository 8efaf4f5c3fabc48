"""`kai program show`."""

from __future__ import annotations

from typer.testing import CliRunner

from kaieval.cli import app

runner = CliRunner()


def test_program_show_prints_the_template() -> None:
    res = runner.invoke(app, ["program", "show", "k-ai-2025"])
    assert res.exit_code == 0
    assert "schema: kaieval/program/v1" in res.output
    res = runner.invoke(app, ["program", "show", "nope"])
    assert res.exit_code == 2
