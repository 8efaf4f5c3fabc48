"""Rating mode through the API and the page: 1-5 per criterion, names as the spec says,
checked by intake, locked once submitted, scored by the stage engine; both backends."""

from __future__ import annotations

import pytest
from web_helpers import Web, csrf_of, login  # type: ignore[import-not-found]

from kaieval.records import UserRating
from kaieval.scoring.leaf_points import leaf_scores

API = "/api/v1/rating/s2/panel"


def _ratings(web: Web) -> list[UserRating]:
    return [r for r in web.ctx.store.records(kind="rating") if isinstance(r, UserRating)]


def test_rate_each_team_once_through_the_api(web_any: Web) -> None:
    c = web_any.client("user1")
    (form,) = c.get("/api/v1/rating").json()
    assert form["show_names"] is True and form["scale"] == [1, 5]
    assert [t["label"] for t in form["teams"]] == ["Team Alpha", "Team Beta"]  # gamma: no s2
    assert [c_["id"] for c_ in form["criteria"]] == ["useful", "korean"]
    res = c.post(f"{API}/alpha", json={"scores": {"useful": 5, "korean": 4}})
    assert res.status_code == 200, res.text
    assert c.post(f"{API}/beta", json={"scores": {"useful": 2, "korean": 1}}).status_code == 200
    again = c.post(f"{API}/alpha", json={"scores": {"useful": 1, "korean": 1}})
    assert again.status_code == 409
    ratings = _ratings(web_any)
    assert {(r.team_id, r.rater_id, tuple(sorted(r.scores.items()))) for r in ratings} == {
        ("alpha", "user1", (("korean", 4.0), ("useful", 5.0))),
        ("beta", "user1", (("korean", 1.0), ("useful", 2.0)))}
    comp = web_any.ctx.program.stage("s2").component("panel")
    leaf = leaf_scores(comp, "s2", ["alpha", "beta"], [None, None], ratings, None)
    assert leaf.points[0] == pytest.approx(10 * 3.5 / 4)  # mean 4.5 -> (4.5-1)/4 of 10
    assert leaf.points[1] == pytest.approx(10 * 0.5 / 4)
    (form,) = c.get("/api/v1/rating").json()
    assert form["teams"][0]["scores"] == {"useful": 5, "korean": 4}
    assert web_any.ctx.store.audit_verify() == []


@pytest.mark.parametrize("scores", [{"useful": 6, "korean": 3}, {"useful": 0, "korean": 3},
                                    {"useful": 3}, {"useful": 3, "korean": 3, "charm": 5}])
def test_bad_ratings_are_refused(web: Web, scores: dict[str, int]) -> None:
    res = web.client("user1").post(f"{API}/alpha", json={"scores": scores})
    assert res.status_code == 422, res.text
    assert _ratings(web) == []


def test_wrong_targets_and_roles(web: Web) -> None:
    c = web.client("user1")
    assert c.post(f"{API}/gamma", json={"scores": {"useful": 3, "korean": 3}}
                  ).status_code == 422  # gamma did not enter s2
    assert c.post("/api/v1/rating/s1/users/alpha",
                  json={"scores": {"useful": 3}}).status_code == 404  # an arena
    assert web.client("kim").post(f"{API}/alpha", json={"scores": {"useful": 3, "korean": 3}}
                                  ).status_code == 403
    res = c.post(f"{API}/alpha", content=b'{"scores": {"useful": "3", "korean": true}}',
                 headers={"content-type": "application/json"})
    assert res.status_code == 422


def test_rating_page_with_csrf_and_blind_codes(web: Web) -> None:
    c = web.client()
    login(c, "user1", web.passwords["user1"])
    page = c.get("/rate")
    assert page.status_code == 200 and "Team Alpha" in page.text
    form = {"score_useful": "4", "score_korean": "5"}
    url = "/api/v1/rating/s2/panel"  # the page's forms post to the API route
    html = {"Accept": "text/html"}
    assert c.post(f"{url}/beta", data=form, headers=html).status_code == 403  # no CSRF
    res = c.post(f"{url}/beta", data={**form, "csrf": csrf_of(page.text)}, headers=html)
    assert res.status_code == 200 and 'class="ok rated"' in res.text
    bad = c.post(f"{url}/alpha", data={"score_useful": "9", "score_korean": "1",
                                       "csrf": csrf_of(page.text)}, headers=html)
    assert bad.status_code == 422 and "whole number 1–5" in bad.text
    # blind: a spec without show_names shows codes, never names
    comp = web.ctx.program.stage("s2").component("panel")
    object.__setattr__(comp, "show_names", False)
    try:
        blind = c.get("/rate")
        assert "Team Alpha" not in blind.text and "Team A" in blind.text
    finally:
        object.__setattr__(comp, "show_names", True)
