"""`kai records import` / `list`."""

from __future__ import annotations

from pathlib import Path

from cli_helpers import import_cmd  # type: ignore[import-not-found]
from typer.testing import CliRunner

from kaieval.cli import app

runner = CliRunner()


def test_bad_record_line_writes_nothing(workdir: Path) -> None:
    db = f"sqlite:///{workdir / 'k.sqlite'}"
    good = (workdir / "sheets.jsonl").read_text().splitlines()
    bad = workdir / "bad.jsonl"
    bad.write_text("\n".join([*good[:3], '{"kind": "sheet", "stage_id": 5}', *good[3:]]))
    res = runner.invoke(app, [*import_cmd(workdir, bad), "--db", db])
    assert res.exit_code == 2
    assert f"{bad}:4" in res.output
    assert "Traceback" not in res.output
    res = runner.invoke(app, ["records", "list", "--db", db])
    assert res.exit_code == 0 and res.output.strip() == ""
