"""Formatting and wording shared by the HTML report and the terminal summary.

Both renderers must say the same thing about the same number, so the words
("not measured", the robustness sentence, the repechage outcome) and the number
formats live here once. Nothing here knows about HTML or rich; the renderers
escape or style the plain strings these functions return.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from kaieval.scoring.results import ComponentScore, StageResult, TeamResult

NOT_MEASURED = "not measured"
SIMULATED = "simulated"

DECISION_LABELS: dict[str, str] = {
    "advance": "advances",
    "repechage": "advances (repechage)",
    "cut": "cut",
    "gated": "removed by a gate",
}

# What the "Rank" column means; the engine's decision reasons use the same two ranks
# ("4th of 5 on points; 3rd among the 4 teams that passed the gates; 3 places advance").
RANK_MEANING = ("rank on points among all teams, gated ones included; places go to the teams "
                "that pass every gate, in this order")

GATE_LABELS: dict[str, str] = {
    "pass": "pass",
    "fail": "fail",
    "not_measured": NOT_MEASURED,
}


RUN_NOTES = {
    "main": "Decided, not final: teams may object until the programme office confirms it "
            "(the confirmed result is stored as run 'final').",
    "final": "Final: confirmed by the programme office after the objection period.",
}
"""What a stored run is, for a report's banner (``provisional`` results carry their own)."""


def run_banner(run_label: str, banner: str | None) -> str | None:
    """A report's banner: what the run is, then the result's own banner, if any."""
    parts = [b for b in (RUN_NOTES.get(run_label), banner) if b]
    return " ".join(parts) or None


def fmt_points(value: float | None, digits: int = 1) -> str:
    """Points with a fixed number of decimals; None is written out, never shown as 0."""
    if value is None:
        return NOT_MEASURED
    return f"{value:.{digits}f}"


def fmt_max(value: float) -> str:
    """A maximum as the programme wrote it (40, not 40.0; 2.5 stays 2.5)."""
    return f"{value:g}"


def fmt_interval(interval: tuple[float, float] | None, digits: int = 1) -> str:
    """A bootstrap interval as ``lo–hi``; empty when the engine computed none."""
    if interval is None:
        return ""
    lo, hi = interval
    return f"{lo:.{digits}f}–{hi:.{digits}f}"


def fmt_prob(p: float | None) -> str:
    """A probability as a whole percentage ("23 %"); "not computed" when absent."""
    if p is None:
        return "not computed"
    return f"{p * 100:.0f} %"


def humanize_id(identifier: str) -> str:
    """``independent_technology`` -> ``Independent technology`` for labels that only have an id."""
    text = identifier.replace("_", " ").replace("-", " ").strip()
    return text[:1].upper() + text[1:] if text else identifier


def is_simulated(component: ComponentScore, result: StageResult) -> bool:
    """True when any source behind the component's number is simulated.

    A component is simulated when its own ``sources`` name ``simulated``, when
    the stage lists its id in ``simulated_sources`` (the stage engine lists the
    ids of components built on simulated inputs there), or when any child is:
    a parent built on a simulated child is itself partly simulated.
    """
    if SIMULATED in component.sources or component.component_id in result.simulated_sources:
        return True
    return any(is_simulated(child, result) for child in component.children)


def repechage_simulated(result: StageResult) -> bool:
    """True when the repechage votes are simulated (source names it, or the stage lists it)."""
    rep = result.repechage
    if rep is None:
        return False
    return (SIMULATED in [s.strip() for s in rep.source.split(",")]
            or "repechage" in result.simulated_sources)


@dataclass(frozen=True)
class Column:
    """A top-level component as a table column: same id, title and maximum for every team."""

    component_id: str
    title: str
    max_points: float


def component_columns(result: StageResult) -> list[Column]:
    """Top-level components in the order the first team lists them, plus any only others have."""
    seen: dict[str, Column] = {}
    for team in result.teams:
        for comp in team.components:
            if comp.component_id not in seen:
                seen[comp.component_id] = Column(comp.component_id, comp.title or comp.component_id,
                                                 comp.max_points)
    return list(seen.values())


def find_component(team: TeamResult, component_id: str) -> ComponentScore | None:
    """The team's top-level component with this id, or None when the team has none."""
    for comp in team.components:
        if comp.component_id == component_id:
            return comp
    return None


def axis_ids(result: StageResult) -> list[str]:
    """Axis ids found in any team's ``axes``, in first-seen order."""
    out: list[str] = []
    for team in result.teams:
        for axis in team.axes:
            if axis not in out:
                out.append(axis)
    return out


@dataclass(frozen=True)
class AxisScale:
    """The points an axis is scaled to in charts, and where that figure came from."""

    axis: str
    maximum: float
    basis: str  # "max possible" (from component maxima) or "highest team"


def _structural_axis_max(components: Iterable[ComponentScore], into: dict[str, float]) -> None:
    """Add each component's ``max_points`` to its axis; descend only where no axis is set."""
    for comp in components:
        if comp.axis is not None:
            into[comp.axis] = into.get(comp.axis, 0.0) + comp.max_points
        else:
            _structural_axis_max(comp.children, into)


