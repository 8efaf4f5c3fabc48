"""In a real browser (Playwright driving Debian's Chromium) against `kai serve`'s app on a
real port: an expert logs in, changes the one-time password, fills and submits a sheet
and cannot edit it afterwards; direct URLs to an unassigned or conflicted team's sheet
are refused."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from web_helpers import browser_login, make_ctx, populate, serving  # type: ignore[import-not-found]

from kaieval.web import committee as cm


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, dict[str, str], Any]]:
    ctx = make_ctx(f"sqlite:///{tmp_path / 'store.sqlite'}")
    passwords, _ = populate(ctx.store)
    cm.auto_assign(ctx, "s1", per_team=3, actor="office")
    cm.set_assignment(ctx, cm.Slot("s1", "experts", "gamma", "kim"), False, "office")
    with serving(ctx) as base:
        yield base, passwords, ctx
    ctx.store.close()


def test_expert_submits_a_sheet_and_it_is_locked(browser: Any, served: Any) -> None:
    base, passwords, _ = served
    page = browser.new_page()
    browser_login(page, base, "kim", passwords["kim"])
    page.goto(f"{base}/committee")
    page.click("a[href='/committee/s1/experts/beta']")
    page.fill("#score_report", "7.5")
    page.fill("#score_logs", "4")
    page.fill("textarea[name=comment]", "Clear training logs <b>bold</b>")
    page.click("#save-draft")
    page.wait_for_selector("#saved")
    assert page.input_value("#score_report") == "7.5"
    page.click("#submit-sheet")
    page.wait_for_selector("#locked")
    assert page.is_disabled("#score_report") and page.is_disabled("textarea[name=comment]")
    assert page.locator("#submit-sheet").count() == 0
    assert "<b>bold</b>" in page.input_value("textarea[name=comment]")  # shown as text
    # a crafted POST cannot change it either
    status = page.evaluate("""async () => {
        const csrf = document.querySelector('input[name=csrf]').value;
        const body = new URLSearchParams({csrf, score_report: '1', score_logs: '1'});
        const res = await fetch(document.querySelector('#sheet').action,
                                {method: 'POST', body});
        return res.status; }""")
    assert status == 409
    # unassigned (gamma was taken from kim) and conflicted (park on alpha) are closed
    page.goto(f"{base}/committee/s1/experts/gamma")
    assert page.locator("h1.error").count() == 1
    park = browser.new_page()
    browser_login(park, base, "park", passwords["park"])
    response = park.goto(f"{base}/committee/s1/experts/alpha")
    assert response.status == 403 and park.locator("h1.error").count() == 1
    page.close()
    park.close()
