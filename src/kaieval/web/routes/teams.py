"""A team's pages and API (dossier, files, objections), file downloads for those who read
them, and the public team pages.

A team account acts only for its own team (``account.team_id``; nothing in a request
names another). A file is downloaded by its team, the office, or an expert assigned to
the team for that stage and not conflicted; anyone else gets 404, as for a missing file.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, File, Form, HTTPException, Request, UploadFile
from fastapi.responses import HTMLResponse, Response

from kaieval.errors import KaiError
from kaieval.report.charts import history_svg, radar_svg, team_styles, totals_svg
from kaieval.scoring.results import StageResult
from kaieval.web import committee as cm
from kaieval.web import objections as ob
from kaieval.web import submissions as sub
from kaieval.web.accounts import PUBLIC, Account, Role
from kaieval.web.app import render
from kaieval.web.context import WebContext
from kaieval.web.reply import Page, done, refuse
from kaieval.web.routes.public import public_results, run_words
from kaieval.web.security import Allow, context, require

router = APIRouter()
TeamOnly = Depends(Allow(Role.TEAM.value))
Readers = Depends(Allow(Role.ADMIN.value, Role.EXPERT.value, Role.TEAM.value))
Anyone = Depends(Allow(PUBLIC))


async def read_upload(upload: UploadFile, limit: int) -> tuple[str, bytes]:
    """An uploaded part's name and bytes, reading at most ``limit + 1`` bytes (so an
    oversized part is refused by the size check, not held whole)."""
    data = await upload.read(limit + 1)
    return upload.filename or "file", data


def _stage(ctx: WebContext, stage_id: str) -> str:
    if stage_id not in {s.id for s in ctx.program.stages}:
        raise HTTPException(status_code=404, detail=f"no stage {stage_id!r}")
    return stage_id


def team_view(ctx: WebContext, team_id: str) -> list[dict[str, Any]]:
    """Per stage, what the team sees: deadline, its dossier and files, where the result
    stands, its own row of a decided result, its objections and their answers."""
    rows = []
    for stage in ctx.program.stages:
        w = ob.window(ctx, stage.id)
        mine = None
        if w.result is not None:
            mine = next((t for t in w.result.teams if t.team_id == team_id), None)
        deadline = stage.deadline()
        rows.append({
            "stage_id": stage.id, "stage_name": stage.name,
            "deadline": sub.shown(deadline) if deadline else None,
            "uploads_open": sub.uploads_open(stage),
            "dossier": sub.dossier_meta(ctx, team_id, stage.id),
            "files": sub.files(ctx, stage.id, team_id, "submission"),
            "state": w.state, "words": w.words(),
            "closes": sub.shown(w.closes) if w.closes else None,
            "mine": None if mine is None else {
                "rank": mine.rank, "total": mine.total, "decision": mine.decision,
                "reason": mine.decision_reason,
                "total_points": w.result.total_points if w.result else None},
            "objections": ob.objections(ctx, stage.id, team_id)})
    return rows


def _page(request: Request, me: Account, errors: list[str] | None = None, done: str = "",
          status_code: int = 200) -> HTMLResponse:
    ctx = context(request)
    return render(request, "team.html", status_code=status_code, team_id=me.team_id,
                  rows=team_view(ctx, me.team_id or ""), errors=errors or [], done=done)


@router.get("/team", response_class=HTMLResponse)
def team_page(request: Request, account: Annotated[Account | None, TeamOnly]) -> HTMLResponse:
    """The team's dashboard: uploads per stage, results open to objection, objections."""
    return _page(request, require(account))


@router.get("/files/{stage_id}/{team_id}/{sha}")
def download(stage_id: str, team_id: str, sha: str, request: Request,
             account: Annotated[Account | None, Readers]) -> Response:
    """A stored file, as an attachment (never shown inline)."""
    me, ctx = require(account), context(request)
    missing = HTTPException(status_code=404, detail="no such file")
    if not sub.SHA256.match(sha):
        raise missing
    if me.role is Role.TEAM and me.team_id != team_id:
        raise missing
    if me.role is Role.EXPERT:
        try:
            cm.check_slot(ctx, me, stage_id, _any_component(ctx, stage_id, me, team_id), team_id)
        except KaiError:
            raise missing from None
    meta = ctx.store.get_object(f"upload/{stage_id}/{team_id}/{sha}")
    if meta is None:
        raise missing
    try:
        data = sub.read_file(ctx, sha)
    except KaiError as e:
        raise HTTPException(status_code=410, detail=str(e)) from None
    name = quote(str(meta.get("name", "file")))
    return Response(data, media_type="application/octet-stream", headers={
        "Content-Disposition": f"attachment; filename*=UTF-8''{name}"})


def _any_component(ctx: WebContext, stage_id: str, me: Account, team_id: str) -> str:
    """A committee component the expert is assigned for this team and stage ('' if none)."""
    return next((s.component_id for s in cm.assignments(ctx, stage_id)
                 if s.evaluator == me.name and s.team_id == team_id), "")


