"""In a real browser (Playwright driving Debian's Chromium) against the app on a real
port: user1 rates both teams of stage s2 on the 1-5 scale and votes in the s1 arena;
hostile response text is shown as text; the votes and ratings land in the store."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_helpers import browser_login, make_ctx, populate, serving  # type: ignore[import-not-found]
from web_users_helpers import PROMPTS, TEAMS, seed_responses  # type: ignore[import-not-found]

from kaieval.records import UserRating, UserVote

HOSTILE = '<img src=x onerror="document.title=\'pwned\'">'


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Any]]:
    ctx = make_ctx(f"sqlite:///{tmp_path / 'store.sqlite'}")
    passwords, _ = populate(ctx.store)
    seed_responses(ctx.store, {(p.id, t): f"Answer of {k}: {HOSTILE}" for p in PROMPTS
                               for k, t in enumerate(TEAMS)})
    with serving(ctx) as base:
        yield base, passwords, ctx
    ctx.store.close()


def test_user_votes_in_the_arena_and_rates_in_rating_mode(browser: Any, served: Any) -> None:
    base, passwords, ctx = served
    page = browser.new_page()
    browser_login(page, base, "user1", passwords["user1"])

    # rating mode: both teams of s2, names shown (show_names: true)
    page.click("header a[href='/rate']")
    for team in ("alpha", "beta"):
        form = f"#rate-s2-panel-{team}"
        page.check(f"{form} input[name=score_useful][value='4']")
        page.check(f"{form} input[name=score_korean][value='{5 if team == 'alpha' else 2}']")
        page.click(f"{form} button[type=submit]")
        page.wait_for_selector(f"{form} .rated")
    assert page.is_disabled("#rate-s2-panel-alpha input[name=score_useful][value='4']")
    assert "Team Alpha" in page.inner_text("#rate-s2-panel-alpha h3")

    # the arena: three votes, one of each kind but left
    page.click("header a[href='/arena']")
    for button in ("#vote-right", "#vote-tie", "#vote-both-bad"):
        page.wait_for_selector("#battle")
        assert "Team" not in page.inner_text("#battle")  # anonymous
        assert "<img src=x" in page.inner_text("#left")  # shown as text, not markup
        assert page.locator("#battle img").count() == 0
        page.click(button)
        page.wait_for_load_state()
    assert "3 /" in page.inner_text("#arena-progress")
    # hostile text in a response stays text wherever it is shown
    assert page.title() != "pwned"
    page.close()

    votes = [r for r in ctx.store.records(kind="vote") if isinstance(r, UserVote)]
    assert sorted(v.vote.winner for v in votes) == ["b", "both_bad", "tie"]
    assert all(v.vote.voter_id == "user1" for v in votes)
    ratings = [r for r in ctx.store.records(kind="rating") if isinstance(r, UserRating)]
    assert {(r.team_id, r.scores["korean"]) for r in ratings} == {("alpha", 5.0), ("beta", 2.0)}
