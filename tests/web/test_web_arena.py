"""The blind pairwise arena through the API: battles with randomised, recorded sides, one
vote per battle, the per-user cap, withheld responses, "both bad", and the office's
Bradley–Terry ratings, intervals and position-bias check; on SQLite and PostgreSQL."""

from __future__ import annotations

import numpy as np
import pytest
from web_helpers import Web, csrf_of, login  # type: ignore[import-not-found]
from web_users_helpers import PROMPTS, seed_responses  # type: ignore[import-not-found]

from kaieval.records import UserVote, Vote
from kaieval.store import Store
from kaieval.web import users as us
from kaieval.web.accounts import Role, create_account

API = "/api/v1/arena/s1"


def _votes(web: Web) -> list[UserVote]:
    return [r for r in web.ctx.store.records(stage_id="s1", kind="vote")
            if isinstance(r, UserVote)]


def test_vote_is_recorded_with_sides_and_only_once(web_any: Web) -> None:
    seed_responses(web_any.ctx.store)
    c = web_any.client("user1")
    battle = c.get(f"{API}/battle").json()
    assert set(battle) >= {"battle_id", "prompt", "left", "right", "votes", "cap"}
    assert "alpha" not in str(battle) and "beta" not in str(battle)  # anonymous
    assert c.get(f"{API}/battle").json()["battle_id"] == battle["battle_id"]  # no re-roll
    stored = web_any.ctx.store.get_object(f"battle/s1/user1/{battle['battle_id']}")
    assert stored is not None and stored["left"] != stored["right"]
    res = c.post(f"{API}/battles/{battle['battle_id']}/vote", json={"choice": "right"})
    assert res.status_code == 200, res.text
    (vote,) = _votes(web_any)
    assert (vote.vote.a, vote.vote.b, vote.vote.winner) == (stored["left"], stored["right"], "b")
    assert vote.vote.battle_id == battle["battle_id"] and vote.source.value == "users"
    assert vote.settings["prompt_id"] == stored["prompt_id"]
    again = c.post(f"{API}/battles/{battle['battle_id']}/vote", json={"choice": "left"})
    assert again.status_code == 409
    assert len(_votes(web_any)) == 1 and _votes(web_any)[0].vote.winner == "b"
    assert web_any.ctx.store.audit_verify() == []


def test_sides_are_randomised(web: Web) -> None:
    seed_responses(web.ctx.store)
    c = web.client("user1")
    for _ in range(24):
        b = c.get(f"{API}/battle").json()
        assert c.post(f"{API}/battles/{b['battle_id']}/vote",
                      json={"choice": "tie"}).status_code == 200
    battles = web.ctx.store.objects("battle/s1/user1/").values()
    lefts = {b["left"] for b in battles}
    orders = {(b["left"], b["right"]) for b in battles}
    assert len(lefts) == 3 and len(orders) >= 4  # every team shown first, pairs both ways
    # prompts x pairs = 9 distinct battles: all drawn before any repeats
    firsts = [(b["prompt_id"], frozenset((b["left"], b["right"]))) for b in
              sorted(battles, key=lambda b: b["created_at"])][:9]
    assert len(set(firsts)) == 9


def test_other_users_battle_and_bad_choice(web: Web) -> None:
    seed_responses(web.ctx.store)
    create_account(web.ctx.store, "user2", Role.USER, actor="office")
    b = web.client("user1").get(f"{API}/battle").json()
    expert = web.client("kim")
    assert expert.get(f"{API}/battle").status_code == 403  # users only
    res = web.client("user1").post(f"{API}/battles/{b['battle_id']}/vote",
                                   json={"choice": "alpha"})
    assert res.status_code == 422
    res = web.client("user1").post(f"{API}/battles/nonexistent/vote", json={"choice": "tie"})
    assert res.status_code == 404
    assert web.client("user1").get("/api/v1/arena/s2/battle").status_code == 404  # no arena


