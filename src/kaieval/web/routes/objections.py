"""The programme office's objection pages and API: read, answer, confirm as final.

The page's forms post to the API routes (``kaieval.web.reply``)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from starlette.datastructures import FormData

from kaieval.errors import KaiError
from kaieval.records import MAX_TEXT
from kaieval.web import objections as ob
from kaieval.web import submissions as sub
from kaieval.web.accounts import Account, Role
from kaieval.web.app import render
from kaieval.web.context import WebContext
from kaieval.web.reply import Page, done, json_body, read_body, refuse
from kaieval.web.security import Allow, context, require

router = APIRouter()
Office = Depends(Allow(Role.ADMIN.value))


class AnswerIn(BaseModel):
    """The office's answer to one objection."""

    text: str = Field(min_length=1, max_length=MAX_TEXT)

    @staticmethod
    def from_form(form: FormData) -> dict[str, Any]:
        """The objections page's answer box."""
        return {"text": str(form.get("text", ""))}


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


@router.get("/api/v1/office/objections/{stage_id}")
def api_objections(stage_id: str, request: Request,
                   account: Annotated[Account | None, Office]) -> dict[str, Any]:
    """Where the stage stands, and its objections with files and answers."""
    ctx = context(request)
    return overview(ctx, _stage(ctx, stage_id))


def _again(request: Request, stage_id: str) -> Page:
    """The objections page with a refusal (its forms post to the routes below)."""
    return lambda lines, code: _page(request, stage_id, "; ".join(lines), status_code=code)


@router.post("/api/v1/office/objections/{stage_id}/{team_id}/{n}/answer",
             response_model=None, openapi_extra=json_body(AnswerIn))
async def api_answer(stage_id: str, team_id: str, n: int, request: Request,
                     account: Annotated[Account | None, Office]) -> Any:
    """Answer one objection (JSON ``{"text": ...}``); rewritable until confirmation."""
    me, ctx = require(account), context(request)
    stage_id = _stage(ctx, stage_id)
    try:
        body = await read_body(request, AnswerIn, AnswerIn.from_form)
        answered = ob.answer(ctx, stage_id, team_id, n, body.text, actor=me.name)
    except KaiError as e:
        return refuse(request, e, _again(request, stage_id))
    return done(request, answered, f"/office/objections?stage={stage_id}")


@router.post("/api/v1/office/confirm/{stage_id}", response_model=None)
def api_confirm(stage_id: str, request: Request,
                account: Annotated[Account | None, Office]) -> Any:
    """Confirm the decided result of a stage (after the window, every objection
    answered): stored as run ``final``."""
    me, ctx = require(account), context(request)
    stage_id = _stage(ctx, stage_id)
    try:
        confirmed = ob.confirm(ctx, stage_id, actor=me.name)
    except KaiError as e:
        return refuse(request, e, _again(request, stage_id))
    return done(request, confirmed, f"/office/objections?stage={stage_id}")
