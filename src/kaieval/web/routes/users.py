"""User evaluators' pages and API (rating and the blind arena), and the office's arena view.

Pages work without JavaScript (the CSP allows no inline script): each vote or rating is
a plain form post, with the session's CSRF token, to the same API route a program uses
(see ``kaieval.web.reply``).
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse
from pydantic import BaseModel, Field
from starlette.datastructures import FormData

from kaieval.errors import KaiError
from kaieval.web import users as us
from kaieval.web.accounts import Account, Role
from kaieval.web.app import render
from kaieval.web.context import WebContext
from kaieval.web.reply import done, json_body, lines_of, prefixed, read_body, refuse, status_of
from kaieval.web.security import Allow, context, current_account, require

router = APIRouter()
User = Depends(Allow(Role.USER.value))
Office = Depends(Allow(Role.ADMIN.value))


class RatingIn(BaseModel):
    """Criterion id -> a whole number 1-5 (strict: ``"3"`` and ``true`` are refused)."""

    scores: dict[str, Annotated[int, Field(strict=True)]] = Field(default_factory=dict)

    @staticmethod
    def from_form(form: FormData) -> dict[str, Any]:
        """The rating page's radio buttons ``score_<criterion>``."""
        return {"scores": prefixed(form, "score_", int)}


class VoteIn(BaseModel):
    """One vote: which side was better, or a tie, or both bad."""

    choice: Literal["left", "right", "tie", "both_bad"]

    @staticmethod
    def from_form(form: FormData) -> dict[str, Any]:
        """The arena page's four buttons, each a ``choice``."""
        return {"choice": str(form.get("choice", ""))}


class CapIn(BaseModel):
    """The most votes one user may give in a stage's arena."""

    cap: int = Field(ge=1, le=100_000)

    @staticmethod
    def from_form(form: FormData) -> dict[str, Any]:
        """The office arena page's cap field."""
        return {"cap": prefixed(form, "", int).get("cap", "")}


def _http(exc: Exception) -> HTTPException:
    """A library error as the status it means (one line of detail)."""
    return HTTPException(status_code=status_of(exc), detail="; ".join(lines_of(exc)))


def _rating_comp(ctx: WebContext, stage_id: str, component_id: str) -> Any:
    try:
        return us.rating_component(ctx, stage_id, component_id)
    except KaiError as e:
        raise HTTPException(status_code=404, detail=str(e)) from None


def _arena(ctx: WebContext, stage_id: str) -> None:
    try:
        us.arena_stage(ctx, stage_id)
    except KaiError as e:
        raise HTTPException(status_code=404, detail=str(e)) from None


# -- rating ---------------------------------------------------------------------------------

@router.get("/rate", response_class=HTMLResponse)
def rate_page(request: Request, account: Annotated[Account | None, User]) -> HTMLResponse:
    """Every rating component with the teams to rate (names or codes, as the spec says)."""
    return render(request, "rate.html", forms=us.rating_forms(context(request), require(account)),
                  errors=[], saved=False)


@router.get("/api/v1/rating")
def api_rating_forms(request: Request,
                     account: Annotated[Account | None, User]) -> list[dict[str, Any]]:
    """The rating components, their criteria and teams, and the caller's own ratings."""
    return us.rating_forms(context(request), require(account))


@router.post("/api/v1/rating/{stage_id}/{component_id}/{team_id}", response_model=None,
             openapi_extra=json_body(RatingIn))
async def api_rate(stage_id: str, component_id: str, team_id: str, request: Request,
                   account: Annotated[Account | None, User]) -> Any:
    """Submit one rating: every criterion, 1-5. A second rating of the team is a 409."""
    ctx, me = context(request), require(account)
    comp = _rating_comp(ctx, stage_id, component_id)
    try:
        body = await read_body(request, RatingIn, RatingIn.from_form)
        rating = us.submit_rating(ctx, me, stage_id, component_id, team_id,
                                  us.parse_rating(comp, dict(body.scores)))
    except KaiError as e:
        return refuse(request, e, lambda lines, code: render(
            request, "rate.html", status_code=code, forms=us.rating_forms(ctx, me),
            errors=lines))
    return done(request, {"status": "submitted", "key": rating.natural_key()}, "/rate")


# -- arena ----------------------------------------------------------------------------------

def _arena_stages(ctx: WebContext) -> list[str]:
    return [s.id for s in ctx.program.stages if us.users_components(s, "arena")]


