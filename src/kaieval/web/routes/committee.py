"""The expert evaluator's pages and API: assigned teams, the sheet, draft and submit.

An evaluator reaches only sheets assigned to them and never one of a team they are
affiliated with (checked on every request, page or API). Another evaluator's sheet for
the same team is shown only after one's own is submitted.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, StrictFloat
from starlette.datastructures import FormData

from kaieval.errors import KaiError
from kaieval.records import MAX_TEXT, CommitteeSheet
from kaieval.web import committee as cm
from kaieval.web.accounts import Account, Role
from kaieval.web.app import render
from kaieval.web.context import WebContext
from kaieval.web.reply import Page, Refused, done, json_body, prefixed, read_body, refuse
from kaieval.web.security import Allow, context, require
from kaieval.web.submissions import files

router = APIRouter()
Expert = Depends(Allow(Role.EXPERT.value))


class SheetIn(BaseModel):
    """A sheet as the API takes it: item id -> score (a number), and a comment."""

    scores: dict[str, StrictFloat] = Field(default_factory=dict)
    comment: str = Field(default="", max_length=MAX_TEXT)

    @staticmethod
    def from_form(form: FormData) -> dict[str, Any]:
        """The sheet page's fields: ``score_<item>`` (empty = not scored) and ``comment``."""
        return {"scores": prefixed(form, "score_", float),
                "comment": str(form.get("comment", ""))}


def _slot(ctx: WebContext, me: Account, stage_id: str, component_id: str,
          team_id: str) -> cm.Slot:
    try:
        return cm.check_slot(ctx, me, stage_id, component_id, team_id)
    except KaiError as e:
        raise HTTPException(status_code=403, detail=str(e)) from None


def _others(ctx: WebContext, slot: cm.Slot) -> list[CommitteeSheet]:
    return [r for r in ctx.store.records(stage_id=slot.stage_id, kind="sheet",
                                         team_id=slot.team_id)
            if isinstance(r, CommitteeSheet) and r.component_id == slot.component_id
            and r.evaluator_id != slot.evaluator]


def _rows(ctx: WebContext, me: Account) -> list[dict[str, Any]]:
    slots = []
    for slot in sorted(cm.assignments(ctx), key=lambda s: (s.stage_id, s.component_id,
                                                          s.team_id)):
        if slot.evaluator != me.name:
            continue
        dossier = ctx.dossier(slot.team_id)
        if dossier is None or cm.conflicted(me, dossier):
            continue
        slots.append(slot)
    status = cm.states(ctx, slots)
    return [{"slot": s, "status": status[s.key], "label": _label(ctx, s)} for s in slots]


def _label(ctx: WebContext, slot: cm.Slot) -> str:
    if ctx.store.get_object(f"setting/{slot.stage_id}/blind"):
        return cm.blind_code(slot.stage_id, slot.team_id,
                             [d.team.id for d in cm.entrants(ctx, slot.stage_id)])
    dossier = ctx.dossier(slot.team_id)
    return dossier.team.name if dossier else slot.team_id


@router.get("/committee", response_class=HTMLResponse)
def my_assignments(request: Request, account: Annotated[Account | None, Expert]) -> HTMLResponse:
    """The evaluator's assigned teams and the state of each sheet."""
    return render(request, "committee.html", rows=_rows(context(request), require(account)))


@router.get("/committee/{stage_id}/{component_id}/{team_id}", response_class=HTMLResponse)
def sheet_page(stage_id: str, component_id: str, team_id: str, request: Request,
               account: Annotated[Account | None, Expert], saved: bool = False,
               ) -> HTMLResponse:
    """The sheet: rubric items, draft values, or the locked submission. Its buttons post
    to the API's draft and submit routes."""
    ctx, me = context(request), require(account)
    slot = _slot(ctx, me, stage_id, component_id, team_id)
    return _sheet(request, ctx, slot, errors=[], saved=saved)


def _sheet(request: Request, ctx: WebContext, slot: cm.Slot, errors: list[str],
           saved: bool, status_code: int = 200) -> HTMLResponse:
    comp = ctx.program.stage(slot.stage_id).component(slot.component_id)
    done = cm.submitted(ctx, slot)
    values = ({"scores": dict(done.scores), "comment": done.comment} if done
              else cm.draft(ctx, slot))
    reveal = done is not None and comp.reveal_sheets == "after_submit"
    return render(request, "sheet.html", status_code=status_code, slot=slot, component=comp,
                  label=_label(ctx, slot), values=values, locked=done is not None,
                  errors=errors, saved=saved, others=_others(ctx, slot) if reveal else [],
                  evidence=files(ctx, slot.stage_id, slot.team_id))


