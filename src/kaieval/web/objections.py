"""Objections to a decided stage result, the office's answers, and its confirmation.

Words kept apart (docs/web-teams.md): a ``provisional`` run (``kai stage run
--provisional``) is *undecidable* and never open to objections. A decided ``main`` run is
"decided, open for objections until <date> (not final)": for ``objection_days`` (stage
spec, default 10) after it was stored, each team in it may file objections
(``objection/<stage>/<team>/<n>``: text, files, who, when). The office answers each one.
Once the window has closed *and* every objection is answered, the office confirms: the
same payload is stored as run ``final`` and ``confirmation/<stage>`` records who, when,
which ``main`` payload (its hash) and the answers. Both runs are kept; only ``final``
is public. A ``main`` rerun that changes the result opens a new window, and the old
confirmation no longer covers it.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from kaieval.errors import KaiError
from kaieval.hashing import canonical_json, sha256_bytes
from kaieval.pipeline import save_stage_result
from kaieval.records import MAX_TEXT
from kaieval.scoring.results import StageResult
from kaieval.web import submissions as sub
from kaieval.web.accounts import Account
from kaieval.web.context import WebContext

MAX_OBJECTION_FILES = 10


class NoObjection(KaiError):
    """Refused because the objection named does not exist."""

    http_status = 404


class NotNow(KaiError):
    """Refused because of where the stage stands (no result yet, already confirmed,
    window still open, objections unanswered): HTTP 409."""

    http_status = 409


@dataclass(frozen=True)
class Window:
    """Where a stage stands: ``none`` (no decided result), ``open``, ``closed`` (awaiting
    confirmation) or ``final``; with the decided result and the window's ends."""

    state: str
    result: StageResult | None = None
    opened: dt.datetime | None = None
    closes: dt.datetime | None = None
    confirmation: dict[str, Any] | None = None

    def words(self) -> str:
        """The state in words (English; pages translate the state key)."""
        if self.state == "open" and self.closes is not None:
            return (f"decided, open for objections until {sub.shown(self.closes)} "
                    "(not final)")
        if self.state == "closed":
            return "decided, objection window closed, awaiting confirmation (not final)"
        if self.state == "final" and self.confirmation:
            return f"final, confirmed {self.confirmation.get('at', '')}"
        return "no decided result yet"


def payload_hash(payload: dict[str, Any]) -> str:
    return sha256_bytes(canonical_json(payload))


def window(ctx: WebContext, stage_id: str) -> Window:
    """The stage's objection window, from its stored ``main`` run and confirmation."""
    stage = sub.stage_of(ctx.program, stage_id)
    payload = ctx.store.stage_result(stage_id, "main")
    if payload is None:
        return Window("none")
    result = StageResult.model_validate(payload)
    if result.provisional:  # never stored as main by kai stage run; refuse it anyway
        return Window("none")
    confirmation = ctx.store.get_object(f"confirmation/{stage_id}")
    if confirmation and confirmation.get("main_sha256") == payload_hash(payload) and \
            ctx.store.stage_result(stage_id, "final") is not None:
        return Window("final", result, confirmation=confirmation)
    opened = result.created_at if result.created_at.tzinfo else \
        result.created_at.replace(tzinfo=dt.UTC)
    closes = opened + dt.timedelta(days=stage.objection_days)
    state = "open" if sub.now() < closes else "closed"
    return Window(state, result, opened, closes)


def objections(ctx: WebContext, stage_id: str,
               team_id: str | None = None) -> list[dict[str, Any]]:
    """Objections of a stage (one team's, or all), by team and number; each with its
    ``key``, ``team_id`` and ``n``."""
    prefix = f"objection/{stage_id}/" + (f"{team_id}/" if team_id else "")
    out = []
    for key, value in ctx.store.objects(prefix).items():
        parts = key.split("/")
        if len(parts) == 4 and parts[3].isdigit():
            out.append({**value, "key": key, "team_id": parts[2], "n": int(parts[3])})
    return sorted(out, key=lambda o: (o["team_id"], o["n"]))


