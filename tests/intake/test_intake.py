"""What `kai records import` lets in, and how: conflicts computed, votes added one by one,
changes only with --replace --reason, retraction from the CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from kaieval.cli import app
from kaieval.records import CommitteeSheet, UserVote
from kaieval.store import Store

HERE = Path(__file__).resolve().parents[1] / "data" / "bad_records"
TEAMS = [str(HERE / f"{t}.yaml") for t in ("alpha", "beta", "gamma")]
runner = CliRunner()


def _sheet(**kw: Any) -> dict[str, Any]:
    return {"kind": "sheet", "stage_id": "s1", "team_id": "alpha", "source": "committee",
            "component_id": "experts", "evaluator_id": "e1", "affiliation": "Seoul Institute",
            "scores": {"report": 8, "logs": 4}, **kw}


def _import(tmp: Path, db: str, lines: list[dict[str, Any]], *extra: str) -> tuple[int, str]:
    f = tmp / "in.jsonl"
    f.write_text("\n".join(json.dumps(x, ensure_ascii=False) for x in lines) + "\n")
    res = runner.invoke(app, ["records", "import", str(f), *TEAMS, "--program",
                              str(HERE / "program.yaml"), "--db", db, *extra])
    return res.exit_code, res.output


def test_conflict_of_interest_is_computed_not_trusted(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.sqlite'}"
    # the affiliation is alpha's consortium member, written in another case and spacing
    code, out = _import(tmp_path, db, [
        _sheet(evaluator_id="e1", affiliation="  alpha   UNIVERSITY ", conflict_of_interest=False),
        _sheet(evaluator_id="e2", team_id="beta")])
    assert code == 0, out
    assert "e1 is affiliated with" in out and "conflict of interest" in out
    sheets = {(r.team_id, r.evaluator_id): r for r in Store(db).records()
              if isinstance(r, CommitteeSheet)}
    assert sheets[("alpha", "e1")].conflict_of_interest is True
    assert sheets[("beta", "e2")].conflict_of_interest is False


def test_votes_are_added_never_replaced_in_bulk(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.sqlite'}"
    first = [{"kind": "votes", "stage_id": "s1", "team_id": "*", "source": "users",
              "votes": [{"voter_id": f"u{k}", "a": "alpha", "b": "beta", "winner": "a"}
                        for k in range(60)]}]
    code, out = _import(tmp_path, db, first)
    assert code == 0 and "60 inserted" in out, out
    more = [{"kind": "votes", "stage_id": "s1", "team_id": "*", "source": "users",
             "votes": [{"voter_id": "u99", "a": "beta", "b": "gamma", "winner": "tie"},
                       {"voter_id": "u98", "a": "gamma", "b": "alpha", "winner": "b"}]}]
    code, out = _import(tmp_path, db, more)
    assert code == 0 and "2 inserted, 0 replaced" in out, out
    assert len([r for r in Store(db).records() if isinstance(r, UserVote)]) == 62


def test_a_changed_record_needs_replace_and_a_reason(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.sqlite'}"
    assert _import(tmp_path, db, [_sheet()])[0] == 0
    changed = [_sheet(scores={"report": 3, "logs": 4})]
    code, out = _import(tmp_path, db, changed, "--replace")
    assert code == 2 and "--replace needs --reason" in out
    code, out = _import(tmp_path, db, changed, "--replace", "--reason", "typo in report score")
    assert code == 0 and "1 replaced" in out, out
    res = runner.invoke(app, ["records", "history", "sheet/s1/experts/alpha/e1", "--db", db])
    versions = [json.loads(x) for x in res.output.splitlines()]
    assert [v["action"] for v in versions] == ["insert", "replace"]
    assert versions[0]["record"]["scores"]["report"] == 8
    assert versions[1]["reason"] == "typo in report score"


def test_simulated_records_only_in_a_rehearsal(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.sqlite'}"
    sim = [_sheet(source="simulated")]
    assert _import(tmp_path, db, sim)[0] == 2
    code, out = _import(tmp_path, db, sim, "--allow-simulated")
    assert code == 0, out


def test_retract_and_restore_from_the_cli(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 's.sqlite'}"
    assert _import(tmp_path, db, [_sheet(), _sheet(evaluator_id="e2")])[0] == 0
    key = "sheet/s1/experts/alpha/e1"
    res = runner.invoke(app, ["records", "retract", key, "--reason", "sheet filed twice",
                              "--db", db])
    assert res.exit_code == 0, res.output
    listed = runner.invoke(app, ["records", "list", "--kind", "sheet", "--db", db]).output
    assert '"evaluator_id":"e1"' not in listed and '"evaluator_id":"e2"' in listed
    res = runner.invoke(app, ["records", "retract", "sheet/s1/experts/alpha/nobody",
                              "--reason", "x", "--db", db])
    assert res.exit_code == 2 and "no such record" in res.output
    res = runner.invoke(app, ["records", "restore", key, "--reason", "was not a duplicate",
                              "--db", db])
    assert res.exit_code == 0, res.output
    listed = runner.invoke(app, ["records", "list", "--kind", "sheet", "--db", db]).output
    assert '"evaluator_id":"e1"' in listed
    assert runner.invoke(app, ["audit-log", "verify", "--db", db]).exit_code == 0
