"""`kai audit-log verify` / `show`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_helpers import import_cmd  # type: ignore[import-not-found]
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


def _import(workdir: Path, db: str) -> None:
    res = runner.invoke(app, [*import_cmd(workdir, workdir / "sheets.jsonl"), "--db", db])
    assert res.exit_code == 0, res.output


def _wipe(db_path: Path) -> None:
    import sqlite3

    with sqlite3.connect(db_path) as conn:
        for table in ("audit_log", "results", "stage_results"):
            conn.execute(f"DELETE FROM {table}")
        conn.execute("UPDATE audit_head SET seq = 0, hash = ?", ("0" * 64,))


def test_verify_without_a_key_says_so_and_passes(workdir: Path) -> None:
    db = f"sqlite:///{workdir / 'k.sqlite'}"
    _import(workdir, db)
    res = runner.invoke(app, ["audit-log", "verify", "--db", db])
    assert res.exit_code == 0, res.output
    assert "no checkpoints: run `kai keys init`" in res.output and "intact" in res.output


def test_verify_reports_a_wipe_against_written_and_given_checkpoints(
        workdir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    keys, db_path = workdir / "keys", workdir / "k.sqlite"
    db = f"sqlite:///{db_path}"
    assert runner.invoke(app, ["keys", "init", "--key-dir", str(keys)]).exit_code == 0
    monkeypatch.setenv("KAI_KEY_DIR", str(keys))  # how every writing command finds the key
    _import(workdir, db)
    out = workdir / "published.json"
    res = runner.invoke(app, ["audit-log", "checkpoint", "--db", db, "--key-dir", str(keys),
                              "--out", str(out)])
    assert res.exit_code == 0, res.output
    published = json.loads(out.read_text())
    assert published["size"] == 15 and published["key"]
    res = runner.invoke(app, ["audit-log", "verify", "--db", db, "--key-dir", str(keys)])
    # two lines written (the import's, the command's); identical ones (same second: Ed25519
    # signatures are deterministic) are checked once
    (written,) = (keys / "checkpoints").glob("*.jsonl")
    assert len(written.read_text().splitlines()) == 2
    assert res.exit_code == 0 and "the log extends all" in res.output, res.output
    assert "newest: 15 entries" in res.output
    _wipe(db_path)
    res = runner.invoke(app, ["audit-log", "verify", "--db", db, "--key-dir", str(keys),
                              "--checkpoint", str(out)])
    assert res.exit_code == 1
    problems = [ln for ln in res.output.splitlines() if ln.startswith("audit:")]
    assert problems and all("(wiped)" in p for p in problems)
    assert any(f"[{out}]" in p for p in problems)
    # and signing the damaged log is refused
    res = runner.invoke(app, ["audit-log", "checkpoint", "--db", db, "--key-dir", str(keys)])
    assert res.exit_code == 1 and "not signed" in res.output


def test_given_checkpoint_alone_catches_a_wipe(workdir: Path) -> None:
    """No key here at all: an unsigned checkpoint (as quoted by a report) still counts."""
    db_path = workdir / "k.sqlite"
    db = f"sqlite:///{db_path}"
    _import(workdir, db)
    from kaieval.store import Store

    cp = Store(db).audit_checkpoint()
    assert cp.key is None
    path = workdir / "cp.json"
    path.write_text(cp.to_json())
    assert runner.invoke(app, ["audit-log", "verify", "--db", db, "--checkpoint",
                               str(path)]).exit_code == 0
    _wipe(db_path)
    res = runner.invoke(app, ["audit-log", "verify", "--db", db, "--checkpoint", str(path)])
    assert res.exit_code == 1 and "the log is empty but the checkpoint records 15" in res.output


def test_checkpoint_without_a_key_and_bad_checkpoint_file_are_one_line(workdir: Path) -> None:
    db = f"sqlite:///{workdir / 'k.sqlite'}"
    res = runner.invoke(app, ["audit-log", "checkpoint", "--db", db])
    assert res.exit_code == 2 and "run `kai keys init`" in res.output
    bad = workdir / "bad.json"
    bad.write_text('{"size": "many"}')
    res = runner.invoke(app, ["audit-log", "verify", "--db", db, "--checkpoint", str(bad)])
    assert res.exit_code == 2 and res.output.count("\n") == 1
    assert str(bad) in res.output and "missing" in res.output
