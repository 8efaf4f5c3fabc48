"""One route per action (``kaieval.web.reply``): JSON bodies that are not the model, and
the same route answering JSON to a program and a page to a browser's form post."""

from __future__ import annotations

from web_helpers import Web, csrf_of, login  # type: ignore[import-not-found]

from kaieval.records import CommitteeSheet
from kaieval.web import committee as cm
from kaieval.web.reply import MAX_JSON_BYTES

DRAFT = "/api/v1/committee/sheets/s1/experts/beta/draft"
JSON = {"content-type": "application/json"}


def _kim(web: Web) -> object:
    cm.auto_assign(web.ctx, "s1", per_team=3, actor="office")
    return web.client("kim")


def test_bodies_that_are_not_the_model_are_one_line_422s(web: Web) -> None:
    kim = _kim(web)
    cases = {
        b"{not json": "body: not JSON",
        b"[1, 2]": "body: Input should be a valid dictionary",
        b"[" * 100_000 + b"]" * 100_000: "body: not JSON",
        b'{"scores": {"report": true}}': "scores.report: Input should be a valid number",
        b'{"scores": {"report": "7"}}': "scores.report: Input should be a valid number",
        b'{"scores": {"report": 7}, "comment": 5}': "comment: Input should be a valid string",
        b'{"scores": {"report": NaN}}': "report: nan is outside 0–10",
        b'{"scores": {"nope": 1}}': "nope: unknown item of component 'experts'",
    }
    for body, expected in cases.items():
        res = kim.post(DRAFT, content=body, headers=JSON)  # type: ignore[attr-defined]
        assert res.status_code == 422, (body[:40], res.text)
        answer = res.json()
        assert expected in answer["detail"], (body[:40], answer)
        assert answer["errors"] and "\n" not in answer["detail"]
    assert web.ctx.store.get_object("draft/s1/experts/beta/kim") is None  # nothing saved


def test_a_body_over_the_limit_is_refused_unread(web: Web) -> None:
    kim = _kim(web)
    body = b'{"comment": "' + b"x" * MAX_JSON_BYTES + b'"}'
    res = kim.post(DRAFT, content=body, headers=JSON)  # type: ignore[attr-defined]
    assert res.status_code == 413 and "over" in res.json()["detail"]


def test_one_route_two_answers(web: Web) -> None:
    """A program gets JSON, a browser's form post the page; the same checks for both."""
    cm.auto_assign(web.ctx, "s1", per_team=3, actor="office")
    res = web.client("kim").post(DRAFT, json={"scores": {"report": 4}})
    assert res.status_code == 200 and res.json() == {"status": "draft",
                                                      "scores": {"report": 4.0}}
    browser = web.client()
    login(browser, "kim", web.passwords["kim"])
    page = browser.get("/committee/s1/experts/beta")
    assert f'formaction="{DRAFT}"' in page.text
    form = {"score_report": "5", "score_logs": "", "comment": "c", "csrf": csrf_of(page.text)}
    res = browser.post(DRAFT, data=form, follow_redirects=False)
    assert res.status_code == 303
    assert res.headers["location"] == "/committee/s1/experts/beta?saved=1"
    # a token never gets a page, even when it asks for HTML and posts a form
    res = web.client("kim").post(DRAFT, data={"score_report": "6"},
                                 headers={"Accept": "text/html"})
    assert res.status_code == 200 and res.json()["scores"] == {"report": 6.0}
    # a refusal to the browser is the sheet page again, with the line on it
    res = browser.post(DRAFT, data={**form, "score_report": "11"})
    assert res.status_code == 422 and 'id="sheet"' in res.text
    assert "report: 11.0 is outside 0–10" in res.text
    assert not [r for r in web.ctx.store.records() if isinstance(r, CommitteeSheet)]


def test_a_browser_whose_session_ended_is_sent_to_log_in(web: Web) -> None:
    browser = web.client()
    login(browser, "kim", web.passwords["kim"])
    page = browser.get("/committee")
    browser.cookies.clear()
    res = browser.post(DRAFT, data={"score_report": "5", "csrf": csrf_of(page.text)},
                       follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"].startswith("/login")