# -- the API ---------------------------------------------------------------------------

@router.get("/api/v1/team/stages")
def api_team_stages(request: Request,
                    account: Annotated[Account | None, TeamOnly]) -> list[dict[str, Any]]:
    """Per stage: deadline, dossier, files, where the result stands, objections."""
    return team_view(context(request), require(account).team_id or "")


def _again(request: Request, me: Account) -> Page:
    """The team page with a refusal's lines (the forms of ``team.html`` post here)."""
    return lambda lines, code: _page(request, me, lines, status_code=code)


@router.post("/api/v1/team/dossier/{stage_id}", response_model=None)
async def api_dossier(stage_id: str, request: Request,
                      account: Annotated[Account | None, TeamOnly],
                      file: Annotated[UploadFile, File()]) -> Any:
    """Upload the dossier (multipart ``file``); checked as ``kai validate`` checks it, with
    its one-line errors."""
    me, ctx = require(account), context(request)
    name, raw = await read_upload(file, sub.MAX_DOSSIER_BYTES)
    try:
        meta = sub.upload_dossier(ctx, _stage(ctx, stage_id), me, raw, name)
    except KaiError as e:
        return refuse(request, e, _again(request, me))
    return done(request, meta, "/team?done=dossier")


@router.post("/api/v1/team/files/{stage_id}", response_model=None)
async def api_file(stage_id: str, request: Request,
                   account: Annotated[Account | None, TeamOnly],
                   file: Annotated[UploadFile, File()]) -> Any:
    """Upload one file the committee reads (technical report, training log; multipart
    ``file``); returns its name, size and sha256."""
    me, ctx = require(account), context(request)
    name, data = await read_upload(file, sub.MAX_UPLOAD_BYTES)
    try:
        meta = sub.store_file(ctx, _stage(ctx, stage_id), me, name, data)
    except KaiError as e:
        return refuse(request, e, _again(request, me))
    return done(request, meta, "/team?done=file")


@router.post("/api/v1/team/objections/{stage_id}", response_model=None)
async def api_objection(stage_id: str, request: Request,
                        account: Annotated[Account | None, TeamOnly],
                        text: Annotated[str, Form(max_length=40_000)],
                        files: Annotated[list[UploadFile] | None, File()] = None) -> Any:
    """File an objection (multipart: ``text``, any ``files``) while the window is open."""
    me, ctx = require(account), context(request)
    parts = [await read_upload(f, sub.MAX_UPLOAD_BYTES) for f in (files or [])
             if f.filename][:ob.MAX_OBJECTION_FILES + 1]
    try:
        filed = ob.file_objection(ctx, _stage(ctx, stage_id), me, text, parts)
    except KaiError as e:
        return refuse(request, e, _again(request, me))
    return done(request, filed, "/team?done=objection")


# -- public team pages -------------------------------------------------------------------

def team_history(ctx: WebContext, team_id: str) -> tuple[str, list[dict[str, Any]],
                                                         list[StageResult]]:
    """A team's public results (final or demo runs only), its name, and the results."""
    results = public_results(ctx)
    rows, name = [], ""
    for run, r in results:
        mine = next((t for t in r.teams if t.team_id == team_id), None)
        if mine is None:
            continue
        name = mine.team_name
        rows.append({"stage_id": r.stage_id, "stage_name": r.stage_name,
                     "date": r.date.isoformat(), "run": run, "run_words": run_words(ctx, run, r),
                     "rank": mine.rank, "of": len(r.teams), "total": mine.total,
                     "total_points": r.total_points, "decision": mine.decision,
                     "reason": mine.decision_reason,
                     "robustness": r.robustness.note if r.robustness else None})
    if not rows:
        raise HTTPException(status_code=404, detail=f"no public result for team {team_id!r}")
    return name, rows, [r for _, r in results]


@router.get("/teams/{team_id}", response_class=HTMLResponse, dependencies=[Anyone])
def public_team(team_id: str, request: Request) -> HTMLResponse:
    """A team's public page: its stage results and history, with the report's charts."""
    name, rows, results = team_history(context(request), team_id)
    styles = team_styles(results)
    charts = {"history": history_svg(results, styles) if len(results) > 1 else None,
              "radar": [radar_svg(r, styles) for r in results
                        if any(t.team_id == team_id for t in r.teams)],
              "totals": [totals_svg(r) for r in results
                         if any(t.team_id == team_id for t in r.teams)]}
    return render(request, "team_public.html", team_id=team_id, team_name=name, rows=rows,
                  charts=charts)


@router.get("/api/v1/public/teams/{team_id}", dependencies=[Anyone])
def api_public_team(team_id: str,
                    ctx: Annotated[WebContext, Depends(context)]) -> dict[str, Any]:
    """A team's public results per stage (final or simulated demo runs only)."""
    name, rows, _ = team_history(ctx, team_id)
    return {"team_id": team_id, "team_name": name, "stages": rows}
