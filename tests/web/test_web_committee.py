"""The expert committee through the API and the pages: assignment, conflicts, drafts,
locked submissions, and the office's overview."""

from __future__ import annotations

from web_helpers import Web, csrf_of, login  # type: ignore[import-not-found]

from kaieval.records import CommitteeSheet
from kaieval.spec.program import Program
from kaieval.web import committee as cm

SHEET = "/api/v1/committee/sheets/s1/experts"


def _assign(web: Web) -> None:
    assert cm.auto_assign(web.ctx, "s1", per_team=3, actor="office") > 0


def test_auto_assignment_is_balanced_and_never_conflicted(web: Web) -> None:
    _assign(web)
    slots = cm.assignments(web.ctx, "s1")
    by_team: dict[str, set[str]] = {}
    for s in slots:
        by_team.setdefault(s.team_id, set()).add(s.evaluator)
    assert by_team["alpha"] == {"kim", "lee"}  # park is alpha-affiliated: never assigned
    assert by_team["beta"] == by_team["gamma"] == {"kim", "lee", "park"}
    assert cm.auto_assign(web.ctx, "s1", per_team=3, actor="office") == 0  # idempotent


def test_draft_submit_lock_through_the_api(web: Web) -> None:
    _assign(web)
    kim = web.client("kim")
    mine = kim.get("/api/v1/committee/assignments").json()
    assert {(r["team_id"], r["status"]) for r in mine} == {
        ("alpha", "not_started"), ("beta", "not_started"), ("gamma", "not_started")}
    res = kim.post(f"{SHEET}/beta/draft", json={"scores": {"report": 7}, "comment": "draft"})
    assert res.status_code == 200, res.text
    res = kim.post(f"{SHEET}/beta/submit", json={"scores": {"report": 7}})
    assert res.status_code == 422 and "missing: logs" in res.json()["detail"]
    res = kim.post(f"{SHEET}/beta/submit", json={"scores": {"report": 7, "logs": 4.5},
                                                 "comment": "solid logs"})
    assert res.status_code == 200, res.text
    sheets = [r for r in web.ctx.store.records() if isinstance(r, CommitteeSheet)]
    assert [(s.evaluator_id, s.affiliation, s.scores) for s in sheets] == [
        ("kim", "Seoul Institute", {"report": 7.0, "logs": 4.5})]
    # locked: neither a new submission nor a draft changes it
    assert kim.post(f"{SHEET}/beta/submit",
                    json={"scores": {"report": 1, "logs": 1}}).status_code == 409
    assert kim.post(f"{SHEET}/beta/draft", json={"scores": {"report": 1}}).status_code == 409
    assert web.ctx.store.get_object("draft/s1/experts/beta/kim") is None
    assert web.ctx.store.audit_verify() == []


def test_each_assignment_shows_its_state_also_after_a_retraction(web: Web) -> None:
    _assign(web)
    kim = web.client("kim")
    assert kim.post(f"{SHEET}/alpha/draft", json={"scores": {"report": 2}}).status_code == 200
    assert kim.post(f"{SHEET}/beta/submit",
                    json={"scores": {"report": 7, "logs": 4}}).status_code == 200
    states = {r["team_id"]: r["status"] for r in kim.get("/api/v1/committee/assignments").json()}
    assert states == {"alpha": "in_draft", "beta": "submitted", "gamma": "not_started"}
    web.ctx.store.retract("sheet/s1/experts/beta/kim", actor="office", reason="test")
    states = {r["team_id"]: r["status"] for r in kim.get("/api/v1/committee/assignments").json()}
    assert states["beta"] == "submitted"  # still locked: the office retracted it, not kim
    slot = cm.Slot("s1", "experts", "beta", "kim")
    sheet = cm.submitted(web.ctx, slot)
    assert sheet is not None and sheet.scores == {"report": 7.0, "logs": 4.0}
    assert cm.submitted(web.ctx, cm.Slot("s1", "experts", "gamma", "kim")) is None
    assert kim.post(f"{SHEET}/beta/draft", json={"scores": {"report": 1}}).status_code == 409


def test_bad_scores_are_refused(web: Web) -> None:
    _assign(web)
    kim = web.client("kim")
    for body in ({"scores": {"report": 11, "logs": 1}}, {"scores": {"report": -1, "logs": 1}},
                 {"scores": {"charisma": 3}}):
        res = kim.post(f"{SHEET}/beta/submit", json=body)
        assert res.status_code == 422, (body, res.text)
    res = kim.post(f"{SHEET}/beta/submit", content=b'{"scores": {"report": NaN, "logs": 1}}',
                   headers={"content-type": "application/json"})
    assert res.status_code == 422


