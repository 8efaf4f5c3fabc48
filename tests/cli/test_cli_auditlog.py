"""`kai audit-log verify` / `show`."""

from __future__ import annotations

import json
from pathlib import Path

from tests.cli.conftest import import_cmd
from typer.testing import CliRunner

from kaieval.cli import app

runner = CliRunner()


def test_show_prints_one_json_line_per_entry(workdir: Path) -> None:
    db = f"sqlite:///{workdir / 'k.sqlite'}"
    assert runner.invoke(app, [*import_cmd(workdir, workdir / "sheets.jsonl"),
                               "--db", db]).exit_code == 0
    res = runner.invoke(app, ["audit-log", "show", "--db", db, "--limit", "3"])
    assert res.exit_code == 0, res.output
    entries = [json.loads(line) for line in res.output.splitlines()]
    assert len(entries) == 3
    assert [e["seq"] for e in entries] == sorted(e["seq"] for e in entries)  # oldest first
    assert set(entries[0]) == {"seq", "at", "actor", "action", "entity", "entity_key",
                               "content_hash", "prev_hash", "hash", "note"}
    assert entries[-1]["prev_hash"] == entries[-2]["hash"]
    res = runner.invoke(app, ["audit-log", "verify", "--db", db])
    assert res.exit_code == 0 and "audit log intact" in res.output
