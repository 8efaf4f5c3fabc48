"""One function per ``/api/v1`` endpoint, each checking the shape of what came back.

The request shapes follow the route modules (``kaieval/web/routes/*.py``): sheets are
``{"scores": {item: number}, "comment": text}`` (``SheetIn``), ratings are whole numbers
1-5 (``RatingIn``, strict), votes are ``left|right|tie|both_bad`` (``VoteIn``), the cap
is ``{"cap": n}`` (``CapIn``), an answer is ``{"text": ...}`` (``AnswerIn``); uploads are
multipart: ``file`` for a dossier or a file, ``text`` and any ``files`` for an objection.

A server that answers 200 with something else than the endpoint returns (an old server,
a proxy's page, a hostile host) is a one-line error here, before the CLI reads a field:
:func:`obj` and :func:`rows` check the keys the callers use and nothing more, so a
newer server that adds fields keeps working.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kaieval.client.http import ApiClient, RemoteError, Upload, segment
from kaieval.io import MiB

API = "/api/v1"
MAX_DOSSIER_BYTES = 1 * MiB
"""The server's dossier limit (``kaieval.web.submissions.MAX_DOSSIER_BYTES``): a larger
file is refused here, before it is sent."""
MAX_UPLOAD_BYTES = 64 * MiB
"""The server's limit for one file (``kaieval.web.submissions.MAX_UPLOAD_BYTES``)."""
CHOICES = ("left", "right", "tie", "both_bad")
"""An arena vote, as ``VoteIn`` takes it."""


def obj(value: Any, where: str, *keys: str) -> dict[str, Any]:
    """``value`` if it is a JSON object holding ``keys``; else a one-line error."""
    if not isinstance(value, dict):
        raise RemoteError(f"expected a JSON object, got {_kind(value)}: not this API's "
                          "answer", where=where)
    missing = [k for k in keys if k not in value]
    if missing:
        raise RemoteError(f"the answer lacks {', '.join(missing)}: not this API's answer",
                          where=where)
    return value


def rows(value: Any, where: str, *keys: str) -> list[dict[str, Any]]:
    """``value`` if it is a JSON list of objects each holding ``keys``; else one line."""
    if not isinstance(value, list):
        raise RemoteError(f"expected a JSON list, got {_kind(value)}: not this API's answer",
                          where=where)
    return [obj(v, f"{where} [{i}]", *keys) for i, v in enumerate(value)]


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", str: "a string", bool: "true/false",
            type(None): "null"}.get(type(value), "a number")


def _get(c: ApiClient, path: str) -> tuple[Any, str]:
    return c.call("GET", path), f"GET {c.base}{path}"


def _send(c: ApiClient, method: str, path: str, **kw: Any) -> tuple[Any, str]:
    return c.call(method, path, **kw), f"{method} {c.base}{path}"


def _seg(*pairs: tuple[str, str]) -> str:
    return "/".join(segment(value, what) for what, value in pairs)


# -- anyone ----------------------------------------------------------------------------

def me(c: ApiClient) -> dict[str, Any]:
    """The account the token belongs to (``name``, ``role``, ``team_id`` ...)."""
    return obj(*_get(c, f"{API}/me"), "name", "role")


def public_stages(c: ApiClient) -> list[dict[str, Any]]:
    """Every stage with a public result (final, or the demo's labelled simulated)."""
    return rows(*_get(c, f"{API}/public/stages"), "stage_id", "stage_name", "run")


def public_stage(c: ApiClient, stage: str) -> dict[str, Any]:
    """One stage's public result: ranks, totals, decisions and their reasons."""
    answer = obj(*_get(c, f"{API}/public/stages/{_seg(('stage', stage))}"),
                 "stage_id", "stage_name", "teams")
    rows(answer["teams"], f"{API}/public/stages/{stage} teams", "rank", "team_id", "total",
         "decision")
    return answer


def public_team(c: ApiClient, team: str) -> dict[str, Any]:
    """A team's public results, stage by stage."""
    answer = obj(*_get(c, f"{API}/public/teams/{_seg(('team', team))}"),
                 "team_id", "team_name", "stages")
    rows(answer["stages"], f"{API}/public/teams/{team} stages", "stage_id", "rank", "of",
         "total", "decision")
    return answer


