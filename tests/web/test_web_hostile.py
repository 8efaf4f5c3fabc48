"""Hostile text in every free-text place the app renders comes out inert on every page.

Script tags, attribute breaks, ``javascript:`` links, ``</textarea>`` and bidi overrides
are stored where people can put text (an expert's affiliation, sheet comments and drafts,
team names from dossiers, evaluator ids of imported sheets, a stage result's banner,
reasons and names, and reflected request values), then every GET route is fetched as
anonymous and as each role. A page must hold no ``<script>`` element, no ``on*``
attribute, no ``javascript:`` URL and no raw bidi control; the JSON API may carry the
text as data (``application/json``, ``nosniff``).
"""

from __future__ import annotations

from html.parser import HTMLParser
from typing import Any
from urllib.parse import quote

import pytest
from fastapi.routing import APIRoute
from web_helpers import PATH_VALUES, Web  # type: ignore[import-not-found]

from kaieval.errors import KaiError
from kaieval.pipeline import save_stage_result
from kaieval.records import CommitteeSheet
from kaieval.scoring.stage import Entrant, run_stage
from kaieval.spec.messages import display_name
from kaieval.web import committee as cm
from kaieval.web.accounts import Role, create_account

BIDI = "\u202e"  # RIGHT-TO-LEFT OVERRIDE; \u2066-\u2069 and \u202a-\u202e are all refused
NAME = ('<script>alert(1)</script>" onmouseover=alert(1) x="' "' onmouseover=alert(1) x='"
        " javascript:alert(1) </textarea><b>")
"""For names, which refuse bidi and control characters (spec.messages.display_name)."""
TEXT = NAME + f" {BIDI}evil\u202c \u2066iso\u2069"
"""For free text, which may hold anything printable."""
ID = f'<script>alert(3)<b>x"onmouseover="alert(4)"{BIDI}'
"""For record ids (no whitespace, no slash)."""
KINDS = PATH_VALUES
BIDI_CONTROLS = {chr(c) for c in (*range(0x202A, 0x202F), *range(0x2066, 0x206A))}


class _Inert(HTMLParser):
    """Collects what would make a page run something."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.bad: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "script":
            self.bad.append("<script> element")
        for name, value in attrs:
            if name.startswith("on"):
                self.bad.append(f"{name}= attribute on <{tag}>")
            if name in ("href", "src", "action", "formaction") and value and \
                    value.strip().lower().replace("\t", "").startswith("javascript:"):
                self.bad.append(f"{name}={value!r} on <{tag}>")


def _check(body: str, where: str) -> None:
    parser = _Inert()
    parser.feed(body)
    assert not parser.bad, f"{where}: {parser.bad}"
    assert "<script>alert" not in body and 'href="javascript:' not in body.lower(), where
    assert "<b>" not in body, f"{where}: raw markup from stored text"
    leaked = {f"U+{ord(c):04X}" for c in body if c in BIDI_CONTROLS}
    assert not leaked, f"{where}: raw bidi controls {sorted(leaked)}"


def _hostile(web: Web) -> dict[str, str]:
    """Store hostile text everywhere it can go; returns the extra expert's token."""
    ctx = web.ctx
    with pytest.raises(KaiError, match="letters, digits"):  # names cannot hold any of it
        create_account(ctx.store, "<script>", Role.USER, actor="setup")
    with pytest.raises(ValueError, match="U\\+202E"):  # nor can dossier names hold bidi
        display_name(f"Team {BIDI}ateb")
    assert display_name(NAME) == NAME  # but markup-like names pass: the pages must escape
    ctx.dossiers = [d.model_copy(update={"team": d.team.model_copy(update={"name": NAME})})
                    if d.team.id == "beta" else d for d in ctx.dossiers]
    _, _, token = create_account(ctx.store, "mallory", Role.EXPERT, affiliation=TEXT[:300],
                                 actor="setup")
    cm.auto_assign(ctx, "s1", per_team=4, actor="office")
    for who, tok in (("mallory", token), ("kim", web.tokens["kim"])):
        res = web.client().post("/api/v1/committee/sheets/s1/experts/beta/submit",
                                headers={"Authorization": f"Bearer {tok}"},
                                json={"scores": {"report": 7, "logs": 4}, "comment": TEXT})
        assert res.status_code == 200, (who, res.text)
    res = web.client("kim").post("/api/v1/committee/sheets/s1/experts/gamma/draft",
                                json={"scores": {"report": 5}, "comment": TEXT})
    assert res.status_code == 200, res.text
    ctx.store.put([CommitteeSheet(stage_id="s1", team_id="beta", source="committee",
                                  component_id="experts", evaluator_id=ID, affiliation=TEXT,
                                  scores={"report": 1.0, "logs": 1.0}, comment=TEXT)],
                  actor="import")
    prog = ctx.program
    entrants = [Entrant(team_id=d.team.id, name=d.team.name, submission=d.submissions["s1"])
                for d in ctx.dossiers]
    result = run_stage(prog, prog.stage("s1"), entrants, ctx.store.records(stage_id="s1"),
                       replicates=20)
    result = result.model_copy(update={
        "banner": TEXT, "rule": TEXT,
        "teams": tuple(t.model_copy(update={"decision_reason": TEXT, "team_name": TEXT})
                       for t in result.teams)})
    save_stage_result(ctx.store, result, "main", actor="office")
    save_stage_result(ctx.store, result, "final", actor="office")  # the public shows final
    return {"mallory": token}


def _get_paths(web: Web) -> list[str]:
    """Every GET route with real path values, plus requests that reflect what they get."""
    paths = []
    stack: list[Any] = list(web.app.routes)
    while stack:
        route = stack.pop()
        inner = getattr(route, "original_router", None)
        if inner is not None:
            stack.extend(inner.routes)
        elif isinstance(route, APIRoute) and "GET" in route.methods:
            paths.append(route.path.format(**KINDS))
    q = quote(NAME)
    paths += [f"/office?stage={q}", f"/lang/{q}", f"/login?next={q}", f"/login?next=/{q}",
              "/committee/s1/experts/gamma", f"/committee/s1/experts/{quote(ID)}",
              f"/api/v1/public/stages/{q}", f"/nothing/{q}"]
    return sorted(set(paths))


def test_hostile_text_is_inert_on_every_page_for_every_role(web: Web) -> None:
    tokens = {**web.tokens, **_hostile(web)}
    callers = [None, "office", "kim", "mallory", "user1", "alpha-team"]
    pages = 0
    for path in _get_paths(web):
        for who in callers:
            c = web.client()
            if who is not None:
                c.headers["Authorization"] = f"Bearer {tokens[who]}"
            res = c.get(path, headers={"referer": f"javascript:alert(1)//{NAME}"})
            assert res.status_code < 500, (path, who, res.text[:300])
            kind = res.headers.get("content-type", "")
            if kind.startswith("text/html"):
                _check(res.text, f"GET {path} as {who or 'anonymous'}")
                pages += 1
            else:
                assert res.status_code in (303, 307) or kind.startswith("application/json"), \
                    (path, kind)
    assert pages > 30
    # the payloads did reach the pages (escaped), so the test is not vacuous
    kim = web.client("kim")
    sheet = kim.get("/committee/s1/experts/beta").text
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in sheet and "&#34; onmouseover" in sheet
    assert "&lt;/textarea&gt;" in kim.get("/committee/s1/experts/gamma").text
    board = web.client().get("/").text
    assert board.count("&lt;script&gt;alert(1)") >= 3 and "[U+202E]" in board
