"""Objections to a decided result, the office's answers and confirmation as final; the
public sees only final results, says which they are, and nothing private."""

from __future__ import annotations

from pathlib import Path

import pytest
from teams_helpers import PRIVATE, days_later, decide  # type: ignore[import-not-found]
from web_helpers import Web, csrf_of, login  # type: ignore[import-not-found]

from kaieval.web import objections as ob

OBJ = "/api/v1/team/objections/s1"
HOSTILE = "<script>alert('x')</script> the committee misread our logs"


def test_public_never_shows_main_or_provisional(web: Web) -> None:
    decide(web.ctx)  # main (decided, open for objections) and provisional (undecidable)
    c = web.client()
    assert c.get("/api/v1/public/stages").json() == []
    assert c.get("/api/v1/public/stages/s1").status_code == 404
    assert 'id="no-results"' in c.get("/").text
    assert c.get("/teams/alpha").status_code == 404
    assert c.get("/api/v1/public/teams/alpha").status_code == 404


def test_objection_window_answers_and_confirmation(web: Web,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    team, office = web.client("alpha-team"), web.client("office")
    assert team.post(OBJ, data={"text": "too early"}).status_code == 409  # nothing decided
    decide(web.ctx)
    assert ob.window(web.ctx, "s1").state == "open"
    row = team.get("/api/v1/team/stages").json()[0]
    assert row["state"] == "open" and row["words"].startswith(
        "decided, open for objections until ") and row["words"].endswith("(not final)")
    res = team.post(OBJ, data={"text": HOSTILE}, files=[("files", ("evidence.txt", b"log"))])
    assert res.status_code == 200, res.text
    assert res.json()["n"] == 1 and res.json()["files"][0]["name"] == "evidence.txt"
    assert team.post(OBJ, data={"text": "second point"}).json()["n"] == 2
    assert team.post(OBJ, data={"text": "   "}).status_code == 422
    assert team.post(OBJ, data={"text": "x" * 20_001}).status_code == 422
    res = office.post("/api/v1/office/confirm/s1")
    assert res.status_code == 409 and "open until" in res.json()["detail"]
    days_later(monkeypatch, 11)  # stage s1: objection_days defaults to 10
    assert ob.window(web.ctx, "s1").state == "closed"
    assert team.post(OBJ, data={"text": "late"}).status_code == 409
    res = office.post("/api/v1/office/confirm/s1")
    assert res.status_code == 409 and "unanswered: alpha #1, alpha #2" in res.json()["detail"]
    for n in (1, 2):
        assert office.post(f"/api/v1/office/objections/s1/alpha/{n}/answer",
                           json={"text": f"answer {n}"}).status_code == 200
    assert office.post("/api/v1/office/objections/s1/alpha/9/answer",
                       json={"text": "x"}).status_code == 404
    assert web.client().get("/api/v1/public/stages").json() == []
    res = office.post("/api/v1/office/confirm/s1")
    assert res.status_code == 200 and res.json()["by"] == "office"
    assert web.ctx.store.stage_result("s1", "final") == web.ctx.store.stage_result("s1", "main")
    assert web.ctx.store.stage_result("s1", "provisional") is not None  # all kept
    assert ob.window(web.ctx, "s1").state == "final"
    assert office.post("/api/v1/office/confirm/s1").status_code == 409
    assert office.post("/api/v1/office/objections/s1/alpha/1/answer",
                       json={"text": "changed"}).status_code == 409
    public = web.client().get("/api/v1/public/stages").json()
    assert [(s["stage_id"], s["run"]) for s in public] == [("s1", "final")]
    assert public[0]["run_words"].startswith("final result, confirmed ")
    assert team.get("/api/v1/team/stages").json()[0]["state"] == "final"
    assert web.ctx.store.audit_verify() == []


def test_hostile_text_is_escaped_and_public_pages_hold_nothing_private(
        web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    decide(web.ctx)
    team = web.client()
    login(team, "alpha-team", web.passwords["alpha-team"])
    page = team.get("/team")
    res = team.post("/api/v1/team/objections/s1", data={"csrf": csrf_of(page.text),
                                                        "text": HOSTILE},
                    files=[("files", ("<b>x</b>.txt", b"evidence"))])
    assert res.status_code == 200, res.text
    assert "<script>alert" not in res.text and "&lt;script&gt;alert(" in res.text
    assert "<b>x</b>" not in res.text
    office = web.client()
    login(office, "office", web.passwords["office"])
    page = office.get("/office/objections?stage=s1")
    assert "<script>alert" not in page.text and "&lt;script&gt;alert(" in page.text
    assert office.post("/api/v1/office/objections/s1/alpha/1/answer", data={
        "csrf": csrf_of(page.text), "text": "<i>answered</i>"}).status_code == 200
    days_later(monkeypatch, 11)
    page = office.get("/office/objections?stage=s1")
    assert "<i>answered</i>" not in page.text and "&lt;i&gt;answered&lt;/i&gt;" in page.text
    res = office.post("/api/v1/office/confirm/s1", data={"csrf": csrf_of(page.text)})
    assert res.status_code == 200 and 'id="confirmation"' in res.text
    anyone = web.client()
    bodies = [anyone.get(u).text for u in ("/", "/teams/alpha", "/teams/beta",
                                          "/api/v1/public/stages", "/api/v1/public/stages/s1",
                                          "/api/v1/public/teams/alpha")]
    for body in bodies:
        for secret in (*PRIVATE, "misread our logs", "answered", "evidence", "alpha-team",
                       "office"):
            assert secret not in body, secret
    assert 'data-run="final"' in bodies[0] and "<svg" in bodies[0]
    assert 'data-run="final"' in bodies[1] and bodies[1].count("<svg") >= 2
    assert anyone.get("/teams/nobody").status_code == 404


def test_objections_on_each_backend(web_any: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    decide(web_any.ctx)
    team, office = web_any.client("alpha-team"), web_any.client("office")
    assert team.post(OBJ, data={"text": "please recheck"}).status_code == 200
    days_later(monkeypatch, 11)
    assert office.post("/api/v1/office/objections/s1/alpha/1/answer",
                       json={"text": "rechecked"}).status_code == 200
    assert office.post("/api/v1/office/confirm/s1").status_code == 200
    overview = office.get("/api/v1/office/objections/s1").json()
    assert overview["state"] == "final" and overview["objections"][0]["answer"]["text"] == \
        "rechecked"
    assert [s["run"] for s in web_any.client().get("/api/v1/public/stages").json()] == ["final"]
    assert web_any.ctx.store.audit_verify() == []


def test_reports_say_which_result_they_are(web: Web, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from kaieval.cli import app

    decide(web.ctx)
    days_later(monkeypatch, 11)
    ob.confirm(web.ctx, "s1", actor="office")
    for run, says in (("main", "Decided, not final"), ("final", "Final: confirmed")):
        out = tmp_path / run
        res = CliRunner().invoke(app, ["report", "--out", str(out), "s1", "--db",
                                       web.ctx.store.url, "--run-label", run])
        assert res.exit_code == 0, res.output
        assert says in (out / "report.html").read_text()
