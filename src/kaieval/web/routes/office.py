"""The programme office's committee page and API: assign evaluators, blind mode,
progress. The page's forms post to the API routes (``kaieval.web.reply``)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field, StrictBool
from starlette.datastructures import FormData

from kaieval.errors import KaiError
from kaieval.web import committee as cm
from kaieval.web.accounts import Account, Role, accounts
from kaieval.web.app import render
from kaieval.web.office import committee_overview
from kaieval.web.reply import Page, done, json_body, prefixed, read_body, refuse
from kaieval.web.security import Allow, context, require

router = APIRouter()
Office = Depends(Allow(Role.ADMIN.value))


def _stage(request: Request, stage_id: str) -> str:
    if stage_id not in {s.id for s in context(request).program.stages}:
        raise HTTPException(status_code=404, detail=f"no stage {stage_id!r}")
    return stage_id


class AssignIn(BaseModel):
    """Automatic assignment: this many evaluators per team and committee component."""

    per_team: int = Field(ge=1, le=100)

    @staticmethod
    def from_form(form: FormData) -> dict[str, Any]:
        """The office page's "assign" form."""
        return {"per_team": prefixed(form, "", int).get("per_team", "")}


class AssignmentIn(BaseModel):
    """Add or remove one evaluator's assignment to a team's sheet."""

    component_id: str = Field(min_length=1, max_length=128)
    team_id: str = Field(min_length=1, max_length=128)
    evaluator: str = Field(min_length=1, max_length=128)
    action: Literal["add", "remove"]

    @staticmethod
    def from_form(form: FormData) -> dict[str, Any]:
        """The office page's assignment form (component, team, evaluator, add/remove)."""
        return {"component_id": str(form.get("component", "")),
                "team_id": str(form.get("team", "")),
                "evaluator": str(form.get("evaluator", "")),
                "action": str(form.get("action", ""))}


class BlindIn(BaseModel):
    """Blind mode on or off: evaluators see teams by code, not by name."""

    blind: StrictBool

    @staticmethod
    def from_form(form: FormData) -> dict[str, Any]:
        """The office page's toggle sends ``on`` or ``off``."""
        value = str(form.get("blind", ""))
        return {"blind": {"on": True, "off": False}.get(value, value)}


def _page(request: Request, stage_id: str, errors: list[str] | None = None,
          status_code: int = 200) -> HTMLResponse:
    ctx = context(request)
    experts = [a for a in accounts(ctx.store) if a.role is Role.EXPERT]
    return render(request, "office.html", status_code=status_code, stage_id=stage_id,
                  overview=committee_overview(ctx, stage_id), experts=experts,
                  blind=bool(ctx.store.get_object(f"setting/{stage_id}/blind")),
                  error="; ".join(errors) if errors else None)


def _again(request: Request, stage_id: str) -> Page:
    return lambda lines, code: _page(request, stage_id, lines, status_code=code)


@router.get("/office", response_class=HTMLResponse)
def office_page(request: Request, account: Annotated[Account | None, Office],
                stage: str = "") -> HTMLResponse:
    """Committee progress of a stage (the first by default) and the assignment tools;
    its forms post to the API routes below."""
    ctx = context(request)
    return _page(request, _stage(request, stage or ctx.program.stages[0].id))


@router.get("/api/v1/office/committee/{stage_id}")
def api_overview(stage_id: str, request: Request,
                 account: Annotated[Account | None, Office]) -> list[dict[str, Any]]:
    """Per committee component: progress, aggregated points, α per item, outlier sheets."""
    return committee_overview(context(request), _stage(request, stage_id))


@router.post("/api/v1/office/committee/{stage_id}/assign", response_model=None,
             openapi_extra=json_body(AssignIn))
async def api_assign(stage_id: str, request: Request,
                     account: Annotated[Account | None, Office]) -> Any:
    """Assign evaluators automatically: balanced load, conflicts excluded (submitted
    sheets keep their evaluators)."""
    me, ctx = require(account), context(request)
    stage_id = _stage(request, stage_id)
    try:
        body = await read_body(request, AssignIn, AssignIn.from_form)
        added = cm.auto_assign(ctx, stage_id, body.per_team, actor=me.name)
    except KaiError as e:
        return refuse(request, e, _again(request, stage_id))
    return done(request, {"stage_id": stage_id, "added": added,
                          "assignments": [_slot(s) for s in cm.assignments(ctx, stage_id)]},
                f"/office?stage={stage_id}")


@router.post("/api/v1/office/committee/{stage_id}/assignments", response_model=None,
             openapi_extra=json_body(AssignmentIn))
async def api_assignment(stage_id: str, request: Request,
                         account: Annotated[Account | None, Office]) -> Any:
    """Add or remove one assignment (a conflicted evaluator is refused)."""
    me, ctx = require(account), context(request)
    stage_id = _stage(request, stage_id)
    try:
        body = await read_body(request, AssignmentIn, AssignmentIn.from_form)
        slot = cm.Slot(stage_id, body.component_id, body.team_id, body.evaluator)
        cm.set_assignment(ctx, slot, body.action == "add", actor=me.name)
    except KaiError as e:
        return refuse(request, e, _again(request, stage_id))
    return done(request, {**_slot(slot), "action": body.action}, f"/office?stage={stage_id}")


@router.post("/api/v1/office/committee/{stage_id}/blind", response_model=None,
             openapi_extra=json_body(BlindIn))
async def api_blind(stage_id: str, request: Request,
                    account: Annotated[Account | None, Office]) -> Any:
    """Blind mode: evaluators see teams by code, not by name."""
    me, ctx = require(account), context(request)
    stage_id = _stage(request, stage_id)
    try:
        body = await read_body(request, BlindIn, BlindIn.from_form)
    except KaiError as e:
        return refuse(request, e, _again(request, stage_id))
    ctx.store.put_objects({f"setting/{stage_id}/blind": {"on": True} if body.blind else None},
                          actor=me.name)
    return done(request, {"stage_id": stage_id, "blind": body.blind},
                f"/office?stage={stage_id}")


def _slot(slot: cm.Slot) -> dict[str, str]:
    return {"stage_id": slot.stage_id, "component_id": slot.component_id,
            "team_id": slot.team_id, "evaluator": slot.evaluator}
