"""The web app: one FastAPI application over the store and the library calls the CLI uses.

Server-rendered pages (Jinja2, autoescaped) and a JSON API under ``/api/v1``
(``/openapi.json`` describes it). Public data is only under ``/api/v1/public/`` and the
public pages. Each route module adds its routes with an ``Allow`` rule (security.py).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import anyio
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.datastructures import Headers, MutableHeaders
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import cookie_parser
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kaieval.errors import KaiError
from kaieval.version import code_version
from kaieval.web import i18n
from kaieval.web.context import WebContext
from kaieval.web.reply import from_page
from kaieval.web.security import csrf_token, current_account

TEMPLATES = Path(__file__).resolve().parent / "templates"
SESSION_HOURS = 8
SESSION_COOKIE = "kai_session"
_VARY = {"Vary": "Cookie"}  # as the session middleware marks every response
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; "
                               "style-src 'self' 'unsafe-inline'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "same-origin",
}


class _SecurityHeaders:
    """Adds ``HEADERS`` to every response (plain ASGI: ``BaseHTTPMiddleware`` cost a few
    milliseconds per request under load, see docs/performance.md)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in HEADERS.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)


class _KeptPages:
    """Answers a ``GET`` of a page kept for visitors without an account (the leaderboard,
    ``render``'s ``anonymous_cache``) before routing, sessions and the thread pool: the
    same bytes the route would send, for a request with neither a session cookie nor a
    token. Anything else -- or a page not kept, or kept for results since changed -- goes
    on to the app as usual."""

    def __init__(self, app: ASGIApp, ctx: WebContext) -> None:
        self.app, self.ctx = app, ctx
        # SQLite reads (WAL) never wait and are in-process: checked inline; a database
        # server is asked from a worker thread, so a slow one cannot stall the event loop
        self.inline = ctx.store.url.startswith("sqlite")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kept = self.ctx.kept_pages.get(scope["path"]) if scope["type"] == "http" \
            and scope["method"] == "GET" else None
        if kept is not None:
            headers = Headers(scope=scope)
            cookies = cookie_parser(headers.get("cookie", ""))
            if "authorization" not in headers and SESSION_COOKIE not in cookies:
                pages = kept() if self.inline else await anyio.to_thread.run_sync(kept)
                code = cookies.get("lang", i18n.DEFAULT)
                page = pages.get(code if code in i18n.LANGS else i18n.DEFAULT) \
                    if pages is not None else None
                if page is not None:
                    await HTMLResponse(page, headers=_VARY)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def create_app(ctx: WebContext) -> FastAPI:
    """The app for one store and programme."""
    from kaieval.web.routes import auth, committee, objections, office, public, teams, users

    app = FastAPI(title="kaieval", version=code_version(), docs_url=None, redoc_url=None)
    app.state.ctx = ctx
    templates = Environment(loader=FileSystemLoader(TEMPLATES),
                            autoescape=select_autoescape(default=True), finalize=_visible,
                            auto_reload=False, cache_size=-1)
    for name in templates.list_templates():
        # compiled now, not by the first requests: under load, dozens of concurrent first
        # requests each compiled the same template (seen in profiles of the load test)
        templates.get_template(name)
    app.state.templates = templates
    app.add_middleware(SessionMiddleware, secret_key=ctx.secret, session_cookie=SESSION_COOKIE,
                       max_age=SESSION_HOURS * 3600, same_site="lax",
                       https_only=ctx.secure_cookies)
    app.add_middleware(_KeptPages, ctx=ctx)
    app.add_middleware(_SecurityHeaders)
    for module in (public, auth, committee, office, teams, objections, users):
        app.include_router(module.router)
    ctx.kept_pages["/"] = lambda: public.kept_pages(ctx)
    app.add_exception_handler(HTTPException, _http_error)  # type: ignore[arg-type]
    app.add_exception_handler(RequestValidationError, _invalid)  # type: ignore[arg-type]
    app.add_exception_handler(KaiError, _refused)  # type: ignore[arg-type]
    return app