def _text(text: str, what: str) -> str:
    text = text.strip()
    if not text:
        raise KaiError(f"{what}: write something")
    if len(text) > MAX_TEXT:
        raise KaiError(f"{what}: at most {MAX_TEXT} characters, got {len(text)}")
    return text


def file_objection(ctx: WebContext, stage_id: str, account: Account, text: str,
                   files: list[tuple[str, bytes]]) -> dict[str, Any]:
    """File an objection for the account's team while the window is open."""
    w = window(ctx, stage_id)
    if w.state != "open" or w.result is None:
        raise sub.Closed(f"objections to stage '{stage_id}' are not open ({w.words()})")
    team_id = account.team_id or ""
    if team_id not in {t.team_id for t in w.result.teams}:
        raise KaiError(f"team {team_id!r} is not in the result of stage '{stage_id}'")
    body = _text(text, "objection")
    if len(files) > MAX_OBJECTION_FILES:
        raise KaiError(f"at most {MAX_OBJECTION_FILES} files with one objection")
    kept = [sub.store_file(ctx, stage_id, account, name, data, purpose="objection")
            for name, data in files if data]
    n = len(objections(ctx, stage_id, team_id)) + 1
    key = f"objection/{stage_id}/{team_id}/{n}"
    doc = {"text": body, "files": [{"name": m["name"], "sha256": m["sha256"],
                                    "size": m["size"]} for m in kept],
           "by": account.name, "at": sub.stamp(sub.now()), "answer": None}
    ctx.store.put_objects({key: doc}, actor=account.name, create_only=[key])
    return {**doc, "key": key, "team_id": team_id, "n": n}


def answer(ctx: WebContext, stage_id: str, team_id: str, n: int, text: str,
           actor: str) -> dict[str, Any]:
    """The office's answer to one objection (it may be rewritten until confirmation)."""
    key = f"objection/{stage_id}/{team_id}/{n}"
    doc = ctx.store.get_object(key)
    if doc is None:
        raise NoObjection(f"no objection {n} of team {team_id!r} to stage '{stage_id}'")
    if window(ctx, stage_id).state == "final":
        raise NotNow(f"stage '{stage_id}' is confirmed: its answers are part of the record")
    doc = {**doc, "answer": {"text": _text(text, "answer"), "by": actor,
                             "at": sub.stamp(sub.now())}}
    ctx.store.put_objects({key: doc}, actor=actor)
    return doc


def confirm(ctx: WebContext, stage_id: str, actor: str) -> dict[str, Any]:
    """Confirm the decided result as ``final``: after the window, every objection answered."""
    w = window(ctx, stage_id)
    if w.state == "none" or w.result is None:
        raise NotNow(f"stage '{stage_id}' has no decided result to confirm (kai stage run)")
    if w.state == "final":
        raise NotNow(f"stage '{stage_id}' is already confirmed")
    if w.state == "open" and w.closes is not None:
        raise NotNow(f"the objection window of stage '{stage_id}' is open until "
                       f"{sub.shown(w.closes)}; confirm after it closes")
    waiting = [f"{o['team_id']} #{o['n']}" for o in objections(ctx, stage_id)
               if not o.get("answer")]
    if waiting:
        raise NotNow(f"answer every objection first (unanswered: {', '.join(waiting)})")
    payload = ctx.store.stage_result(stage_id, "main")
    assert payload is not None
    record = {"by": actor, "at": sub.stamp(sub.now()), "main_sha256": payload_hash(payload),
              "main_created_at": w.result.created_at.isoformat(),
              "objections": [{"team_id": o["team_id"], "n": o["n"],
                              "answered_by": o["answer"]["by"]}
                             for o in objections(ctx, stage_id)]}
    ctx.store.put_objects({f"confirmation/{stage_id}": record}, actor=actor)
    save_stage_result(ctx.store, w.result, "final", actor=actor)
    return record
