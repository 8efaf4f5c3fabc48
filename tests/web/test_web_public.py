"""The public leaderboard and API show confirmed (final) results only, and nothing private."""

from __future__ import annotations

import pytest
from teams_helpers import decide  # type: ignore[import-not-found]
from web_helpers import Web, login  # type: ignore[import-not-found]

from kaieval.pipeline import save_stage_result
from kaieval.scoring.results import StageResult


def _score(web: Web) -> StageResult:
    """Stage-1 records with a private comment and a named vote, scored; only the
    undecidable ``provisional`` run is stored (no verdicts), nothing public yet."""
    return decide(web.ctx, run="provisional")


def test_nothing_public_before_a_decision(web: Web) -> None:
    _score(web)
    c = web.client()
    assert c.get("/api/v1/public/stages").json() == []
    assert c.get("/api/v1/public/stages/s1").status_code == 404
    assert 'id="no-results"' in c.get("/").text


def test_a_confirmed_stage_is_public_without_private_data(web: Web) -> None:
    result = _score(web)
    save_stage_result(web.ctx.store, result, "final", actor="office")
    c = web.client()
    stages = c.get("/api/v1/public/stages").json()
    assert [s["stage_id"] for s in stages] == ["s1"]
    detail = c.get("/api/v1/public/stages/s1").json()
    assert detail["teams"][0]["team_id"] == "alpha"
    page = c.get("/").text
    for body in (page, str(detail)):
        assert "PRIVATE-COMMENT" not in body and "secret-voter" not in body
    assert 'data-team="alpha"' in page


def test_the_public_view_is_rebuilt_when_a_result_changes(web: Web) -> None:
    from kaieval.web.routes.public import public_view

    result = _score(web)
    first = public_view(web.ctx)
    assert first.results == [] and public_view(web.ctx) is first  # cached
    save_stage_result(web.ctx.store, result, "final", actor="office")
    second = public_view(web.ctx)
    assert second is not first and [r.stage_id for _, r in second.results] == ["s1"]
    assert public_view(web.ctx) is second


def test_the_public_page_sets_no_cookie_and_is_served_from_its_cache(web: Web) -> None:
    from kaieval.web.routes.public import public_view

    result = _score(web)
    save_stage_result(web.ctx.store, result, "final", actor="office")
    c = web.client()
    first = c.get("/")
    assert first.status_code == 200 and 'data-team="alpha"' in first.text
    assert "set-cookie" not in first.headers and not c.cookies  # no session for a visitor
    assert set(public_view(web.ctx).pages) == {"ko"}  # kept per language
    public_view(web.ctx).pages["ko"] = b"<p>served from the cache</p>"
    assert c.get("/").text == "<p>served from the cache</p>"
    c.cookies.set("lang", "en")
    assert 'data-team="alpha"' in c.get("/").text  # another language: its own page
    assert set(public_view(web.ctx).pages) == {"ko", "en"}


def test_the_cached_public_page_follows_new_results_and_accounts(web: Web) -> None:
    from kaieval.web.routes.public import public_view

    result = _score(web)
    c = web.client()
    assert 'id="no-results"' in c.get("/").text
    save_stage_result(web.ctx.store, result, "final", actor="office")  # a new result
    assert 'data-team="alpha"' in c.get("/").text and 'id="no-results"' not in c.get("/").text
    public_view(web.ctx).pages["ko"] = b"<p>the public page</p>"
    login(c, "kim", web.passwords["kim"])
    mine = c.get("/").text
    assert mine != "<p>the public page</p>" and "kim" in mine  # an account: rendered for them
    assert public_view(web.ctx).pages == {"ko": b"<p>the public page</p>"}  # not cached
    assert web.client().get("/").text == "<p>the public page</p>"


def test_the_kept_public_page_is_answered_before_routing_only_while_current(
        web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    from kaieval.web.routes import public

    result = _score(web)
    save_stage_result(web.ctx.store, result, "final", actor="office")
    c = web.client()
    page = c.get("/")
    assert page.status_code == 200 and page.headers["x-frame-options"] == "DENY"

    def no_route(*_: object) -> None:
        raise AssertionError("routed")

    monkeypatch.setattr(public, "public_view", no_route)
    again = c.get("/")  # kept: no routing, same bytes and headers
    assert again.content == page.content and again.headers == page.headers
    with pytest.raises(AssertionError, match="routed"):  # a token: the route renders
        web.client("kim").get("/")
    monkeypatch.undo()
    save_stage_result(web.ctx.store, result.model_copy(update={"stage_name": "Renamed"}),
                      "final", actor="office")  # newer results: the kept page is stale
    assert "Renamed" in c.get("/").text


def test_a_result_stored_elsewhere_reaches_the_kept_page_after_the_recheck_window(
        web: Web, monkeypatch: pytest.MonkeyPatch) -> None:
    """Another process's write (here: another Store on the same database) is found when
    the window since the last check has passed; until then the kept page is served
    without a query. This process's own writes are seen at once (test above)."""
    from kaieval.store import Store
    from kaieval.web.routes import public

    result = _score(web)
    save_stage_result(web.ctx.store, result, "final", actor="office")
    c = web.client()
    assert 'data-team="alpha"' in c.get("/").text  # rendered and kept
    assert 'data-team="alpha"' in c.get("/").text  # kept, found current: the window starts
    other = Store(web.ctx.store._url.render_as_string(hide_password=False))
    save_stage_result(other, result.model_copy(update={"stage_name": "Renamed"}),
                      "final", actor="cli")
    other.close()
    stamps = web.ctx.store.stage_result_stamps
    monkeypatch.setattr(web.ctx.store, "stage_result_stamps",
                        lambda: pytest.fail("asked the database within the window"))
    assert "Renamed" not in c.get("/").text  # within the window: kept, no query
    monkeypatch.setattr(web.ctx.store, "stage_result_stamps", stamps)
    monkeypatch.setattr(public, "RECHECK_S", 0.0)  # the window has passed
    assert "Renamed" in c.get("/").text
