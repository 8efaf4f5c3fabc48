"""In a real browser (Playwright driving Debian's Chromium): a team uploads a dossier with
an error and sees the one-line message; a team files an objection; after the office's
confirmation the public leaderboard shows the confirmed (final) result."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from teams_helpers import days_later, decide, dossier_bytes  # type: ignore[import-not-found]
from web_helpers import browser_login, make_ctx, populate, serving  # type: ignore[import-not-found]

from kaieval.web import objections as ob


def test_team_uploads_objects_and_public_sees_final(browser: Any, tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    ctx = make_ctx(f"sqlite:///{tmp_path / 'store.sqlite'}")
    passwords, _ = populate(ctx.store)
    with serving(ctx) as base:
        page = browser.new_page()
        browser_login(page, base, "alpha-team", passwords["alpha-team"])
        page.goto(f"{base}/team")
        s1 = page.locator("section[data-stage=s1]")
        bad = dossier_bytes(**{"  s2:": "  s9:"})
        s1.locator(".dossier-form input[type=file]").set_input_files(
            {"name": "alpha.yaml", "mimeType": "application/x-yaml", "buffer": bad})
        s1.locator(".dossier-form button").click()
        page.wait_for_selector("#errors")
        lines = page.locator(".error-line").all_inner_texts()
        assert lines == ["alpha.yaml:11: submissions.s9: no stage 's9' in programme "
                         "'records-check' (stages: s1, s2)"]
        s1 = page.locator("section[data-stage=s1]")
        s1.locator(".dossier-form input[type=file]").set_input_files(
            {"name": "alpha.yaml", "mimeType": "application/x-yaml",
             "buffer": dossier_bytes()})
        s1.locator(".dossier-form button").click()
        page.wait_for_selector("#done")
        assert "alpha.yaml" in page.locator("section[data-stage=s1] .dossier").inner_text()

        decide(ctx)  # kai stage run stored a decided result: open for objections
        page.goto(f"{base}/team")
        s1 = page.locator("section[data-stage=s1]")
        assert s1.locator(".state").get_attribute("data-state") == "open"
        s1.locator(".objection-form textarea").fill("<b>Recount</b> our training logs")
        s1.locator(".objection-form input[type=file]").set_input_files(
            {"name": "log.txt", "mimeType": "text/plain", "buffer": b"step 1 loss 2.3"})
        s1.locator(".objection-form button").click()
        page.wait_for_selector(".objection[data-n='1']")
        assert page.locator(".objection-text").inner_text() == \
            "<b>Recount</b> our training logs"  # shown as text
        page.goto(f"{base}/")
        assert page.locator("#no-results").count() == 1  # not final: nothing public

        days_later(monkeypatch, 11)
        ob.answer(ctx, "s1", "alpha", 1, "Recounted; the score stands.", actor="office")
        ob.confirm(ctx, "s1", actor="office")
        page.goto(f"{base}/")
        stage = page.locator("section[data-stage=s1]")
        assert stage.locator(".run").get_attribute("data-run") == "final"
        assert "final result, confirmed" in stage.locator(".run").inner_text()
        assert stage.locator("tr[data-team=alpha]").count() == 1
        assert "Recount" not in page.content()
        page.click("section[data-stage=s1] a[href='/teams/alpha']")
        page.wait_for_selector("#team-history")
        assert page.locator("#team-history tr[data-run=final]").count() == 1
        page.close()
    ctx.store.close()
