"""The committee flow through the API on SQLite and PostgreSQL."""

from __future__ import annotations

from web_helpers import Web  # type: ignore[import-not-found]

from kaieval.records import CommitteeSheet
from kaieval.web import committee as cm


def test_submit_and_lock_on_each_backend(web_any: Web) -> None:
    cm.auto_assign(web_any.ctx, "s1", per_team=2, actor="office")
    kim = web_any.client("kim")
    url = "/api/v1/committee/sheets/s1/experts/beta"
    assert kim.post(f"{url}/draft", json={"scores": {"report": 6}}).status_code == 200
    assert kim.post(f"{url}/submit", json={"scores": {"report": 6, "logs": 2}}).status_code == 200
    assert kim.post(f"{url}/submit", json={"scores": {"report": 9, "logs": 2}}).status_code == 409
    sheets = [r for r in web_any.ctx.store.records() if isinstance(r, CommitteeSheet)]
    assert [(s.team_id, s.scores["report"]) for s in sheets] == [("beta", 6.0)]
    assert web_any.client("park").get("/committee/s1/experts/alpha").status_code == 403
    assert web_any.ctx.store.audit_verify() == []