def axis_scales(result: StageResult) -> dict[str, AxisScale]:
    """The maximum each axis is drawn against.

    The record does not carry rubric-level axis maxima, so the maximum possible
    points of an axis are rebuilt from the component tree: a component with an
    ``axis`` contributes its ``max_points``; one without contributes through its
    children. Where that rebuilt maximum is missing or is below a team's actual
    subtotal (points awarded through rubric items whose axis the record does not
    show), the chart falls back to the highest subtotal of any team and says so.
    """
    if result.axis_max:
        return {a: AxisScale(a, result.axis_max.get(a) or 1.0, "max possible")
                for a in axis_ids(result)}
    structural: dict[str, float] = {}
    by_id: dict[str, ComponentScore] = {}
    for team in result.teams:
        for comp in team.components:
            by_id.setdefault(comp.component_id, comp)
    _structural_axis_max(by_id.values(), structural)
    scales: dict[str, AxisScale] = {}
    for axis in axis_ids(result):
        observed = max((t.axes.get(axis, 0.0) for t in result.teams), default=0.0)
        possible = structural.get(axis)
        if possible is not None and possible > 0 and observed <= possible + 1e-9:
            scales[axis] = AxisScale(axis, possible, "max possible")
        else:
            scales[axis] = AxisScale(axis, observed if observed > 0 else 1.0, "highest team")
    return scales


def team_names(results: Sequence[StageResult]) -> dict[str, str]:
    """team_id -> display name, from the latest stage that names the team."""
    names: dict[str, str] = {}
    for result in results:
        for team in result.teams:
            names[team.team_id] = team.team_name
    return names


def cut_threshold(result: StageResult) -> float | None:
    """Lowest total among teams that advanced on score; None when none did."""
    totals = [t.total for t in result.teams if t.decision == "advance"]
    return min(totals) if totals else None


def audit_sentence(result: StageResult) -> str:
    """The audit-log checkpoint the stage was scored at, in one line (docs/audit-log.md)."""
    cp = result.audit_checkpoint
    if cp is None:
        return "no audit-log checkpoint recorded"
    entries = f"{cp.size} {'entry' if cp.size == 1 else 'entries'}, head {cp.head[:16]}…"
    if cp.key is None:
        return f"audit log: {entries} at {cp.time}, unsigned (no signing key)"
    return f"audit log: {entries}, checkpoint signed by key {cp.key[:16]}… at {cp.time}"


def robustness_sentence(result: StageResult) -> str:
    """The robustness outcome in words, naming the teams whose fate the resampling questions.

    The stage engine's ``note`` already says it in words ("the cut is fragile:
    X had a 23 % chance of surviving") and is quoted as is. Only when the note
    is empty are the doubtful teams named here: one that was cut but survived in
    more than ``flag_threshold`` of the replicates, or one that advanced but was
    dropped in more than that share (the engine's rule, docs/formulas.md).
    """
    rob = result.robustness
    if rob is None:
        return "Robustness was not computed for this stage."
    thr = rob.flag_threshold
    doubtful: list[str] = []
    for team in result.teams:
        p = team.survival_probability
        if p is None or team.decision == "gated":
            continue
        if team.decision == "cut" and p > thr:
            doubtful.append(f"{team.team_name} (cut) survived the cut in {fmt_prob(p)} "
                            "of replicates")
        elif team.decision == "advance" and 1 - p > thr:
            doubtful.append(f"{team.team_name} (advanced) was cut in {fmt_prob(1 - p)} "
                            "of replicates")
    head = ("The cut is fragile" if rob.flagged else "The cut is robust")
    detail = (f" ({rob.replicates} bootstrap replicates, seed {rob.seed}, "
              f"flag threshold {fmt_prob(thr)})")
    if rob.note:
        note = rob.note.strip().rstrip(".")
        if "fragile" not in note.lower() and "robust" not in note.lower():
            note = f"{head}: {note[:1].lower()}{note[1:]}"
        return note[:1].upper() + note[1:] + detail + "."
    if doubtful:
        body = ": " + "; ".join(doubtful) + "."
    elif rob.flagged:
        body = "."
    else:
        body = ": no team's outcome changed in more than the flag threshold of replicates."
    return head + detail + body


def repechage_sentence(result: StageResult, names: dict[str, str] | None = None) -> str:
    """The repechage outcome in one sentence: candidates, votes, majority, winner."""
    rep = result.repechage
    if rep is None:
        return "No repechage in this stage."
    names = {**rep.candidate_names, **(names or {t.team_id: t.team_name for t in result.teams})}

    def name(tid: str) -> str:
        return names.get(tid, tid)

    votes = ", ".join(f"{name(c)} {rep.votes.get(c, 0)}" for c in rep.candidates) or "none"
    winners = ", ".join(name(w) for w in rep.winners) or "no winner"
    return (f"Repechage among {len(rep.candidates)} candidate(s); votes of {rep.evaluators} "
            f"evaluator(s): {votes}; a winner needs more than {fmt_prob(rep.majority)} of votes; "
            f"outcome: {winners}. {rep.reason}").strip()


def gate_summary(team: TeamResult) -> str:
    """``gate: status`` for each gate, comma-separated; "no gates" when the stage has none."""
    if not team.gates:
        return "no gates"
    return ", ".join(f"{g.gate_id}: {GATE_LABELS.get(g.status, g.status)}" for g in team.gates)


def gate_list(result: StageResult) -> list[tuple[str, str]]:
    """(gate_id, rule text) for every gate any team was checked against, in first-seen order."""
    out: dict[str, str] = {}
    for team in sorted(result.teams, key=lambda t: t.rank):
        for gate in team.gates:
            out.setdefault(gate.gate_id, gate.rule)
    return list(out.items())
