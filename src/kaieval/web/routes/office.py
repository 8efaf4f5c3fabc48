"""The programme office's committee pages: assign evaluators, blind mode, progress."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from kaieval.errors import KaiError
from kaieval.web import committee as cm
from kaieval.web.accounts import Account, Role, accounts
from kaieval.web.app import render
from kaieval.web.office import committee_overview
from kaieval.web.security import Allow, context, require

router = APIRouter()
Office = Depends(Allow(Role.ADMIN.value))


def _stage(request: Request, stage_id: str) -> str:
    if stage_id not in {s.id for s in context(request).program.stages}:
        raise HTTPException(status_code=404, detail=f"no stage {stage_id!r}")
    return stage_id


@router.get("/office", response_class=HTMLResponse)
def office_page(request: Request, account: Annotated[Account | None, Office],
                stage: str = "") -> HTMLResponse:
    """Committee progress of a stage (the first by default) and the assignment tools."""
    ctx = context(request)
    stage_id = _stage(request, stage or ctx.program.stages[0].id)
    experts = [a for a in accounts(ctx.store) if a.role is Role.EXPERT]
    return render(request, "office.html", stage_id=stage_id, overview=committee_overview(
        ctx, stage_id), experts=experts, blind=bool(ctx.store.get_object(
            f"setting/{stage_id}/blind")), error=None)


@router.post("/office/assign")
def assign(request: Request, account: Annotated[Account | None, Office],
           stage: Annotated[str, Form(max_length=128)],
           per_team: Annotated[int, Form(ge=1, le=100)]) -> RedirectResponse:
    """Assign evaluators automatically: balanced load, conflicts excluded."""
    me = require(account)
    cm.auto_assign(context(request), _stage(request, stage), per_team, actor=me.name)
    return RedirectResponse(f"/office?stage={stage}", status_code=303)


@router.post("/office/assignment", response_model=None)
def edit_assignment(request: Request, account: Annotated[Account | None, Office],
                    stage: Annotated[str, Form(max_length=128)],
                    component: Annotated[str, Form(max_length=128)],
                    team: Annotated[str, Form(max_length=128)],
                    evaluator: Annotated[str, Form(max_length=128)],
                    action: Annotated[str, Form(pattern="^(add|remove)$")]) -> Any:
    """Add or remove one assignment (a conflicted evaluator is refused)."""
    me = require(account)
    ctx = context(request)
    try:
        cm.set_assignment(ctx, cm.Slot(_stage(request, stage), component, team, evaluator),
                          action == "add", actor=me.name)
    except KaiError as e:
        experts = [a for a in accounts(ctx.store) if a.role is Role.EXPERT]
        return render(request, "office.html", status_code=400, stage_id=stage,
                      overview=committee_overview(ctx, stage), experts=experts,
                      blind=bool(ctx.store.get_object(f"setting/{stage}/blind")), error=str(e))
    return RedirectResponse(f"/office?stage={stage}", status_code=303)


@router.post("/office/blind")
def set_blind(request: Request, account: Annotated[Account | None, Office],
              stage: Annotated[str, Form(max_length=128)],
              blind: Annotated[str, Form(pattern="^(on|off)$")]) -> RedirectResponse:
    """Blind mode: evaluators see teams by code, not by name."""
    me = require(account)
    key = f"setting/{_stage(request, stage)}/blind"
    context(request).store.put_objects({key: {"on": True} if blind == "on" else None},
                                       actor=me.name)
    return RedirectResponse(f"/office?stage={stage}", status_code=303)


@router.get("/api/v1/office/committee/{stage_id}")
def api_overview(stage_id: str, request: Request,
                 account: Annotated[Account | None, Office]) -> list[dict[str, Any]]:
    """Per committee component: progress, aggregated points, α per item, outlier sheets."""
    return committee_overview(context(request), _stage(request, stage_id))