# -- expert ----------------------------------------------------------------------------

def assignments(c: ApiClient) -> list[dict[str, Any]]:
    """The expert's assigned sheets and the state of each."""
    return rows(*_get(c, f"{API}/committee/assignments"), "stage_id", "component_id",
                "team_id", "label", "status")


def _sheet_path(stage: str, component: str, team: str) -> str:
    return f"{API}/committee/sheets/" + _seg(("stage", stage), ("component", component),
                                              ("team", team))


def sheet(c: ApiClient, stage: str, component: str, team: str) -> dict[str, Any]:
    """One sheet: its rubric, draft or submitted values, the evidence files, and the other
    evaluators' sheets where the spec reveals them."""
    answer = obj(*_get(c, _sheet_path(stage, component, team)), "label", "status", "rubric",
                 "values", "evidence", "others")
    rows(answer["rubric"], f"{_sheet_path(stage, component, team)} rubric", "id", "max")
    obj(answer["values"], f"{_sheet_path(stage, component, team)} values", "scores")
    return answer


def save_sheet(c: ApiClient, stage: str, component: str, team: str,
               scores: dict[str, float], comment: str) -> dict[str, Any]:
    """Save a draft sheet (any subset of the rubric's items); it can be changed later."""
    return obj(*_send(c, "POST", _sheet_path(stage, component, team) + "/draft",
                      json={"scores": scores, "comment": comment}), "status")


def submit_sheet(c: ApiClient, stage: str, component: str, team: str,
                 scores: dict[str, float], comment: str) -> dict[str, Any]:
    """Submit the sheet (every item): stored as a committee record and locked."""
    return obj(*_send(c, "POST", _sheet_path(stage, component, team) + "/submit",
                      json={"scores": scores, "comment": comment}), "status", "key")


# -- team ------------------------------------------------------------------------------

def team_stages(c: ApiClient) -> list[dict[str, Any]]:
    """Per stage, what the team sees: deadline, its dossier and files, result, objections."""
    return rows(*_get(c, f"{API}/team/stages"), "stage_id", "stage_name", "uploads_open",
                "files", "state", "objections")


def upload_dossier(c: ApiClient, stage: str, dossier: Upload) -> dict[str, Any]:
    """Upload the team's dossier for a stage; the server checks it as ``kai validate``."""
    return obj(*_send(c, "POST", f"{API}/team/dossier/{_seg(('stage', stage))}",
                      files=[("file", dossier)], listing=True), "name", "sha256")


def upload_file(c: ApiClient, stage: str, upload: Upload) -> dict[str, Any]:
    """Upload one file the committee reads (a technical report, a training log)."""
    return obj(*_send(c, "POST", f"{API}/team/files/{_seg(('stage', stage))}",
                      files=[("file", upload)]), "name", "sha256", "size")


def file_objection(c: ApiClient, stage: str, text: str,
                   files: Sequence[Upload]) -> dict[str, Any]:
    """File an objection to a stage's decided result while its window is open."""
    return obj(*_send(c, "POST", f"{API}/team/objections/{_seg(('stage', stage))}",
                      data={"text": text}, files=[("files", f) for f in files]),
               "team_id", "n")


# -- user evaluator --------------------------------------------------------------------

def rating_forms(c: ApiClient) -> list[dict[str, Any]]:
    """The rating components with their criteria and teams, and the caller's ratings."""
    return rows(*_get(c, f"{API}/rating"), "stage_id", "component_id", "criteria", "teams")


def rate(c: ApiClient, stage: str, component: str, team: str,
         scores: dict[str, int]) -> dict[str, Any]:
    """Submit one rating (every criterion, a whole number 1-5); a second one is a 409."""
    path = f"{API}/rating/" + _seg(("stage", stage), ("component", component), ("team", team))
    return obj(*_send(c, "POST", path, json={"scores": scores}), "status", "key")


