"""Accounts, sessions, tokens, CSRF and the login rate limit."""

from __future__ import annotations

from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from typer.testing import CliRunner
from web_helpers import PATH_VALUES, Web, csrf_of, login  # type: ignore[import-not-found]

from kaieval.cli import app as cli
from kaieval.web.accounts import PUBLIC, authenticate, disable
from kaieval.web.security import Allow


def test_login_session_and_logout(web: Web) -> None:
    c = web.client()
    assert c.get("/committee", follow_redirects=False).headers["location"].startswith("/login")
    login(c, "kim", web.passwords["kim"])
    cookie = c.cookies.get("kai_session")
    assert cookie
    res = c.get("/api/v1/me")
    assert res.json()["name"] == "kim" and "password_hash" not in res.json()
    page = c.get("/committee")
    assert page.status_code == 200
    assert c.post("/logout").status_code == 403  # no CSRF token
    assert c.post("/logout", data={"csrf": csrf_of(page.text)}).status_code == 200
    assert c.get("/api/v1/me").status_code == 401


def test_session_cookie_flags(web: Web) -> None:
    c = web.client()
    c.get("/login")
    page = c.get("/login")
    res = c.post("/login", data={"name": "kim", "password": web.passwords["kim"],
                                 "csrf": csrf_of(page.text)}, follow_redirects=False)
    header = res.headers["set-cookie"].lower()
    assert "httponly" in header and "samesite=lax" in header


def test_wrong_password_and_rate_limit(web: Web) -> None:
    c = web.client()
    for _ in range(5):
        page = c.get("/login")
        res = c.post("/login", data={"name": "kim", "password": "nope",
                                     "csrf": csrf_of(page.text)})
        assert res.status_code == 401
    page = c.get("/login")
    res = c.post("/login", data={"name": "kim", "password": web.passwords["kim"],
                                 "csrf": csrf_of(page.text)})
    assert res.status_code == 429  # even the right password, until the window passes


def test_one_time_password_must_be_changed(web: Web) -> None:
    c = web.client()
    page = c.get("/login")
    res = c.post("/login", data={"name": "lee", "password": web.passwords["lee"],
                                 "csrf": csrf_of(page.text)}, follow_redirects=False)
    assert res.headers["location"] == "/account"
    page = c.get("/account")
    assert c.post("/account/password", data={"password": "short", "csrf": csrf_of(page.text)}
                  ).status_code == 400
    res = c.post("/account/password", data={"password": "a long passphrase here",
                                             "csrf": csrf_of(page.text)})
    assert res.status_code == 200 and 'id="password-changed"' in res.text
    assert authenticate(web.ctx.store, "lee", "a long passphrase here") is not None
    assert authenticate(web.ctx.store, "lee", web.passwords["lee"]) is None


def test_disabled_accounts_and_bad_tokens_get_nothing(web: Web) -> None:
    assert web.client("kim").get("/api/v1/me").status_code == 200
    disable(web.ctx.store, "kim", actor="office", reason="left the committee")
    assert web.client("kim").get("/api/v1/me").status_code == 401
    c = web.client()
    for token in ("kai_" + "x" * 43, "nonsense", "kai_" + "y" * 500):
        assert c.get("/api/v1/me", headers={"Authorization": f"Bearer {token}"}
                     ).status_code == 401


def test_security_headers(web: Web) -> None:
    res = web.client().get("/")
    assert "default-src 'self'" in res.headers["content-security-policy"]
    assert res.headers["x-frame-options"] == "DENY"
    assert res.headers["x-content-type-options"] == "nosniff"


def test_every_route_declares_who_may_call_it(web: Web) -> None:
    """The authorisation matrix: each route has one Allow rule, and each role gets exactly
    what the rule says (401 without an account, 403 with the wrong role)."""
    kinds = PATH_VALUES
    from kaieval.web import committee as cm

    cm.auto_assign(web.ctx, "s1", per_team=3, actor="office")
    roles = {PUBLIC: None, "admin": "office", "expert": "kim", "user": "user1",
             "team": "alpha-team"}
    checked = 0
    for route in _routes(web.app.routes):
        if not isinstance(route, APIRoute):
            assert route.path in {"/openapi.json"}, f"route {route.path} has no rule"
            continue
        rules = [d.call for d in route.dependant.dependencies if isinstance(d.call, Allow)]
        rules += [d.call for sub in route.dependant.dependencies for d in sub.dependencies
                  if isinstance(d.call, Allow)]
        assert len(rules) == 1, f"{route.methods} {route.path}: {len(rules)} Allow rules"
        allowed = rules[0].roles
        path = route.path.format(**kinds)
        for method in route.methods:
            for role, who in roles.items():
                c = web.client(who)
                res = c.request(method, path, follow_redirects=False)
                if PUBLIC in allowed or role in allowed:
                    assert res.status_code not in (401, 403), (method, path, role, res.text)
                else:
                    want = 401 if who is None else 403
                    got = res.status_code
                    if who is None and got == 303:  # pages send the public to /login
                        got = 401
                    assert got == want, (method, path, role, got)
                checked += 1
    assert checked > 50


