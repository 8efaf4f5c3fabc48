"""The stage engine: component points, gates, totals, ranking, the cut, repechage, robustness.

Pure function of (programme stage, teams, stored records, seed): no I/O, no
torch. Rerunning with the same inputs and seed gives the same ``StageResult``
(apart from ``created_at``), which is what makes a stage rerun idempotent.

``run_stage`` is a sequence of named steps over one typed row per team
(``TeamRow``): ``score_components`` → ``apply_gates`` → ``rank_teams`` →
``decide_cut`` → ``assess_robustness`` → ``decide_repechage`` → ``build_result``.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from dataclasses import replace

import numpy as np

from kaieval.hashing import sha256_json
from kaieval.records import CommitteeSheet, IndependenceVerdict, Record
from kaieval.scoring.decision import Cut, decide_cut, decide_repechage
from kaieval.scoring.gates import gate_outcome
from kaieval.scoring.leaf_points import BootstrapPlan, LeafScores, leaf_scores
from kaieval.scoring.results import (
    ComponentScore,
    RepechageOutcome,
    Robustness,
    StageResult,
    TeamResult,
)
from kaieval.scoring.robustness import evaluator_weights, interval, survival_probability
from kaieval.scoring.rows import Entrant, TeamRow
from kaieval.spec.program import Component, Program, Stage
from kaieval.version import code_version

__all__ = [
    "Entrant",
    "TeamRow",
    "apply_gates",
    "assess_robustness",
    "bootstrap_plan",
    "build_result",
    "rank_teams",
    "run_stage",
    "score_components",
]

Leaves = Mapping[str, LeafScores]


def run_stage(program: Program, stage: Stage, entrants: Sequence[Entrant],
              records: Sequence[Record], *, seed: int = 0,
              applicants: Sequence[Entrant] = (), replicates: int | None = None,
              banner: str | None = None, extra_hashes: dict[str, str] | None = None,
              ) -> StageResult:
    """Score one stage from its stored records and decide who advances."""
    teams = [e.team_id for e in entrants]
    if len(set(teams)) != len(teams):
        raise ValueError("duplicate team ids among entrants")
    records = [r for r in records if r.stage_id == stage.id]
    reps = stage.robustness_replicates if replicates is None else replicates
    plan = bootstrap_plan(records, reps, seed)
    leaves = {c.id: leaf_scores(c, stage.id, teams, [e.submission for e in entrants], records,
                                plan) for c in stage.leaves()}
    rows = score_components(stage, entrants, leaves)
    rows = apply_gates(stage, rows, records)
    rows = rank_teams(stage, rows)
    rows, cut = decide_cut(stage, rows)
    rows, robustness = assess_robustness(stage, rows, leaves, plan, seed)
    rows, repechage = decide_repechage(stage, rows, records, applicants)
    return build_result(program, stage, rows, cut=cut, robustness=robustness,
                        repechage=repechage, records=records, applicants=applicants,
                        banner=banner, extra_hashes=extra_hashes)


def bootstrap_plan(records: Sequence[Record], replicates: int, seed: int) -> BootstrapPlan | None:
    """The seeded random draws shared by every component; None when no replicates are asked."""
    if not replicates:
        return None
    rng = np.random.default_rng(seed)
    evaluators = tuple(sorted({r.evaluator_id for r in records if isinstance(r, CommitteeSheet)}))
    weights = (evaluator_weights(len(evaluators), replicates, rng).astype(np.float64)
               if evaluators else None)
    return BootstrapPlan(replicates=replicates, rng=rng, evaluators=evaluators,
                         evaluator_weights=weights)


def score_components(stage: Stage, entrants: Sequence[Entrant], leaves: Leaves) -> list[TeamRow]:
    """Component trees, total, measured maximum and axis subtotals of each team."""
    rows = []
    for i, e in enumerate(entrants):
        comps = tuple(_component_tree(c, leaves, i) for c in stage.composition)
        points = {cs.component_id: cs.points for c in comps for cs in _flatten(c)}
        rows.append(TeamRow(
            index=i, entrant=e, components=comps, points=points,
            total=sum(c.points for c in comps if c.points is not None),
            max_measured=sum(c.max_points for c in comps if c.points is not None),
            not_measured=tuple(k for k, v in points.items() if v is None
                               and stage.component(k).children == ()),
            axes=_axes(stage, leaves, i)))
    return rows


def apply_gates(stage: Stage, rows: Sequence[TeamRow],
                records: Sequence[Record]) -> list[TeamRow]:
    """Each gate of the stage checked for each team."""
    verdicts = {r.team_id: r for r in records if isinstance(r, IndependenceVerdict)}
    return [replace(row, gates=tuple(gate_outcome(g, verdicts.get(row.team_id), row.points,
                                                  row.total) for g in stage.gates))
            for row in rows]


def rank_teams(stage: Stage, rows: Sequence[TeamRow]) -> list[TeamRow]:
    """Rows in rank order, with their rank among all teams and among those passing the gates.

    Order: total descending, then each tie-breaker component descending (not
    measured counts as 0), then team id; ranks are therefore never shared.
    """
    def key(row: TeamRow) -> tuple[object, ...]:
        tie = tuple(-(row.points.get(c) or 0.0) for c in stage.tie_breakers)
        return (-round(row.total, 9), *tie, row.team_id)

    out = []
    eligible_rank = 0
    for rank, row in enumerate(sorted(rows, key=key), start=1):
        if not row.gated:
            eligible_rank += 1
        out.append(replace(row, rank=rank,
                           eligible_rank=None if row.gated else eligible_rank))
    return out


def assess_robustness(stage: Stage, rows: Sequence[TeamRow], leaves: Leaves,
                      plan: BootstrapPlan | None, seed: int,
                      ) -> tuple[list[TeamRow], Robustness | None]:
    """Totals per bootstrap replicate, each team's survival probability and interval.

    Needs the decisions on points (``decide_cut``): the cut is fragile when a team
    cut on points survives in more than ``robustness_flag`` of the replicates.
    None (and rows unchanged) when there are no replicates or nothing was resampled.
    """
    resampled = sorted({s for ls in leaves.values() for s in ls.resampled})
    if plan is None or not resampled:
        return list(rows), None
    reps, t = plan.replicates, len(rows)
    by_entry = sorted(rows, key=lambda r: r.index)  # columns of the leaf arrays
    rep_tot = np.zeros((reps, t))
    for c in stage.leaves():
        ls = leaves[c.id]
        if ls.replicates is not None:
            # A replicate that drew none of a team's valid sheets for an item has no
            # committee mean; it keeps the official points rather than counting as 0.
            filled = np.where(np.isnan(ls.replicates), ls.points[None, :], ls.replicates)
            rep_tot += np.nan_to_num(filled, nan=0.0)
        else:
            rep_tot += np.nan_to_num(ls.points, nan=0.0)[None, :]
    gated = np.array([r.gated for r in by_entry])
    survival = survival_probability(rep_tot, cut=stage.cut if stage.advance is None else None,
                                    advance=stage.advance, eligible=~gated)
    iv = interval(rep_tot)
    losers = [r for r in by_entry if r.decision == "cut"]
    fragile = [r for r in losers if survival[r.index] > stage.robustness_flag]
    at_risk = [r for r in by_entry
               if r.decision == "advance" and survival[r.index] < 1 - stage.robustness_flag]
    if fragile:
        note = ("the cut is fragile: " + "; ".join(
            f"{r.name} had a {survival[r.index]:.0%} chance of surviving" for r in fragile))
    elif losers:
        note = ("the cut is robust: no team on the losing side survived in more than "
                f"{stage.robustness_flag:.0%} of replicates")
    else:
        note = "no team was cut on score"
    if at_risk:
        note += "; at risk on the winning side: " + "; ".join(
            f"{r.name} {survival[r.index]:.0%}" for r in at_risk)
    out = [replace(r, survival=None if np.isnan(survival[r.index])
                   else round(float(survival[r.index]), 4),
                   interval=(round(float(iv[r.index, 0]), 4), round(float(iv[r.index, 1]), 4)))
           for r in rows]
    return out, Robustness(replicates=reps, seed=seed, resampled=tuple(resampled),
                           flag_threshold=stage.robustness_flag, flagged=bool(fragile),
                           note=note)


def build_result(program: Program, stage: Stage, rows: Sequence[TeamRow], *, cut: Cut,
                 robustness: Robustness | None, repechage: RepechageOutcome | None,
                 records: Sequence[Record], applicants: Sequence[Entrant] = (),
                 banner: str | None = None, extra_hashes: dict[str, str] | None = None,
                 ) -> StageResult:
    """The immutable, versioned record of the stage run; teams in rank order."""
    team_results = []
    for row in sorted(rows, key=lambda r: r.rank):
        if row.decision is None:
            raise ValueError(f"no decision for team {row.team_id}: run decide_cut first")
        team_results.append(TeamResult(
            team_id=row.team_id, team_name=row.name, total=round(row.total, 6),
            max_measured=row.max_measured, components=row.components, axes=row.axes,
            gates=row.gates, rank=row.rank, decision=row.decision, decision_reason=row.reason,
            survival_probability=row.survival, total_interval=row.interval,
            not_measured=row.not_measured))
    all_nm = sorted({k for tr in team_results for k in tr.not_measured})
    sim = sorted({cs.component_id for tr in team_results for cs in tr.components
                  if "simulated" in _walk_sources(cs)}
                 | ({"repechage"} if repechage and "simulated" in repechage.source else set()))
    entrants = [r.entrant for r in sorted(rows, key=lambda r: r.index)]
    hashes = {f"dossier:{e.team_id}": e.dossier_hash for e in (*entrants, *applicants)
              if e.dossier_hash}
    hashes["records"] = sha256_json(sorted(r.content_hash() for r in records))
    hashes.update(extra_hashes or {})
    return StageResult(
        program_id=program.id, stage_id=stage.id, stage_name=stage.name, date=stage.date,
        total_points=stage.total, axis_max=_axes(stage, None, 0), rule=cut.rule,
        teams=tuple(team_results), robustness=robustness,
        repechage=repechage, not_measured=tuple(all_nm), simulated_sources=tuple(sim),
        banner=banner, input_hashes=dict(sorted(hashes.items())), code_version=code_version(),
        created_at=dt.datetime.now(dt.UTC).replace(microsecond=0))


def _component_tree(comp: Component, leaves: Leaves, i: int) -> ComponentScore:
    if not comp.children:
        ls = leaves[comp.id]
        p = float(ls.points[i])
        return ComponentScore(
            component_id=comp.id, title=comp.title or comp.id,
            points=None if np.isnan(p) else round(p, 6), max_points=comp.points, axis=comp.axis,
            kind=comp.kind.value if comp.kind else None, sources=tuple(sorted(ls.sources[i])),
            detail=ls.detail[i], evidence=tuple(ls.evidence[i]))
    kids = tuple(_component_tree(c, leaves, i) for c in comp.children)
    measured = [k for k in kids if k.points is not None]
    pts = sum(k.points for k in measured if k.points is not None) if measured else None
    missing = [k.component_id for k in kids if k.points is None]
    detail = (f"sum of {len(measured)} measured parts"
              + (f"; not measured: {', '.join(missing)}" if missing else ""))
    return ComponentScore(
        component_id=comp.id, title=comp.title or comp.id,
        points=None if pts is None else round(pts, 6), max_points=comp.points, axis=comp.axis,
        sources=tuple(sorted({s for k in kids for s in k.sources})), detail=detail,
        children=kids)


def _axes(stage: Stage, leaves: Leaves | None, i: int) -> dict[str, float]:
    """Axis subtotals: a leaf's points go to its axis; committee/audit leaves whose rubric
    items carry their own axes split the points in proportion to the item maxima.
    With ``leaves`` None, every leaf counts at its full points: the axis maxima."""
    out: dict[str, float] = {}

    def visit(c: Component, inherited: str | None) -> None:
        axis = c.axis or inherited
        if c.children:
            for ch in c.children:
                visit(ch, axis)
            return
        p = c.points if leaves is None else float(leaves[c.id].points[i])
        if np.isnan(p):
            return
        if c.rubric and any(it.axis for it in c.rubric):
            total = sum(it.max for it in c.rubric)
            for it in c.rubric:
                ax = it.axis or axis
                if ax:
                    out[ax] = out.get(ax, 0.0) + p * it.max / total
        elif axis:
            out[axis] = out.get(axis, 0.0) + p

    for comp in stage.composition:
        visit(comp, None)
    return {k: round(v, 6) for k, v in sorted(out.items())}


def _flatten(cs: ComponentScore) -> list[ComponentScore]:
    return [cs, *(d for k in cs.children for d in _flatten(k))]


def _walk_sources(cs: ComponentScore) -> list[str]:
    return [*cs.sources, *(s for k in cs.children for s in _walk_sources(k))]
