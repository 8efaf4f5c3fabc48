"""Helpers of the user-evaluation web tests (imported by module name)."""

from __future__ import annotations

from kaieval.arena import responses as rs
from kaieval.store import Store

PROMPTS = [rs.Prompt("p1", "서울의 봄 날씨를 설명하세요."), rs.Prompt("p2", "Explain tides."),
           rs.Prompt("p3", "Write a haiku.")]
TEAMS = ("alpha", "beta", "gamma")


def seed_responses(store: Store, texts: dict[tuple[str, str], str] | None = None) -> None:
    """The s1 prompt set and a plain response of every team to every prompt."""
    rs.store_prompts(store, "s1", PROMPTS, actor="office")
    base = {(p.id, t): f"Answer {k} to {p.id}" for p in PROMPTS
            for k, t in enumerate(TEAMS)}
    rs.put_responses(store, "s1", {**base, **(texts or {})},
                     {t: {"model": "sha256:test"} for t in TEAMS}, actor="office")