def battle(c: ApiClient, stage: str) -> dict[str, Any]:
    """The caller's open arena battle, else a new one: a prompt and two anonymous answers."""
    return obj(*_get(c, f"{API}/arena/{_seg(('stage', stage))}/battle"), "battle_id",
               "prompt", "left", "right")


def vote(c: ApiClient, stage: str, battle_id: str, choice: str) -> dict[str, Any]:
    """Vote on one's own battle: ``left``, ``right``, ``tie`` or ``both_bad``."""
    path = f"{API}/arena/{_seg(('stage', stage))}/battles/{_seg(('battle', battle_id))}/vote"
    return obj(*_send(c, "POST", path, json={"choice": choice}), "status")


# -- programme office ------------------------------------------------------------------

def committee(c: ApiClient, stage: str) -> list[dict[str, Any]]:
    """Per committee component: progress per team, points, α per item, outlier sheets."""
    return rows(*_get(c, f"{API}/office/committee/{_seg(('stage', stage))}"),
                "component_id", "teams", "alpha", "outliers")


def _committee_path(stage: str, what: str) -> str:
    return f"{API}/office/committee/{_seg(('stage', stage))}/{what}"


def auto_assign(c: ApiClient, stage: str, per_team: int) -> dict[str, Any]:
    """Assign evaluators automatically: ``per_team`` per team and committee component,
    balanced, conflicts excluded; returns how many were added and all assignments."""
    answer = obj(*_send(c, "POST", _committee_path(stage, "assign"),
                        json={"per_team": per_team}), "added", "assignments")
    rows(answer["assignments"], _committee_path(stage, "assign"), "component_id", "team_id",
         "evaluator")
    return answer


def set_assignment(c: ApiClient, stage: str, component: str, team: str, evaluator: str,
                   add: bool) -> dict[str, Any]:
    """Add or remove one evaluator's assignment (a conflicted evaluator is refused)."""
    return obj(*_send(c, "POST", _committee_path(stage, "assignments"), json={
        "component_id": component, "team_id": team, "evaluator": evaluator,
        "action": "add" if add else "remove"}), "evaluator", "action")


def set_blind(c: ApiClient, stage: str, blind: bool) -> dict[str, Any]:
    """Blind mode on or off: evaluators see teams by code, not by name."""
    return obj(*_send(c, "POST", _committee_path(stage, "blind"), json={"blind": blind}),
               "blind")


def objections(c: ApiClient, stage: str) -> dict[str, Any]:
    """Where the stage's objection window stands, and every objection with its answer."""
    answer = obj(*_get(c, f"{API}/office/objections/{_seg(('stage', stage))}"),
                 "stage_id", "state", "objections")
    rows(answer["objections"], f"{API}/office/objections/{stage} objections", "team_id", "n",
         "text")
    return answer


def answer_objection(c: ApiClient, stage: str, team: str, n: int,
                     text: str) -> dict[str, Any]:
    """Answer objection ``n`` of a team (it may be rewritten until confirmation)."""
    path = (f"{API}/office/objections/" + _seg(("stage", stage), ("team", team))
            + f"/{int(n)}/answer")
    return obj(*_send(c, "POST", path, json={"text": text}), "answer")


def confirm(c: ApiClient, stage: str) -> dict[str, Any]:
    """Confirm the decided result as final (after the window, every objection answered)."""
    return obj(*_send(c, "POST", f"{API}/office/confirm/{_seg(('stage', stage))}"), "at")


def arena(c: ApiClient, stage: str) -> dict[str, Any]:
    """The arena as the office sees it: ratings with intervals, bias check, withheld."""
    answer = obj(*_get(c, f"{API}/office/arena/{_seg(('stage', stage))}"), "stage_id",
                 "votes", "voters", "cap", "teams")
    rows(answer["teams"], f"{API}/office/arena/{stage} teams", "team_id", "rating",
         "battles")
    return answer


def set_cap(c: ApiClient, stage: str, cap: int) -> dict[str, Any]:
    """Set the per-user vote cap of a stage's arena."""
    return obj(*_send(c, "POST", f"{API}/office/arena/{_seg(('stage', stage))}/cap",
                      json={"cap": cap}), "cap")