def test_unassigned_and_conflicted_sheets_are_closed(web: Web) -> None:
    _assign(web)
    park = web.client("park")  # affiliated with alpha
    assert park.get("/committee/s1/experts/alpha").status_code == 403
    assert park.post(f"{SHEET}/alpha/draft", json={"scores": {"report": 9}}).status_code == 403
    assert park.post(f"{SHEET}/alpha/submit",
                     json={"scores": {"report": 9, "logs": 5}}).status_code == 403
    # even if the office forces the assignment, it is refused
    import pytest

    from kaieval.errors import KaiError
    with pytest.raises(KaiError, match="conflict of interest"):
        cm.set_assignment(web.ctx, cm.Slot("s1", "experts", "alpha", "park"), True, "office")
    cm.set_assignment(web.ctx, cm.Slot("s1", "experts", "beta", "kim"), False, "office")
    assert web.client("kim").get("/committee/s1/experts/beta").status_code == 403


def test_sheet_pages_with_csrf(web: Web) -> None:
    _assign(web)
    c = web.client()
    login(c, "kim", web.passwords["kim"])
    page = c.get("/committee/s1/experts/gamma")
    assert page.status_code == 200 and 'name="score_report"' in page.text
    html = {"Accept": "text/html"}
    form = {"score_report": "8", "score_logs": "3", "comment": "<script>alert(1)</script>"}
    # the page's form posts to the API route; without the session's CSRF token: refused
    assert c.post(f"{SHEET}/gamma/submit", data=form, headers=html).status_code == 403
    bad = c.post(f"{SHEET}/gamma/draft", headers=html,
                 data={**form, "score_logs": "lots", "csrf": csrf_of(page.text)})
    assert bad.status_code == 422 and 'name="score_report"' in bad.text  # the page again
    assert "scores.logs" in bad.text
    saved = c.post(f"{SHEET}/gamma/draft", headers=html,
                   data={**form, "csrf": csrf_of(page.text)})
    assert saved.status_code == 200 and 'id="saved"' in saved.text  # after the 303
    res = c.post(f"{SHEET}/gamma/submit", data={**form, "csrf": csrf_of(page.text)},
                 headers=html)
    assert res.status_code == 200 and 'id="locked"' in res.text
    assert str(res.url).endswith("/committee/s1/experts/gamma")
    assert "<script>alert(1)</script>" not in res.text and "&lt;script&gt;" in res.text
    # the same route answers JSON to a program (cookie and CSRF header, no HTML asked)
    again = c.post(f"{SHEET}/gamma/submit", json={"scores": {"report": 1, "logs": 1}},
                   headers={"X-CSRF-Token": csrf_of(page.text), "Accept": "application/json"})
    assert again.status_code == 409 and again.json()["errors"]


def test_office_sees_progress_alpha_and_outliers(web: Web) -> None:
    _assign(web)
    for who, report in (("kim", 8), ("lee", 7)):
        for team in ("beta", "gamma"):
            res = web.client(who).post(f"{SHEET}/{team}/submit",
                                       json={"scores": {"report": report, "logs": 4}})
            assert res.status_code == 200, res.text
    web.client("park").post(f"{SHEET}/beta/submit", json={"scores": {"report": 1, "logs": 4}})
    overview = web.client("office").get("/api/v1/office/committee/s1").json()
    (experts,) = overview
    beta = next(t for t in experts["teams"] if t["team_id"] == "beta")
    assert beta["submitted"] == ["kim", "lee", "park"] and beta["points"] is not None
    assert set(experts["alpha"]) == {"report", "logs"}
    assert any(o["evaluator"] == "park" and o["item"] == "report" for o in experts["outliers"])
    assert web.client("kim").get("/api/v1/office/committee/s1").status_code == 403



def test_others_sheets_follow_the_spec(web: Web) -> None:
    _assign(web)
    url = "/api/v1/committee/sheets/s1/experts/beta/submit"
    assert web.client("lee").post(url, json={"scores": {"report": 5, "logs": 2},
                                             "comment": "LEE-NOTE"}).status_code == 200
    kim = web.client("kim")
    assert "LEE-NOTE" not in kim.get("/committee/s1/experts/beta").text  # before submitting
    assert kim.post(url, json={"scores": {"report": 6, "logs": 3}}).status_code == 200
    assert "LEE-NOTE" in kim.get("/committee/s1/experts/beta").text  # after, by default
    data = web.ctx.program.model_dump(mode="python", by_alias=True, exclude_unset=True)
    data["stages"][0]["composition"][1]["reveal_sheets"] = "never"
    web.ctx.program = Program.model_validate(data)
    assert "LEE-NOTE" not in kim.get("/committee/s1/experts/beta").text  # never, per spec


def test_the_sheet_links_the_teams_evidence_files(web: Web) -> None:
    from kaieval.web.accounts import get_account
    from kaieval.web.submissions import store_file

    _assign(web)
    team = get_account(web.ctx.store, "alpha-team")
    assert team is not None
    meta = store_file(web.ctx, "s1", team, "training-log.txt", b"step 1 loss 2.3\n")
    page = web.client("kim").get("/committee/s1/experts/alpha").text
    link = f'/files/s1/alpha/{meta["sha256"]}'
    assert link in page and "training-log.txt" in page
    assert web.client("kim").get(link).content == b"step 1 loss 2.3\n"
    assert web.client("park").get(link).status_code in (403, 404)  # conflicted with alpha