def test_cap_per_user(web: Web) -> None:
    seed_responses(web.ctx.store)
    office = web.client("office")
    assert office.post("/api/v1/office/arena/s1/cap", json={"cap": 2}).status_code == 200
    c = web.client("user1")
    for _ in range(2):
        b = c.get(f"{API}/battle").json()
        c.post(f"{API}/battles/{b['battle_id']}/vote", json={"choice": "left"})
    res = c.get(f"{API}/battle")
    assert res.status_code == 429 and "cap of 2" in res.json()["detail"]
    assert len(_votes(web)) == 2
    assert web.client("user1").post("/api/v1/office/arena/s1/cap",
                                   json={"cap": 9}).status_code == 403


def test_response_naming_its_team_or_model_is_withheld(web: Web) -> None:
    seed_responses(web.ctx.store, {("p1", "alpha"): "저는 TEAM ALPHA가 만든 모델입니다.",
                                   ("p2", "beta"): "As Beta AI's model, I think...",
                                   ("p3", "gamma"): "The alphabet has 26 letters."})
    c = web.client("user1")
    seen = set()
    for _ in range(9):
        res = c.get(f"{API}/battle")
        if res.status_code != 200:
            break
        b = res.json()
        assert "team alpha" not in (b["left"] + b["right"]).casefold()
        assert "beta ai" not in (b["left"] + b["right"]).casefold()
        stored = web.ctx.store.get_object(f"battle/s1/user1/{b['battle_id']}")
        assert stored is not None
        seen |= {(stored["prompt_id"], stored["left"]), (stored["prompt_id"], stored["right"])}
        c.post(f"{API}/battles/{b['battle_id']}/vote", json={"choice": "tie"})
    assert ("p1", "alpha") not in seen and ("p2", "beta") not in seen
    assert ("p3", "gamma") in seen  # "alphabet" is not the team "alpha"
    overview = web.client("office").get("/api/v1/office/arena/s1").json()
    assert {(w["prompt_id"], w["team_id"]) for w in overview["withheld"]} == {
        ("p1", "alpha"), ("p2", "beta")}


def test_both_bad_is_stored_as_said_and_scored_as_a_tie(web: Web) -> None:
    seed_responses(web.ctx.store)
    c = web.client("user1")
    b = c.get(f"{API}/battle").json()
    assert c.post(f"{API}/battles/{b['battle_id']}/vote",
                  json={"choice": "both_bad"}).status_code == 200
    (vote,) = _votes(web)
    assert vote.vote.winner == "both_bad"
    overview = web.client("office").get("/api/v1/office/arena/s1").json()
    assert overview["position_bias"]["both_bad"] == 1
    rated = [t for t in overview["teams"] if t["battles"]]
    assert len(rated) == 2 and all(np.isfinite(t["rating"]) for t in rated)
    assert rated[0]["rating"] == pytest.approx(rated[1]["rating"])  # a tie between them
    assert sum(t["both_bad"] for t in overview["teams"]) == 2


def test_office_ratings_intervals_and_position_bias_from_seeded_votes(web: Web) -> None:
    rng = np.random.default_rng(3)
    strength = {"alpha": 2.0, "beta": 1.0, "gamma": 0.5}
    records = []
    for k in range(600):
        x, y = rng.choice(list(strength), size=2, replace=False)
        p_left = strength[x] / (strength[x] + strength[y])
        p_left = min(p_left + 0.05, 1.0)  # a 5-point bias toward the first-shown side
        winner = "a" if rng.random() < p_left else "b"
        records.append(UserVote(stage_id="s1", team_id="*", source="users",
                                vote=Vote(voter_id=f"u{k % 40}", a=str(x), b=str(y),
                                          winner=winner, battle_id=f"b{k}")))
    web.ctx.store.put(records, actor="office")
    res = web.client("office").get("/api/v1/office/arena/s1")
    assert res.status_code == 200, res.text
    o = res.json()
    assert o["votes"] == 600 and o["voters"] == 40
    teams = {t["team_id"]: t for t in o["teams"]}
    assert teams["alpha"]["rating"] > teams["beta"]["rating"] > teams["gamma"]["rating"]
    for t in teams.values():
        lo, hi = t["interval"]
        assert lo < t["rating"] < hi and hi - lo < 150
    # BT on the 400-log10 scale: alpha over gamma is 4x in strength, ~241 points
    assert teams["alpha"]["rating"] - teams["gamma"]["rating"] == pytest.approx(241, abs=60)
    assert [teams[t]["rank"] for t in ("alpha", "beta", "gamma")] == [1, 2, 3]
    assert teams["alpha"]["points"] == pytest.approx(20)  # best team gets full points
    assert teams["gamma"]["points"] < teams["beta"]["points"] < 20
    pb = o["position_bias"]
    assert pb["decided"] == 600 and 0.52 < pb["left_win_rate"] < 0.6
    assert pb["interval"][0] < pb["left_win_rate"] < pb["interval"][1]
    assert us.position_bias([]) ["left_win_rate"] is None
    page = web.client()
    login(page, "office", web.passwords["office"])
    html = page.get("/office/arena?stage=s1")
    assert html.status_code == 200 and 'id="position-bias"' in html.text


