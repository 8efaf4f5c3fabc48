"""User evaluators' pages and API (rating and the blind arena), and the office's arena view.

Pages work without JavaScript (the CSP allows no inline script): each vote or rating is
a plain form post carrying the session's CSRF token.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from pydantic import BaseModel, Field

from kaieval.errors import KaiError, KaiErrors
from kaieval.web import users as us
from kaieval.web.accounts import Account, Role
from kaieval.web.app import render
from kaieval.web.context import WebContext
from kaieval.web.security import Allow, context, require

router = APIRouter()
User = Depends(Allow(Role.USER.value))
Office = Depends(Allow(Role.ADMIN.value))


class RatingIn(BaseModel):
    """Criterion id -> a whole number 1-5 (strict: ``"3"`` and ``true`` are refused)."""

    scores: dict[str, Annotated[int, Field(strict=True)]] = Field(default_factory=dict)


class VoteIn(BaseModel):
    choice: Literal["left", "right", "tie", "both_bad"]


class CapIn(BaseModel):
    cap: int = Field(ge=1, le=100_000)


def _http(exc: Exception) -> HTTPException:
    """A library error as the status it means (one line of detail)."""
    if isinstance(exc, LookupError):
        return HTTPException(status_code=404, detail=str(exc.args[0] if exc.args else exc))
    code = 409 if isinstance(exc, us.Conflict) else 429 if isinstance(exc, us.OverCap) else 422
    lines = [str(e) for e in exc.errors] if isinstance(exc, KaiErrors) else [str(exc)]
    return HTTPException(status_code=code, detail="; ".join(lines))


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


@router.post("/rate/{stage_id}/{component_id}/{team_id}", response_model=None)
async def rate_post(stage_id: str, component_id: str, team_id: str, request: Request,
                    account: Annotated[Account | None, User]) -> Response:
    """Submit one rating from the page (then locked)."""
    ctx, me = context(request), require(account)
    comp = _rating_comp(ctx, stage_id, component_id)
    form = await request.form()
    raw = {c.id: str(form.get(f"score_{c.id}", "")) for c in comp.criteria}
    try:
        us.submit_rating(ctx, me, stage_id, component_id, team_id, us.parse_rating(comp, raw))
    except KaiError as e:
        err = _http(e)
        return render(request, "rate.html", status_code=err.status_code,
                      forms=us.rating_forms(ctx, me), errors=[str(err.detail)], saved=False)
    return RedirectResponse("/rate", status_code=303)


@router.get("/api/v1/rating")
def api_rating_forms(request: Request,
                     account: Annotated[Account | None, User]) -> list[dict[str, Any]]:
    """The rating components, their criteria and teams, and the caller's own ratings."""
    return us.rating_forms(context(request), require(account))


@router.post("/api/v1/rating/{stage_id}/{component_id}/{team_id}")
def api_rate(stage_id: str, component_id: str, team_id: str, body: RatingIn,
             request: Request, account: Annotated[Account | None, User]) -> dict[str, Any]:
    """Submit one rating: every criterion, 1-5. A second rating of the team is a 409."""
    ctx, me = context(request), require(account)
    comp = _rating_comp(ctx, stage_id, component_id)
    try:
        rating = us.submit_rating(ctx, me, stage_id, component_id, team_id,
                                  us.parse_rating(comp, dict(body.scores)))
    except KaiError as e:
        raise _http(e) from None
    return {"status": "submitted", "key": rating.natural_key()}


# -- arena ----------------------------------------------------------------------------------

def _arena_stages(ctx: WebContext) -> list[str]:
    return [s.id for s in ctx.program.stages if us.users_components(s, "arena")]


@router.get("/arena", response_class=HTMLResponse)
def arena_page(request: Request, account: Annotated[Account | None, User],
               stage: str = "") -> HTMLResponse:
    """A battle: one prompt, two anonymous responses, four buttons."""
    ctx, me = context(request), require(account)
    stages = _arena_stages(ctx)
    stage_id = stage or (stages[0] if stages else "")
    if stage_id not in stages:
        raise HTTPException(status_code=404, detail=f"no arena in stage {stage_id!r}")
    battle, error = None, None
    try:
        battle = us.next_battle(ctx, me, stage_id)
    except us.OverCap as e:
        error = str(e)
    return render(request, "arena.html", stage_id=stage_id, stages=stages, battle=battle,
                  error=error, progress=us.progress(ctx, stage_id, me.name))


@router.post("/arena/{stage_id}/{battle_id}", response_model=None)
def arena_vote_form(stage_id: str, battle_id: str, request: Request,
                    account: Annotated[Account | None, User],
                    choice: Annotated[str, Form(pattern="^(left|right|tie|both_bad)$")],
                    ) -> Response:
    """Vote from the page, then the next battle."""
    ctx, me = context(request), require(account)
    _arena(ctx, stage_id)
    try:
        us.vote(ctx, me, stage_id, battle_id, choice)
    except (KaiError, LookupError) as e:
        raise _http(e) from None
    return RedirectResponse(f"/arena?stage={stage_id}", status_code=303)


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


@router.post("/api/v1/arena/{stage_id}/battles/{battle_id}/vote")
def api_vote(stage_id: str, battle_id: str, body: VoteIn, request: Request,
             account: Annotated[Account | None, User]) -> dict[str, Any]:
    """Vote left, right, tie or both_bad on one's own battle; a second vote is a 409."""
    ctx, me = context(request), require(account)
    _arena(ctx, stage_id)
    try:
        record = us.vote(ctx, me, stage_id, battle_id, body.choice)
    except (KaiError, LookupError) as e:
        raise _http(e) from None
    return {"status": "voted", "key": record.natural_key(),
            **us.progress(ctx, stage_id, me.name)}


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
                  stages=stages)


@router.get("/api/v1/office/arena/{stage_id}")
def api_arena_overview(stage_id: str, request: Request,
                       account: Annotated[Account | None, Office]) -> dict[str, Any]:
    """The arena of a stage as the office sees it (see ``kaieval.web.users``)."""
    ctx = context(request)
    _arena(ctx, stage_id)
    return us.arena_overview(ctx, stage_id)


@router.put("/api/v1/office/arena/{stage_id}/cap")
def api_set_cap(stage_id: str, body: CapIn, request: Request,
                account: Annotated[Account | None, Office]) -> dict[str, Any]:
    """Set the per-user vote cap of a stage's arena."""
    ctx, me = context(request), require(account)
    _arena(ctx, stage_id)
    us.set_cap(ctx, stage_id, body.cap, actor=me.name)
    return {"stage_id": stage_id, "cap": body.cap}
