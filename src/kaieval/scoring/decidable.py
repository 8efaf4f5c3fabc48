"""Whether a stage result may be taken as a decision, and why not.

A cut decided on missing or untrustworthy inputs is worse than no cut: it looks
final. A stage is not decided when

* a team's required component (every leaf of the composition) or gate is not
  measured -- a zero would be a guess, and ranking without it compares unlike totals;
* the totals cannot separate the last team through from the first team cut (within
  ``SEPARATION`` points, tie-breakers equal): the order would come from team ids;
* the store the records came from fails ``kai audit-log verify``.

``kai stage run`` then stores nothing and exits non-zero, unless it is asked for a
provisional result, which ``mark_provisional`` labels as such in every output.
"""

from __future__ import annotations

from collections.abc import Sequence

from kaieval.scoring.results import StageResult, TeamResult
from kaieval.spec.program import Stage

SEPARATION = 1e-6
"""Points closer than this cannot separate two teams: stored totals have 6 decimals."""

PROVISIONAL = "PROVISIONAL — not a decision"


def undecided(stage: Stage, result: StageResult, store_problems: Sequence[str] = ()) -> list[str]:
    """Why ``result`` cannot stand as the stage's decision; empty when it can."""
    reasons: list[str] = []
    if store_problems:
        reasons.append(f"the store fails verification ({len(store_problems)} problem(s); "
                       f"first: {store_problems[0]}); run `kai audit-log verify`")
    for team in sorted(result.teams, key=lambda t: t.team_id):
        for cid in team.not_measured:
            reasons.append(f"{team.team_id}: component '{cid}' not measured "
                           f"({_detail(team, cid)})")
        for gate in team.gates:
            if gate.status == "not_measured":
                reasons.append(f"{team.team_id}: gate '{gate.gate_id}' not measured "
                               f"({gate.reason})")
    tie = _tie_at_the_cut(stage, result)
    if tie:
        reasons.append(tie)
    return reasons


def mark_provisional(result: StageResult, reasons: Sequence[str]) -> StageResult:
    """``result`` labelled provisional: its banner, every decision reason, and a field."""
    banner = f"{PROVISIONAL}: {'; '.join(reasons)}"
    if result.banner:
        banner = f"{result.banner} {banner}"
    teams = tuple(t.model_copy(update={"decision_reason": f"provisional: {t.decision_reason}"})
                  for t in result.teams)
    return result.model_copy(update={"provisional": tuple(reasons), "banner": banner,
                                     "teams": teams})


def _detail(team: TeamResult, cid: str) -> str:
    stack = list(team.components)
    while stack:
        c = stack.pop()
        if c.component_id == cid:
            return c.detail.removeprefix("not measured: ") or "no records"
        stack.extend(c.children)
    return "no records"


def _tie_at_the_cut(stage: Stage, result: StageResult) -> str | None:
    """The sentence naming the two teams at the boundary when nothing separates them."""
    through = [t for t in result.teams if t.decision == "advance"]
    cut = [t for t in result.teams if t.decision in ("cut", "repechage")]  # cut on points
    if not through or not cut:
        return None
    last = max(through, key=lambda t: t.rank)
    first = min(cut, key=lambda t: t.rank)
    if abs(last.total - first.total) >= SEPARATION:
        return None
    for cid in stage.tie_breakers:
        a, b = _points(last, cid), _points(first, cid)
        if abs(a - b) >= SEPARATION:
            return None
    return (f"nothing separates {last.team_id} (through) from {first.team_id} (cut): totals "
            f"{last.total:.6f} and {first.total:.6f}"
            + (", tie-breakers equal" if stage.tie_breakers else ", no tie-breakers")
            + "; the order would come from team ids")


def _points(team: TeamResult, cid: str) -> float:
    stack = list(team.components)
    while stack:
        c = stack.pop()
        if c.component_id == cid:
            return c.points or 0.0
        stack.extend(c.children)
    return 0.0
