"""Public pages and the public API: the leaderboard of confirmed stages, language switch.

Only what a stage result publishes is shown here: ranks, totals, decisions with their
reasons, and the robustness of the cut. Never sheets, comments, evaluator names or
votes by person (the result payload holds none of them), and never a result before the
office confirmed it: a decided ``main`` run still open to objections and an undecidable
``provisional`` run are not public (kaieval.web.objections).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from kaieval.report.charts import totals_svg
from kaieval.scoring.results import StageResult
from kaieval.web import i18n
from kaieval.web.accounts import PUBLIC
from kaieval.web.app import render
from kaieval.web.context import WebContext
from kaieval.web.security import Allow, context

router = APIRouter()
Anyone = Depends(Allow(PUBLIC))
PUBLIC_RUNS = ("final", "demo")
"""Run labels the public sees, in order: a confirmed run, else the demo's (labelled
simulated). A ``main`` run (decided, open to objections) and a ``provisional`` one
(undecidable) are never public."""


@dataclass(frozen=True)
class PublicView:
    """What the public pages show, built once per set of stored stage results."""

    results: list[tuple[str, StageResult]]
    stages: list[dict[str, Any]]
    charts: dict[str, str]
    pages: dict[str, bytes] = field(default_factory=dict)
    """The leaderboard as the public sees it, per language (``render``'s cache)."""


def public_view(ctx: WebContext) -> PublicView:
    """The public results, summaries and charts; rebuilt only when a stage result changes.

    Parsing every result and drawing its chart on each request made the leaderboard the
    slowest page under load; one cheap query of the stage results' stamps decides here.
    """
    key = ctx.store.stage_result_stamps()
    cached = ctx.public_cache
    if cached is not None and cached[0] == key:
        return cached[1]  # type: ignore[return-value]
    with ctx.building("public view"):
        cached = ctx.public_cache
        if cached is not None and cached[0] == key:  # built while this request waited
            return cached[1]  # type: ignore[return-value]
        return _build_view(ctx, key)


def _build_view(ctx: WebContext, key: object) -> PublicView:
    results = []
    for stage in ctx.program.stages:
        for run in PUBLIC_RUNS:
            payload = ctx.store.stage_result(stage.id, run)
            if payload is not None:
                results.append((run, StageResult.model_validate(payload)))
                break
    view = PublicView(results=results, stages=[_summary(ctx, run, r) for run, r in results],
                      charts={r.stage_id: totals_svg(r) for _, r in results})
    ctx.public_cache = (key, view)
    return view


RECHECK_S = 1.0
"""How long a leaderboard kept for the public is served without asking the database
whether another process (a ``kai`` command, another worker) stored a stage result.
This process's own stage-result writes are seen at once (``Store.stage_result_writes``).
Asking on every request cost a query per visitor -- under load on PostgreSQL a round
trip and a pooled connection each, which made the page's p95 miss its target."""


def kept_pages(ctx: WebContext) -> dict[str, bytes] | None:
    """The leaderboard pages kept for the public, by language, if the results they show
    are still the stored ones (else None: the route rebuilds them). Checked against the
    database at most once per ``RECHECK_S`` while this process stored no stage result."""
    cached = ctx.public_cache
    if cached is None:
        return None
    writes, now = ctx.store.stage_result_writes, time.monotonic()
    seen_writes, seen_at, seen_key = ctx.public_checked
    if not (seen_key is cached[0] and seen_writes == writes and now - seen_at < RECHECK_S):
        if cached[0] != ctx.store.stage_result_stamps():
            return None
        ctx.public_checked = (writes, now, cached[0])
    view: PublicView = cached[1]  # type: ignore[assignment]
    return view.pages


def public_results(ctx: WebContext) -> list[tuple[str, StageResult]]:
    """``(run label, result)`` of every stage that has a public result, in programme order."""
    return public_view(ctx).results


def run_words(ctx: WebContext, run: str, r: StageResult) -> str:
    """Which result this is, in words: final with its confirmation date, or simulated."""
    if run == "final":
        confirmation = ctx.store.get_object(f"confirmation/{r.stage_id}") or {}
        at = str(confirmation.get("at", ""))[:10]
        return f"final result, confirmed {at} after the objection period" if at else \
            "final result"
    return "simulated demonstration result, not a decision"


def _summary(ctx: WebContext, run: str, r: StageResult) -> dict[str, Any]:
    return {
        "stage_id": r.stage_id, "stage_name": r.stage_name, "date": r.date.isoformat(),
        "run": run, "run_words": run_words(ctx, run, r),
        "simulated": bool(r.simulated_sources) or run == "demo",
        "banner": r.banner, "rule": r.rule, "total_points": r.total_points,
        "robustness": r.robustness.note if r.robustness else None,
        "teams": [{"rank": t.rank, "team_id": t.team_id, "team_name": t.team_name,
                   "total": t.total, "decision": t.decision, "reason": t.decision_reason,
                   "survival_probability": t.survival_probability,
                   "not_measured": list(t.not_measured)} for t in r.teams],
    }


@router.get("/", response_class=HTMLResponse, dependencies=[Anyone])
def leaderboard(request: Request) -> HTMLResponse:
    """The public leaderboard: every stage with a decided result."""
    view = public_view(context(request))
    return render(request, "leaderboard.html", anonymous_cache=view.pages, stages=view.stages,
                  charts=view.charts)


@router.get("/lang/{code}", dependencies=[Anyone])
def switch_language(code: str, request: Request) -> RedirectResponse:
    """Switch the interface language (a cookie) and go back."""
    if code not in i18n.LANGS:
        raise HTTPException(status_code=404, detail=f"no language {code!r}")
    back = request.headers.get("referer") or "/"
    target = back if back.startswith(str(request.base_url)) else "/"
    response = RedirectResponse(target, status_code=303)
    response.set_cookie("lang", code, max_age=365 * 86400, samesite="lax", httponly=True)
    return response


@router.get("/api/v1/public/stages", dependencies=[Anyone])
def api_stages(ctx: Annotated[WebContext, Depends(context)]) -> list[dict[str, Any]]:
    """Every stage with a public result: id, name, date, run, whether simulated."""
    return [{k: v for k, v in _summary(ctx, run, r).items() if k != "teams"}
            for run, r in public_results(ctx)]


@router.get("/api/v1/public/stages/{stage_id}", dependencies=[Anyone])
def api_stage(stage_id: str, ctx: Annotated[WebContext, Depends(context)]) -> dict[str, Any]:
    """One stage's public result: ranks, totals, decisions and reasons, robustness."""
    for run, r in public_results(ctx):
        if r.stage_id == stage_id:
            return _summary(ctx, run, r)
    raise HTTPException(status_code=404, detail=f"no public result for stage {stage_id!r}")
