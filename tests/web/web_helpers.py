"""Helpers the web tests share (imported by module name; the test folder is on sys.path)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from fastapi import FastAPI
from fastapi.testclient import TestClient

from kaieval.spec.load import load_dossiers, load_program
from kaieval.store import Store
from kaieval.web.accounts import Role, create_account
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


def login(client: TestClient, name: str, password: str) -> None:
    """Log a client in through the form (fetching the CSRF token first)."""
    page = client.get("/login")
    csrf = page.text.split('name="csrf" value="')[1].split('"')[0]
    res = client.post("/login", data={"name": name, "password": password, "csrf": csrf},
                      follow_redirects=False)
    assert res.status_code == 303, res.text


def csrf_of(html: str) -> str:
    return html.split('name="csrf" value="')[1].split('"')[0]