_BIDI = {c: f"[U+{c:04X}]" for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}
"""Direction overrides and isolates: in stored text they could make a page show a name or
a comment other than the one stored (names refuse them; comments and reasons may not)."""


def _visible(value: Any) -> Any:
    """Every ``{{ }}`` value of a page: bidi controls shown as their code, not obeyed
    (autoescaping then escapes the markup)."""
    return value.translate(_BIDI) if isinstance(value, str) else value


def lang(request: Request) -> str:
    """The interface language: the ``lang`` cookie, else Korean."""
    value = request.cookies.get("lang", i18n.DEFAULT)
    return value if value in i18n.LANGS else i18n.DEFAULT


class _LazyCsrf:
    """The session's CSRF token, made when a page prints it (``{{ csrf }}``) and not
    before: a page without a form -- the leaderboard for the public -- leaves the session
    empty, so no session cookie is sent to someone who never logs in."""

    __slots__ = ("_request", "printed")

    def __init__(self, request: Request) -> None:
        self._request = request
        self.printed = False

    def __str__(self) -> str:
        self.printed = True
        return csrf_token(self._request)

    def __html__(self) -> str:  # autoescape: the token is URL-safe text already
        return str(self)


def render(request: Request, template: str, status_code: int = 200, *,
           anonymous_cache: dict[str, bytes] | None = None, **values: Any) -> HTMLResponse:
    """A page: the template with the account, language, CSRF token and ``t`` for text.

    ``anonymous_cache``: a dict the caller keeps for as long as ``values`` stay the same
    (e.g. per set of stored results); the page as a visitor without an account sees it is
    kept there per language and served from it, so such a view costs no rendering.
    """
    code = lang(request)
    account = current_account(request)
    cache = anonymous_cache if account is None and status_code == 200 else None
    if cache is not None:
        ctx: WebContext = request.app.state.ctx
        with ctx.building("anonymous page"):  # one rendering for a crowd of visitors
            if (page := cache.get(code)) is None:
                page = _render(request, template, code, account, cache, values)
        return HTMLResponse(page)
    return HTMLResponse(_render(request, template, code, account, None, values),
                        status_code=status_code)


def _render(request: Request, template: str, code: str, account: Any,
            cache: dict[str, bytes] | None, values: dict[str, Any]) -> bytes:
    env: Environment = request.app.state.templates
    csrf = _LazyCsrf(request)
    html = env.get_template(template).render(
        request=request, account=account, lang=code,
        t=lambda key: i18n.translate(key, code), csrf=csrf,
        programme=request.app.state.ctx.program, **values)
    page = html.encode()
    if cache is not None and not csrf.printed:  # nothing of this session in the page
        cache[code] = page
    return page


async def _http_error(request: Request, exc: HTTPException) -> Response:
    if not from_page(request):
        return JSONResponse({"detail": exc.detail}, status_code=exc.status_code,
                            headers=exc.headers)
    if exc.status_code == 401:
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
    key = {403: "forbidden", 404: "not_found"}.get(exc.status_code)
    return render(request, "error.html", status_code=exc.status_code,
                  message=key or str(exc.detail), detail=str(exc.detail))


async def _refused(request: Request, exc: KaiError) -> Response:
    """A library refusal that a route did not turn into its own answer: a one-line 400."""
    detail = " ".join(str(exc).split())
    return await _http_error(request, HTTPException(status_code=400, detail=detail))


async def _invalid(request: Request, exc: RequestValidationError) -> Response:
    first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
    where = ".".join(str(p) for p in first.get("loc", ()))
    detail = f"{where}: {first.get('msg')}"
    if from_page(request):
        return render(request, "error.html", status_code=422, message=detail, detail=detail)
    return JSONResponse({"detail": detail}, status_code=422)
