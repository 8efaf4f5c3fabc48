"""Helpers of the team, objection and public-page tests (imported by module name)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from kaieval.pipeline import save_stage_result
from kaieval.records import CommitteeSheet, Record, UserVote, Vote
from kaieval.scoring.decidable import mark_provisional
from kaieval.scoring.results import StageResult
from kaieval.scoring.stage import Entrant, run_stage
from kaieval.spec.program import KST, Program
from kaieval.web import submissions as sub
from kaieval.web.context import WebContext

DATA = Path(__file__).resolve().parents[1] / "data" / "bad_records"
PRIVATE = ("PRIVATE-COMMENT", "secret-voter")


def decide(ctx: WebContext, run: str = "main") -> StageResult:
    """Score stage s1 from committee sheets (with a private comment) and a vote by a named
    person, and store the decided result under ``run`` (and an undecidable ``provisional``)."""
    recs: list[Record] = []
    for team, base in (("alpha", 8.0), ("beta", 6.0), ("gamma", 4.0)):
        for e in range(3):
            recs.append(CommitteeSheet(stage_id="s1", team_id=team, source="committee",
                                       component_id="experts", evaluator_id=f"e{e}",
                                       affiliation="X", scores={"report": base, "logs": 3},
                                       comment="PRIVATE-COMMENT"))
    recs.append(UserVote(stage_id="s1", team_id="*", source="users",
                         vote=Vote(voter_id="secret-voter", a="alpha", b="beta", winner="a")))
    ctx.store.put(recs, actor="office")
    prog = ctx.program
    entrants = [Entrant(team_id=d.team.id, name=d.team.name, submission=d.submissions["s1"])
                for d in ctx.dossiers]
    result = run_stage(prog, prog.stage("s1"), entrants, ctx.store.records(stage_id="s1"),
                       replicates=50)
    save_stage_result(ctx.store, mark_provisional(result, ["test"]), "provisional",
                      actor="office")
    save_stage_result(ctx.store, result, run, actor="office")
    return result


def with_deadline(program: Program, stage_id: str, deadline: object) -> Program:
    """The programme with a submission deadline on one stage."""
    data = program.model_dump(mode="python", by_alias=True, exclude_unset=True)
    for s in data["stages"]:
        if s["id"] == stage_id:
            s["submission_deadline"] = deadline
    return Program.model_validate(data)


def at(monkeypatch: pytest.MonkeyPatch, when: dt.datetime) -> None:
    """Make the app's clock say ``when`` (naive: Korean time)."""
    fixed = when if when.tzinfo else when.replace(tzinfo=KST)
    monkeypatch.setattr(sub, "now", lambda: fixed)


def days_later(monkeypatch: pytest.MonkeyPatch, days: float) -> None:
    """Move the app's clock ``days`` ahead of now."""
    at(monkeypatch, dt.datetime.now(dt.UTC) + dt.timedelta(days=days))


def dossier_bytes(team: str = "alpha", **replace: str) -> bytes:
    text = (DATA / f"{team}.yaml").read_text()
    for old, new in replace.items():
        text = text.replace(old, new)
    return text.encode()


