"""The programme office's objection pages and API: read, answer, confirm as final."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from kaieval.errors import KaiError
from kaieval.records import MAX_TEXT
from kaieval.web import objections as ob
from kaieval.web import submissions as sub
from kaieval.web.accounts import Account, Role
from kaieval.web.app import render
from kaieval.web.context import WebContext
from kaieval.web.routes.teams import status_of
from kaieval.web.security import Allow, context, require

router = APIRouter()
Office = Depends(Allow(Role.ADMIN.value))


class AnswerIn(BaseModel):
    """The office's answer to one objection."""

    text: str = Field(min_length=1, max_length=MAX_TEXT)


def _stage(ctx: WebContext, stage_id: str) -> str:
    if stage_id not in {s.id for s in ctx.program.stages}:
        raise HTTPException(status_code=404, detail=f"no stage {stage_id!r}")
    return stage_id


def overview(ctx: WebContext, stage_id: str) -> dict[str, Any]:
    """Where the stage stands and every objection with its files and answer."""
    w = ob.window(ctx, stage_id)
    return {"stage_id": stage_id, "state": w.state, "words": w.words(),
            "closes": sub.shown(w.closes) if w.closes else None,
            "confirmation": w.confirmation, "objections": ob.objections(ctx, stage_id)}


def _page(request: Request, stage_id: str, error: str | None = None,
          status_code: int = 200) -> HTMLResponse:
    ctx = context(request)
    return render(request, "objections.html", status_code=status_code,
                  stages=[s.id for s in ctx.program.stages], view=overview(ctx, stage_id),
                  error=error)


@router.get("/office/objections", response_class=HTMLResponse)
def objections_page(request: Request, account: Annotated[Account | None, Office],
                    stage: str = "") -> HTMLResponse:
    """A stage's objections, the answer forms and the confirmation button."""
    ctx = context(request)
    return _page(request, _stage(ctx, stage or ctx.program.stages[0].id))


@router.post("/office/objections/answer", response_model=None)
def answer_form(request: Request, account: Annotated[Account | None, Office],
                stage: Annotated[str, Form(max_length=128)],
                team: Annotated[str, Form(max_length=128)],
                n: Annotated[int, Form(ge=1, le=100_000)],
                text: Annotated[str, Form(max_length=40_000)]) -> Response:
    """Answer one objection."""
    me, ctx = require(account), context(request)
    stage_id = _stage(ctx, stage)
    try:
        ob.answer(ctx, stage_id, team, n, text, actor=me.name)
    except KaiError as e:
        return _page(request, stage_id, str(e), status_code=status_of(e))
    return RedirectResponse(f"/office/objections?stage={stage_id}", status_code=303)


@router.post("/office/confirm", response_model=None)
def confirm_form(request: Request, account: Annotated[Account | None, Office],
                 stage: Annotated[str, Form(max_length=128)]) -> Response:
    """Confirm the decided result as final (after the window, every objection answered)."""
    me, ctx = require(account), context(request)
    stage_id = _stage(ctx, stage)
    try:
        ob.confirm(ctx, stage_id, actor=me.name)
    except KaiError as e:
        return _page(request, stage_id, str(e), status_code=409)
    return RedirectResponse(f"/office/objections?stage={stage_id}", status_code=303)


@router.get("/api/v1/office/objections/{stage_id}")
def api_objections(stage_id: str, request: Request,
                   account: Annotated[Account | None, Office]) -> dict[str, Any]:
    """Where the stage stands, and its objections with files and answers."""
    ctx = context(request)
    return overview(ctx, _stage(ctx, stage_id))


@router.post("/api/v1/office/objections/{stage_id}/{team_id}/{n}/answer")
def api_answer(stage_id: str, team_id: str, n: int, body: AnswerIn, request: Request,
               account: Annotated[Account | None, Office]) -> dict[str, Any]:
    """Answer one objection (JSON ``{"text": ...}``)."""
    me, ctx = require(account), context(request)
    try:
        return ob.answer(ctx, _stage(ctx, stage_id), team_id, n, body.text, actor=me.name)
    except KaiError as e:
        raise HTTPException(status_code=404 if isinstance(e, ob.NoObjection) else 409,
                            detail=str(e)) from None


@router.post("/api/v1/office/confirm/{stage_id}")
def api_confirm(stage_id: str, request: Request,
                account: Annotated[Account | None, Office]) -> dict[str, Any]:
    """Confirm the decided result of a stage: stored as run ``final``."""
    me, ctx = require(account), context(request)
    try:
        return ob.confirm(ctx, _stage(ctx, stage_id), actor=me.name)
    except KaiError as e:
        raise HTTPException(status_code=409, detail=str(e)) from None