def _routes(routes: list) -> list:
    """Routes, with included routers opened (FastAPI keeps them nested; no prefixes here)."""
    out = []
    for route in routes:
        inner = getattr(route, "original_router", None)
        out.extend(_routes(inner.routes) if inner is not None else [route])
    return out


def test_users_cli(tmp_path: object) -> None:
    import json
    from pathlib import Path

    db = f"sqlite:///{Path(str(tmp_path)) / 'u.sqlite'}"
    runner = CliRunner()
    res = runner.invoke(cli, ["users", "add", "choi", "--role", "expert", "--affiliation",
                              "KAIST", "--db", db, "--token-out",
                              str(Path(str(tmp_path)) / "choi.token")])
    assert res.exit_code == 0, res.output
    assert "one-time password: " in res.output and "kai_" not in res.output
    token = (Path(str(tmp_path)) / "choi.token")
    assert token.read_text().startswith("kai_") and token.stat().st_mode & 0o777 == 0o600
    res = runner.invoke(cli, ["users", "add", "choi", "--role", "expert", "--affiliation",
                              "KAIST", "--db", db])
    assert res.exit_code == 2 and "already exists" in res.output
    for bad, says in ((["--role", "king"], "expected one of"),
                      (["--role", "team"], "needs --team"),
                      (["--role", "expert"], "needs --affiliation")):
        res = runner.invoke(cli, ["users", "add", "x1", *bad, "--db", db])
        assert res.exit_code == 2 and says in res.output, res.output
    res = runner.invoke(cli, ["users", "add", "bad name", "--role", "user", "--db", db])
    assert res.exit_code == 2 and "letters, digits" in res.output
    rows = [json.loads(x) for x in runner.invoke(cli, ["users", "list", "--db", db]
                                                 ).output.splitlines()]
    assert [(r["name"], r["role"]) for r in rows] == [("choi", "expert")]
    assert all("hash" not in k for r in rows for k in r)
    assert runner.invoke(cli, ["users", "disable", "choi", "--db", db]).exit_code == 0
    assert runner.invoke(cli, ["users", "disable", "nobody", "--db", db]).exit_code == 2


def test_token_only_accounts_cannot_log_in(web: Web) -> None:
    from kaieval.web.accounts import Role, create_account

    account, password, token = create_account(web.ctx.store, "bot", Role.USER, actor="office",
                                              password_login=False)
    assert password == "" and not account.must_change_password
    assert authenticate(web.ctx.store, "bot", "") is None
    assert authenticate(web.ctx.store, "bot", "!") is None
    c = web.client()
    c.headers["Authorization"] = f"Bearer {token}"
    assert c.get("/api/v1/me").json()["name"] == "bot"


def test_the_login_rate_limit_is_shared_by_every_server_process(web: Web) -> None:
    """Two workers (two apps, one store): attempts made at one count at the other."""
    from web_helpers import make_ctx  # type: ignore[import-not-found]

    from kaieval.web.app import create_app

    other_ctx = make_ctx(web.ctx.store._url.render_as_string(hide_password=False))
    other = TestClient(create_app(other_ctx), base_url="http://127.0.0.1")
    for client in (web.client(), other, web.client(), other, web.client()):
        page = client.get("/login")
        res = client.post("/login", data={"name": "kim", "password": "nope",
                                          "csrf": csrf_of(page.text)})
        assert res.status_code == 401
    page = other.get("/login")
    res = other.post("/login", data={"name": "kim", "password": web.passwords["kim"],
                                     "csrf": csrf_of(page.text)})
    assert res.status_code == 429  # 5/minute reached across both processes
    other_ctx.store.close()
