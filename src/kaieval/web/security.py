"""Who is asking, and may they: accounts from session or token, role rules, CSRF.

Every route declares who may call it with one dependency, ``Allow(...)``; the
authorisation-matrix test walks the app's routes and fails on a route without one.
A browser is identified by a signed session cookie (Starlette's ``SessionMiddleware``,
itsdangerous), a program by ``Authorization: Bearer <token>``. State-changing requests
that come with the session cookie must carry the session's CSRF token (a form field
``csrf`` or the ``X-CSRF-Token`` header); bearer requests carry no cookie and need none.
"""

from __future__ import annotations

import hmac
import secrets
from typing import Any

from fastapi import HTTPException, Request

from kaieval.web.accounts import PUBLIC, Account, Role, by_token, get_account
from kaieval.web.context import WebContext

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def context(request: Request) -> WebContext:
    """The app's ``WebContext`` (with other server processes: its dossiers brought up to
    date once per request)."""
    ctx: WebContext = request.app.state.ctx
    if ctx.shared and not getattr(request.state, "synced", False):
        request.state.synced = True
        ctx.sync_dossiers()
    return ctx


def current_account(request: Request) -> Account | None:
    """The account behind this request (token first, then session), or None."""
    if hasattr(request.state, "account"):
        cached: Account | None = request.state.account
        return cached
    store = context(request).store
    account: Account | None = None
    auth = request.headers.get("authorization", "")
    if auth.lower().startswith("bearer "):
        account = by_token(store, auth[7:].strip())
        request.state.via_token = True
    elif "user" in request.session:
        found = get_account(store, str(request.session["user"]))
        account = found if found is not None and not found.disabled else None
    request.state.account = account
    return account


def csrf_token(request: Request) -> str:
    """This session's CSRF token (made on first use)."""
    token = request.session.get("csrf")
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session["csrf"] = token
    return token


async def _check_csrf(request: Request) -> None:
    if request.method in SAFE_METHODS or getattr(request.state, "via_token", False):
        return
    sent = request.headers.get("x-csrf-token")
    if sent is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")):
        sent = str((await request.form()).get("csrf", ""))
    expected = request.session.get("csrf")
    if not isinstance(expected, str) or not sent or not hmac.compare_digest(sent, expected):
        raise HTTPException(status_code=403, detail="missing or wrong CSRF token")


class Allow:
    """Route dependency: who may call it. ``Allow(PUBLIC)`` is anyone.

    ``roles`` is read by the authorisation-matrix test, so it is the one place a
    route's rule is written.
    """

    def __init__(self, *roles: str) -> None:
        known = {PUBLIC, *(r.value for r in Role)}
        unknown = set(roles) - known
        if unknown or not roles:
            raise ValueError(f"unknown roles {sorted(unknown)}")
        self.roles = frozenset(roles)

    async def __call__(self, request: Request) -> Account | None:
        account = current_account(request)
        if PUBLIC in self.roles:
            if account is not None:
                await _check_csrf(request)
            return account
        if account is None:
            raise HTTPException(status_code=401, detail="log in first")
        if account.role.value not in self.roles:
            raise HTTPException(status_code=403, detail="not allowed for your role")
        await _check_csrf(request)
        return account

    def __repr__(self) -> str:
        return f"Allow({', '.join(sorted(self.roles))})"


def require(account: Any) -> Account:
    """``account`` from an ``Allow`` without ``PUBLIC``: never None (for the type checker)."""
    if not isinstance(account, Account):
        raise HTTPException(status_code=401, detail="log in first")
    return account
