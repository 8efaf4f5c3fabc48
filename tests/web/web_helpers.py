"""Helpers the web tests share (imported by module name; the test folder is on sys.path)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from kaieval.spec.load import load_dossiers, load_program
from kaieval.store import Store
from kaieval.web.accounts import Role, create_account
from kaieval.web.app import create_app
from kaieval.web.context import WebContext

DATA = Path(__file__).resolve().parents[1] / "data" / "bad_records"
PATH_VALUES = {"stage_id": "s1", "component_id": "experts", "team_id": "beta", "code": "en",
               "n": "1", "sha": "0" * 64, "battle_id": "none"}
"""A value for every path parameter of the app's routes (kim is assigned to beta): the
tests that walk every route use it, so a new parameter name is added here once."""
PEOPLE = {  # name: (role, team, affiliation)
    "office": (Role.ADMIN, None, "Programme office"),
    "kim": (Role.EXPERT, None, "Seoul Institute"),
    "park": (Role.EXPERT, None, "Alpha University"),  # alpha's consortium: conflicted
    "lee": (Role.EXPERT, None, "Busan University"),
    "user1": (Role.USER, None, ""),
    "alpha-team": (Role.TEAM, "alpha", "Alpha AI"),
}


@dataclass
class Web:
    """The app, its context, and each account's one-time password and API token."""

    app: FastAPI
    ctx: WebContext
    passwords: dict[str, str]
    tokens: dict[str, str]

    def client(self, who: str | None = None) -> TestClient:
        """A client; with ``who``, one that sends that account's bearer token."""
        c = TestClient(self.app, base_url="http://127.0.0.1")
        if who is not None:
            c.headers["Authorization"] = f"Bearer {self.tokens[who]}"
        return c


def make_ctx(url: str) -> WebContext:
    prog, phash = load_program(DATA / "program.yaml")
    dossiers = load_dossiers([DATA / f"{t}.yaml" for t in ("alpha", "beta", "gamma")], prog,
                             check_files=False)
    return WebContext(store=Store(url), program=prog, program_hash=phash,
                      dossiers=[d.dossier for d in dossiers], secret="s" * 40,
                      login_rate="5/minute")


def populate(store: Store) -> tuple[dict[str, str], dict[str, str]]:
    passwords, tokens = {}, {}
    for name, (role, team, affiliation) in PEOPLE.items():
        _, passwords[name], tokens[name] = create_account(
            store, name, role, team_id=team, affiliation=affiliation, actor="setup")
    return passwords, tokens


BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def login(client: TestClient, name: str, password: str) -> None:
    """Log a client in through the form (fetching the CSRF token first); from then on it
    asks for HTML as a browser does, so form posts to API routes answer with pages."""
    client.headers["Accept"] = BROWSER_ACCEPT
    page = client.get("/login")
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    res = client.post("/login", data={"name": name, "password": password, "csrf": csrf},
                      follow_redirects=False)
    assert res.status_code == 303, res.text


def csrf_of(html: str) -> str:
    return html.split('name="csrf" value="')[1].split('"')[0]


@contextmanager
def serving(ctx: WebContext) -> Iterator[str]:
    """The app on a real port in a thread; yields its base URL."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(create_app(ctx), host="127.0.0.1", port=port,
                                           log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):  # bounded: 10 s
        if server.started:
            break
        time.sleep(0.05)
    assert server.started, "server did not start"
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def browser_login(page: Any, base: str, name: str, password: str) -> None:
    """Log in through the form in a browser and replace the one-time password."""
    page.goto(f"{base}/login")
    page.fill("input[name=name]", name)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/account")
    page.fill("input[name=password]", f"{name}-new-passphrase")
    page.click("form[action='/account/password'] button")
    page.wait_for_selector("#password-changed")