def _scores(ctx: WebContext, slot: cm.Slot, body: SheetIn) -> dict[str, float]:
    """The body's scores checked against the rubric; any problem is refused, naming it."""
    comp = ctx.program.stage(slot.stage_id).component(slot.component_id)
    scores, problems = cm.parse_scores(comp, {k: repr(v) for k, v in body.scores.items()})
    unknown = sorted(set(body.scores) - {it.id for it in comp.rubric})
    problems += [f"{k}: unknown item of component '{comp.id}'" for k in unknown]
    if problems:
        raise Refused(problems)
    return scores


def _page_of(request: Request, ctx: WebContext, slot: cm.Slot) -> Page:
    return lambda lines, code: _sheet(request, ctx, slot, errors=lines, saved=False,
                                      status_code=code)


def _path(slot: cm.Slot) -> str:
    return f"/committee/{slot.stage_id}/{slot.component_id}/{slot.team_id}"


@router.get("/api/v1/committee/assignments")
def api_assignments(request: Request,
                    account: Annotated[Account | None, Expert]) -> list[dict[str, Any]]:
    """The caller's assignments with the state of each sheet."""
    ctx, me = context(request), require(account)
    return [{"stage_id": r["slot"].stage_id, "component_id": r["slot"].component_id,
             "team_id": r["slot"].team_id, "label": r["label"], "status": r["status"]}
            for r in _rows(ctx, me)]


@router.get("/api/v1/committee/sheets/{stage_id}/{component_id}/{team_id}")
def api_sheet(stage_id: str, component_id: str, team_id: str, request: Request,
              account: Annotated[Account | None, Expert]) -> dict[str, Any]:
    """One sheet: its rubric, the draft or the submitted values, the evidence files, and
    the other evaluators' sheets where the spec reveals them."""
    ctx, me = context(request), require(account)
    slot = _slot(ctx, me, stage_id, component_id, team_id)
    comp = ctx.program.stage(stage_id).component(component_id)
    done = cm.submitted(ctx, slot)
    reveal = done is not None and comp.reveal_sheets == "after_submit"
    return {"label": _label(ctx, slot), "status": "submitted" if done else "draft",
            "rubric": [{"id": it.id, "title": it.title, "max": it.max} for it in comp.rubric],
            "values": ({"scores": dict(done.scores), "comment": done.comment} if done
                       else cm.draft(ctx, slot)),
            "evidence": files(ctx, stage_id, team_id),
            "others": [{"evaluator_id": o.evaluator_id, "scores": dict(o.scores),
                        "comment": o.comment} for o in _others(ctx, slot)] if reveal else []}


@router.post("/api/v1/committee/sheets/{stage_id}/{component_id}/{team_id}/draft",
             response_model=None, openapi_extra=json_body(SheetIn))
async def api_save_draft(stage_id: str, component_id: str, team_id: str, request: Request,
                         account: Annotated[Account | None, Expert]) -> Any:
    """Save a draft sheet (any subset of items); the sheet page's "save draft"."""
    ctx, me = context(request), require(account)
    slot = _slot(ctx, me, stage_id, component_id, team_id)
    try:
        body = await read_body(request, SheetIn, SheetIn.from_form)
        scores = _scores(ctx, slot, body)
        cm.save_draft(ctx, slot, scores, body.comment, actor=me.name)
    except KaiError as e:
        return refuse(request, e, _page_of(request, ctx, slot))
    return done(request, {"status": "draft", "scores": scores}, _path(slot) + "?saved=1")


@router.post("/api/v1/committee/sheets/{stage_id}/{component_id}/{team_id}/submit",
             response_model=None, openapi_extra=json_body(SheetIn))
async def api_submit(stage_id: str, component_id: str, team_id: str, request: Request,
                     account: Annotated[Account | None, Expert]) -> Any:
    """Submit the sheet: stored as a committee record, then locked."""
    ctx, me = context(request), require(account)
    slot = _slot(ctx, me, stage_id, component_id, team_id)
    try:
        body = await read_body(request, SheetIn, SheetIn.from_form)
        sheet = cm.submit(ctx, slot, me, _scores(ctx, slot, body), body.comment)
    except KaiError as e:
        return refuse(request, e, _page_of(request, ctx, slot))
    return done(request, {"status": "submitted", "key": sheet.natural_key()}, _path(slot))
