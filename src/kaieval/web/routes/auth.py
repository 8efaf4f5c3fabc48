"""Log in and out, change the one-time password, and who am I (``/api/v1/me``)."""

from __future__ import annotations

import hmac
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from kaieval.errors import KaiError
from kaieval.web.accounts import PUBLIC, Account, Role, authenticate, set_password
from kaieval.web.app import render
from kaieval.web.security import Allow, context, require

router = APIRouter()
ANY_ACCOUNT = tuple(r.value for r in Role)
HOME = {Role.ADMIN: "/office", Role.EXPERT: "/committee", Role.USER: "/",
        Role.TEAM: "/"}


@router.get("/login", response_class=HTMLResponse, dependencies=[Depends(Allow(PUBLIC))])
def login_page(request: Request, next: str = "") -> HTMLResponse:
    """The login form."""
    return render(request, "login.html", next=_local(next), error=None)


@router.post("/login", dependencies=[Depends(Allow(PUBLIC))])
def login(request: Request, name: Annotated[str, Form(max_length=200)],
          password: Annotated[str, Form(max_length=200)],
          csrf: Annotated[str, Form(max_length=100)] = "",
          next: Annotated[str, Form(max_length=500)] = "") -> Response:
    """Check the password (rate-limited per address and per name); start a session."""
    ctx = context(request)
    expected = request.session.get("csrf")
    if not isinstance(expected, str) or not hmac.compare_digest(csrf, expected):
        raise HTTPException(status_code=403, detail="missing or wrong CSRF token")
    host = request.client.host if request.client else "unknown"
    if not ctx.login_allowed(f"ip:{host}", f"name:{name}"):
        return render(request, "login.html", status_code=429, next=_local(next),
                      error="too_many")
    account = authenticate(ctx.store, name, password)
    if account is None:
        return render(request, "login.html", status_code=401, next=_local(next),
                      error="login_failed")
    request.session.clear()  # a fresh session (and CSRF token) after login
    request.session["user"] = account.name
    target = "/account" if account.must_change_password else (_local(next) or HOME[account.role])
    return RedirectResponse(target, status_code=303)


@router.post("/logout", dependencies=[Depends(Allow(*ANY_ACCOUNT))])
def logout(request: Request) -> RedirectResponse:
    """End the session."""
    request.session.clear()
    return RedirectResponse("/", status_code=303)


@router.get("/account", response_class=HTMLResponse)
def account_page(request: Request,
                 account: Annotated[Account | None, Depends(Allow(*ANY_ACCOUNT))]
                 ) -> HTMLResponse:
    """The account page: change the one-time password."""
    return render(request, "account.html", error=None, done=False)


@router.post("/account/password", response_class=HTMLResponse)
def change_password(request: Request,
                    account: Annotated[Account | None, Depends(Allow(*ANY_ACCOUNT))],
                    password: Annotated[str, Form(max_length=200)]) -> HTMLResponse:
    """Replace the one-time password."""
    me = require(account)
    try:
        set_password(context(request).store, me, password, actor=me.name)
    except KaiError as e:
        return render(request, "account.html", status_code=400, error=str(e), done=False)
    del request.state.account  # re-read on render
    return render(request, "account.html", error=None, done=True)


@router.get("/api/v1/me")
def me(account: Annotated[Account | None, Depends(Allow(*ANY_ACCOUNT))]) -> dict[str, Any]:
    """The calling account (never a password or token hash)."""
    return require(account).public()


def _local(target: str) -> str:
    """Only same-site paths as redirect targets (no open redirect)."""
    return target if target.startswith("/") and not target.startswith("//") else ""
