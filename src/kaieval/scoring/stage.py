"""The stage engine: component points, gates, totals, ranking, the cut, repechage, robustness.

Pure function of (programme stage, teams, stored records, seed): no I/O, no
torch. Rerunning with the same inputs and seed gives the same ``StageResult``
(apart from ``created_at``), which is what makes a stage rerun idempotent.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from kaieval.hashing import sha256_json
from kaieval.records import IndependenceVerdict, Record, RepechageVote
from kaieval.scoring.components import BootstrapPlan, LeafScores, leaf_scores
from kaieval.scoring.results import (
    ComponentScore,
    Decision,
    GateOutcome,
    RepechageOutcome,
    Robustness,
    StageResult,
    TeamResult,
)
from kaieval.scoring.robustness import evaluator_weights, interval, survival_probability
from kaieval.spec.dossier import Submission
from kaieval.spec.program import Component, Gate, GateKind, Program, Stage
from kaieval.version import code_version


@dataclass(frozen=True)
class Entrant:
    """A team taking part in a stage (or applying for its repechage)."""

    team_id: str
    name: str
    submission: Submission | None
    dossier_hash: str = ""


def _component_tree(comp: Component, leaves: dict[str, LeafScores], i: int) -> ComponentScore:
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


def _axes(stage: Stage, leaves: dict[str, LeafScores] | None, i: int) -> dict[str, float]:
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


def _gate(g: Gate, team: str, verdicts: dict[str, IndependenceVerdict],
          comp_points: dict[str, float | None], total: float) -> GateOutcome:
    if g.kind is GateKind.INDEPENDENCE:
        v = verdicts.get(team)
        if v is None:
            status = {"pass": "pass", "fail": "fail", "flag": "not_measured"}[g.on_not_measured]
            return GateOutcome(gate_id=g.id, rule=g.rule, status=status,  # type: ignore[arg-type]
                               reason="independence not measured")
        ev = tuple(f"{e.component}: {e.verdict} by {e.test}"
                   + (f" (p = {e.p_value:.3g})" if e.p_value is not None else "")
                   + (f" — {e.detail}" if e.detail else "") for e in v.evidence)
        label = v.verdict.replace("_", " ")
        if v.verdict in g.disallow:
            return GateOutcome(gate_id=g.id, rule=g.rule, status="fail",
                               reason=f"verdict '{label}' against {', '.join(v.references)} "
                                      f"is not allowed (α = {v.alpha:g}); {v.summary}",
                               evidence=ev)
        return GateOutcome(gate_id=g.id, rule=g.rule, status="pass",
                           reason=f"verdict '{label}' against {', '.join(v.references)} "
                                  f"(α = {v.alpha:g}); {v.summary}", evidence=ev)
    value = total if g.component == "total" else comp_points.get(g.component)
    if value is None:
        status = {"pass": "pass", "fail": "fail", "flag": "not_measured"}[g.on_not_measured]
        return GateOutcome(gate_id=g.id, rule=g.rule, status=status,  # type: ignore[arg-type]
                           reason=f"{g.component} not measured")
    ok = value >= g.min
    return GateOutcome(gate_id=g.id, rule=g.rule, status="pass" if ok else "fail",
                       reason=f"{g.component} = {value:.2f} {'>=' if ok else '<'} {g.min:g}")


def _sort_key(stage: Stage, total: float, comp_points: dict[str, float | None],
              team_id: str) -> tuple[object, ...]:
    """Descending total, then each tie-breaker component descending, then team id."""
    tb = tuple(-(comp_points.get(c) or 0.0) for c in stage.tie_breakers)
    return (-round(total, 9), *tb, team_id)


def run_stage(program: Program, stage: Stage, entrants: Sequence[Entrant],
              records: Sequence[Record], *, seed: int = 0,
              applicants: Sequence[Entrant] = (), replicates: int | None = None,
              banner: str | None = None, extra_hashes: dict[str, str] | None = None,
              ) -> StageResult:
    """Score one stage from its stored records and decide who advances."""
    teams = [e.team_id for e in entrants]
    if len(set(teams)) != len(teams):
        raise ValueError("duplicate team ids among entrants")
    t = len(teams)
    records = [r for r in records if r.stage_id == stage.id]
    reps = stage.robustness_replicates if replicates is None else replicates
    rng = np.random.default_rng(seed)
    evaluators = tuple(sorted({getattr(r, "evaluator_id", "") for r in records
                               if r.__class__.__name__ == "CommitteeSheet"}))
    plan = BootstrapPlan(
        replicates=reps, rng=rng, evaluators=evaluators,
        evaluator_weights=evaluator_weights(len(evaluators), reps, rng).astype(np.float64)
        if reps and evaluators else None) if reps else None
    leaves = {c.id: leaf_scores(c, stage.id, teams, [e.submission for e in entrants], records,
                                plan) for c in stage.leaves()}
    verdicts = {r.team_id: r for r in records if isinstance(r, IndependenceVerdict)}

    rows = []
    for i, e in enumerate(entrants):
        comps = tuple(_component_tree(c, leaves, i) for c in stage.composition)
        flat = {cs.component_id: cs.points for c in comps for cs in _flatten(c)}
        total = sum(c.points for c in comps if c.points is not None)
        max_measured = sum(c.max_points for c in comps if c.points is not None)
        not_measured = tuple(k for k, v in flat.items() if v is None
                             and stage.component(k).children == ())
        gates = tuple(_gate(g, e.team_id, verdicts, flat, total) for g in stage.gates)
        rows.append((e, comps, flat, total, max_measured, not_measured, gates))

    order = sorted(range(t), key=lambda i: _sort_key(stage, rows[i][3], rows[i][2], teams[i]))
    rank = {i: r + 1 for r, i in enumerate(order)}
    gated = np.array([any(g.status == "fail" for g in rows[i][6]) for i in range(t)])
    eligible_order = [i for i in order if not gated[i]]
    if stage.advance is not None:
        n_keep = min(stage.advance, len(eligible_order))
        rule = (f"the top {stage.advance} teams that pass every gate advance"
                + (f" (of {stage.entrants} applicants on record)" if stage.entrants else ""))
    else:
        n_keep = max(len(eligible_order) - (stage.cut or 0), 0)
        rule = (f"the lowest-scoring {stage.cut} team(s) among those passing every gate are cut; "
                "a team failing a gate is out whatever its score")
    keep = set(eligible_order[:n_keep])

    # Robustness: totals per replicate, survival of the cut.
    survival = np.full(t, np.nan)
    intervals: list[tuple[float, float] | None] = [None] * t
    robustness: Robustness | None = None
    resampled = sorted({s for ls in leaves.values() for s in ls.resampled})
    if plan and resampled:
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
        survival = survival_probability(rep_tot, cut=stage.cut if stage.advance is None else None,
                                        advance=stage.advance, eligible=~gated)
        iv = interval(rep_tot)
        intervals = [(round(float(iv[i, 0]), 4), round(float(iv[i, 1]), 4)) for i in range(t)]
        losers = [i for i in range(t) if not gated[i] and i not in keep]
        fragile = [i for i in losers if survival[i] > stage.robustness_flag]
        winners_at_risk = [i for i in keep if survival[i] < 1 - stage.robustness_flag]
        if fragile:
            note = ("the cut is fragile: " + "; ".join(
                f"{entrants[i].name} had a {survival[i]:.0%} chance of surviving" for i in fragile))
        elif losers:
            note = ("the cut is robust: no team on the losing side survived in more than "
                    f"{stage.robustness_flag:.0%} of replicates")
        else:
            note = "no team was cut on score"
        if winners_at_risk:
            note += "; at risk on the winning side: " + "; ".join(
                f"{entrants[i].name} {survival[i]:.0%}" for i in winners_at_risk)
        robustness = Robustness(replicates=reps, seed=seed, resampled=tuple(resampled),
                                flag_threshold=stage.robustness_flag, flagged=bool(fragile),
                                note=note)

    # Repechage
    decisions: dict[int, tuple[Decision, str]] = {}
    for i in range(t):
        if gated[i]:
            failed = [g for g in rows[i][6] if g.status == "fail"]
            decisions[i] = ("gated", "; ".join(f"gate '{g.gate_id}' failed: {g.reason}"
                                               for g in failed))
        elif i in keep:
            decisions[i] = ("advance", f"rank {rank[i]}; within the {n_keep} places that advance")
        else:
            decisions[i] = ("cut", f"rank {rank[i]}; below the {n_keep} places that advance")
    repechage = None
    if stage.repechage is not None:
        rp = stage.repechage
        cands = [teams[i] for i in range(t) if decisions[i][0] == "cut"]
        if rp.candidates == "cut_and_applicants":
            cands += [a.team_id for a in applicants if a.team_id not in teams]
        names = {e.team_id: e.name for e in (*entrants, *applicants)}
        rvotes = [r for r in records if isinstance(r, RepechageVote)]
        counts = Counter(v.team_id for v in rvotes if v.team_id in cands)
        n_eval = len({v.evaluator_id for v in rvotes})
        ranked = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
        winners = tuple(c for c, n in ranked[:rp.slots] if n_eval and n / n_eval > rp.majority)
        for i in range(t):
            if teams[i] in winners:
                decisions[i] = ("repechage", f"cut on score (rank {rank[i]}), then won the "
                                f"repechage with {counts[teams[i]]} of {n_eval} votes")
        if not rvotes:
            reason = "no repechage votes stored"
        elif winners:
            reason = ", ".join(f"{names.get(w, w)} won {counts[w]} of {n_eval} votes "
                               f"(> {rp.majority:.0%})" for w in winners)
        else:
            reason = f"no candidate won more than {rp.majority:.0%} of {n_eval} votes"
        repechage = RepechageOutcome(
            candidates=tuple(cands), candidate_names={c: names.get(c, c) for c in cands},
            votes=dict(sorted(counts.items())), evaluators=n_eval,
            majority=rp.majority, winners=winners, reason=reason,
            source=",".join(sorted({v.source.value for v in rvotes})) or "none")

    team_results = []
    for i in order:
        e, comps, _flat, total, max_measured, not_measured, gates = rows[i]
        team_results.append(TeamResult(
            team_id=e.team_id, team_name=e.name, total=round(total, 6),
            max_measured=max_measured, components=comps, axes=_axes(stage, leaves, i),
            gates=gates, rank=rank[i], decision=decisions[i][0], decision_reason=decisions[i][1],
            survival_probability=None if np.isnan(survival[i]) else round(float(survival[i]), 4),
            total_interval=intervals[i], not_measured=not_measured))

    all_nm = sorted({k for tr in team_results for k in tr.not_measured})
    sim = sorted({cs.component_id for tr in team_results for cs in tr.components
                  if "simulated" in _walk_sources(cs)}
                 | ({"repechage"} if repechage and "simulated" in repechage.source else set()))
    hashes = {f"dossier:{e.team_id}": e.dossier_hash for e in (*entrants, *applicants)
              if e.dossier_hash}
    hashes["records"] = sha256_json(sorted(r.content_hash() for r in records))
    hashes.update(extra_hashes or {})
    return StageResult(
        program_id=program.id, stage_id=stage.id, stage_name=stage.name, date=stage.date,
        total_points=stage.total, axis_max=_axes(stage, None, 0), rule=rule,
        teams=tuple(team_results), robustness=robustness,
        repechage=repechage, not_measured=tuple(all_nm), simulated_sources=tuple(sim),
        banner=banner, input_hashes=dict(sorted(hashes.items())), code_version=code_version(),
        created_at=dt.datetime.now(dt.UTC).replace(microsecond=0))


def _flatten(cs: ComponentScore) -> list[ComponentScore]:
    return [cs, *(d for k in cs.children for d in _flatten(k))]


def _walk_sources(cs: ComponentScore) -> list[str]:
    return [*cs.sources, *(s for k in cs.children for s in _walk_sources(k))]