def test_vote_through_the_page_with_csrf_and_hostile_text_escaped(web: Web) -> None:
    hostile = '<script>alert("x")</script><img src=x onerror=alert(1)>'
    seed_responses(web.ctx.store, {(p.id, t): hostile for p in PROMPTS
                                   for t in ("alpha", "beta", "gamma")})
    c = web.client()
    login(c, "user1", web.passwords["user1"])
    page = c.get("/arena")
    assert page.status_code == 200 and 'id="battle"' in page.text
    assert "<script>alert" not in page.text and "&lt;script&gt;" in page.text
    assert "<img src=x" not in page.text
    bid = page.text.split('data-battle="')[1].split('"')[0]
    vote = f"{API}/battles/{bid}/vote"  # the page's form posts to the API route
    assert f'action="{vote}"' in page.text
    html = {"Accept": "text/html"}
    assert c.post(vote, data={"choice": "left"}, headers=html).status_code == 403  # no CSRF
    res = c.post(vote, data={"choice": "left", "csrf": csrf_of(page.text)}, headers=html,
                 follow_redirects=False)
    assert res.status_code == 303 and res.headers["location"] == "/arena?stage=s1"
    assert len(_votes(web)) == 1


def test_office_overview_is_kept_until_the_store_changes(web: Web,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """The Bradley–Terry refit runs once per state of the store, not once per request; a
    new vote (here one another process stored) refits."""
    seed_responses(web.ctx.store)
    fits: list[int] = []
    real = us._overview
    monkeypatch.setattr(us, "_overview", lambda *a: fits.append(1) or real(*a))
    office = web.client("office")
    first = office.get("/api/v1/office/arena/s1").json()
    assert office.get("/api/v1/office/arena/s1").json() == first and len(fits) == 1
    first["votes"] = -1  # a caller changing its copy changes nothing kept
    assert us.arena_overview(web.ctx, "s1")["votes"] == 0 and len(fits) == 1
    other = Store(web.ctx.store._url.render_as_string(hide_password=False))
    other.put([UserVote(stage_id="s1", team_id="*", source="users",
                        vote=Vote(voter_id="u1", a="alpha", b="beta", winner="a",
                                  battle_id="b1"))], actor="elsewhere")
    other.close()
    assert office.get("/api/v1/office/arena/s1").json()["votes"] == 1 and len(fits) == 2


def test_a_response_changed_later_is_checked_again_before_it_is_drawn(web: Web) -> None:
    """Battles are drawn from a kept copy of the stage's responses: storing a response
    again (here one that now names its team) must replace the copy, so it is withheld."""
    from kaieval.arena import responses as rs

    seed_responses(web.ctx.store)
    c = web.client("user1")
    b = c.get(f"{API}/battle").json()
    c.post(f"{API}/battles/{b['battle_id']}/vote", json={"choice": "tie"})
    named = {(p.id, "alpha"): "저는 TEAM ALPHA가 만든 모델입니다." for p in PROMPTS}
    rs.put_responses(web.ctx.store, "s1", named, {"alpha": {"model": "sha256:test"}},
                     actor="office")
    for _ in range(6):
        res = c.get(f"{API}/battle")
        if res.status_code != 200:
            break
        b = res.json()
        stored = web.ctx.store.get_object(f"battle/s1/user1/{b['battle_id']}")
        assert stored is not None and "alpha" not in (stored["left"], stored["right"])
        assert "team alpha" not in (b["left"] + b["right"]).casefold()
        c.post(f"{API}/battles/{b['battle_id']}/vote", json={"choice": "tie"})