@router.get("/arena", response_class=HTMLResponse)
def arena_page(request: Request, account: Annotated[Account | None, User],
               stage: str = "") -> HTMLResponse:
    """A battle: one prompt, two anonymous responses, four buttons."""
    return _arena_page(request, stage)


def _arena_page(request: Request, stage: str, error: str | None = None,
                status_code: int = 200) -> HTMLResponse:
    ctx, me = context(request), require(current_account(request))
    stages = _arena_stages(ctx)
    stage_id = stage or (stages[0] if stages else "")
    if stage_id not in stages:
        raise HTTPException(status_code=404, detail=f"no arena in stage {stage_id!r}")
    battle = None
    try:
        battle = us.next_battle(ctx, me, stage_id)
    except us.OverCap as e:
        error = error or str(e)
    return render(request, "arena.html", status_code=status_code, stage_id=stage_id,
                  stages=stages, battle=battle, error=error,
                  progress=us.progress(ctx, stage_id, me.name))


@router.get("/api/v1/arena/{stage_id}/battle")
def api_battle(stage_id: str, request: Request,
               account: Annotated[Account | None, User]) -> dict[str, Any]:
    """The caller's open battle, else a new one (404 when none can be drawn; 429 at the cap)."""
    ctx, me = context(request), require(account)
    _arena(ctx, stage_id)
    try:
        battle = us.next_battle(ctx, me, stage_id)
    except KaiError as e:
        raise _http(e) from None
    if battle is None:
        raise HTTPException(status_code=404, detail="no battle to show: no responses yet")
    return {**battle, **us.progress(ctx, stage_id, me.name)}


@router.post("/api/v1/arena/{stage_id}/battles/{battle_id}/vote", response_model=None,
             openapi_extra=json_body(VoteIn))
async def api_vote(stage_id: str, battle_id: str, request: Request,
                   account: Annotated[Account | None, User]) -> Any:
    """Vote left, right, tie or both_bad on one's own battle; a second vote is a 409. The
    arena page's buttons post here and get the next battle."""
    ctx, me = context(request), require(account)
    _arena(ctx, stage_id)
    try:
        body = await read_body(request, VoteIn, VoteIn.from_form)
        record = us.vote(ctx, me, stage_id, battle_id, body.choice)
    except (KaiError, LookupError) as e:
        return refuse(request, e, lambda lines, code: _arena_page(
            request, stage_id, error="; ".join(lines), status_code=code))
    return done(request, {"status": "voted", "key": record.natural_key(),
                          **us.progress(ctx, stage_id, me.name)}, f"/arena?stage={stage_id}")


# -- office ---------------------------------------------------------------------------------

@router.get("/office/arena", response_class=HTMLResponse)
def office_arena_page(request: Request, account: Annotated[Account | None, Office],
                      stage: str = "") -> HTMLResponse:
    """Ratings with intervals, points, the position-bias check, withheld responses."""
    ctx = context(request)
    stages = _arena_stages(ctx)
    stage_id = stage or (stages[0] if stages else "")
    _arena(ctx, stage_id)
    return render(request, "office_arena.html", overview=us.arena_overview(ctx, stage_id),
                  stages=stages, errors=[])


@router.get("/api/v1/office/arena/{stage_id}")
def api_arena_overview(stage_id: str, request: Request,
                       account: Annotated[Account | None, Office]) -> dict[str, Any]:
    """The arena of a stage as the office sees it (see ``kaieval.web.users``)."""
    ctx = context(request)
    _arena(ctx, stage_id)
    return us.arena_overview(ctx, stage_id)


@router.post("/api/v1/office/arena/{stage_id}/cap", response_model=None,
             openapi_extra=json_body(CapIn))
async def api_set_cap(stage_id: str, request: Request,
                      account: Annotated[Account | None, Office]) -> Any:
    """Set the per-user vote cap of a stage's arena (the office arena page's form)."""
    ctx, me = context(request), require(account)
    _arena(ctx, stage_id)
    try:
        body = await read_body(request, CapIn, CapIn.from_form)
    except KaiError as e:
        return refuse(request, e, lambda lines, code: render(
            request, "office_arena.html", status_code=code,
            overview=us.arena_overview(ctx, stage_id), stages=_arena_stages(ctx),
            errors=lines))
    us.set_cap(ctx, stage_id, body.cap, actor=me.name)
    return done(request, {"stage_id": stage_id, "cap": body.cap},
                f"/office/arena?stage={stage_id}")
