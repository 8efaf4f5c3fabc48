"""Points of each leaf component, as a point estimate and as bootstrap replicates.

One function per component kind, each taking the stored records and returning
``LeafScores``: per-team points (NaN = not measured), per-team evidence lines,
and optionally an [R, T] matrix of bootstrap replicates. Keeping point estimate
and replicates in one place guarantees they use the same formula.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from numpy.typing import NDArray

from kaieval.arena.bradley_terry import fit_strengths, user_points, win_matrix, win_share
from kaieval.committee.trimmed import committee_points, trimmed_item_means
from kaieval.errors import KaiError
from kaieval.records import (
    AuditItem,
    BenchmarkResult,
    CommitteeSheet,
    EngineRun,
    Record,
    UserRating,
    UserVote,
)
from kaieval.scoring.robustness import bootstrap_committee_points, bootstrap_mean
from kaieval.spec.dossier import Submission
from kaieval.spec.program import RATING_SCALE, Component, ComponentKind, RelativeMapping

Array = NDArray[np.float64]


@dataclass
class LeafScores:
    points: Array  # [T], NaN where not measured
    sources: list[set[str]]
    evidence: list[list[str]]
    detail: list[str]
    replicates: Array | None = None  # [R, T]
    resampled: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class BootstrapPlan:
    replicates: int
    rng: np.random.Generator
    evaluator_weights: Array | None  # [R, E] shared by all committee components
    evaluators: tuple[str, ...]


def _empty(t: int) -> LeafScores:
    return LeafScores(points=np.full(t, np.nan), sources=[set() for _ in range(t)],
                      evidence=[[] for _ in range(t)], detail=["" for _ in range(t)])


def share(rel: Array | float, m: RelativeMapping) -> Array:
    """Share of a benchmark's points for relative performance ``rel`` (see RelativeMapping)."""
    return np.clip((np.asarray(rel, dtype=np.float64) - m.floor) / (m.full - m.floor), 0.0, m.cap)


def not_comparable(declared: object, measured: object) -> str:
    """Why a declared figure cannot be divided into a measured score ('' when it can).

    A bare published number (no protocol) is compared as before; a figure that states
    its protocol (harness, version, variant, shots) is compared only with a score
    produced under the same one.
    """
    if not isinstance(declared, dict):
        return ""
    if not isinstance(measured, dict):
        return f"declared with {_show(declared)}, measured with no stated protocol"
    if all(measured.get(k) == declared.get(k) for k in _PROTOCOL):
        return ""
    return f"declared with {_show(declared)}, measured with {_show(measured)}"


_PROTOCOL = ("harness", "version", "variant", "shots")


def _show(p: dict[str, object]) -> str:
    return f"{p.get('harness')} {p.get('version')} {p.get('variant')} {p.get('shots')}-shot"


def benchmark_scores(comp: Component, teams: Sequence[str], subs: Sequence[Submission | None],
                     records: Sequence[Record], plan: BootstrapPlan | None) -> LeafScores:
    """Relative performance against each team's declared target, mapped to points.

    The target's score is measured by the same engine when a ``target`` record
    exists, else the dossier's published figure (source ``declared``). A benchmark
    nobody was measured on is left out of the component; a team missing a
    benchmark others were measured on gets no share for it.
    """
    t = len(teams)
    out = _empty(t)
    res: dict[tuple[str, str, str], BenchmarkResult] = {}
    for r in records:
        if isinstance(r, BenchmarkResult):
            res[(r.team_id, r.role, r.benchmark_id)] = r
    measured = [b for b in comp.benchmarks
                if any((tid, "candidate", b.id) in res for tid in teams)]
    if not measured:
        for i in range(t):
            out.detail[i] = "not measured: no benchmark results stored for this component"
        return out
    wsum = sum(b.weight for b in measured)
    reps = plan.replicates if plan else 0
    pts = np.zeros(t)
    rep_pts = np.zeros((reps, t))
    for i, tid in enumerate(teams):
        sub_i = subs[i]
        target = sub_i.target if sub_i is not None else None
        for b in measured:
            cand = res.get((tid, "candidate", b.id))
            if cand is None:
                out.evidence[i].append(f"{b.id}: no result submitted (0 points)"
                                       + _why_not(records, tid, "bench"))
                continue
            tgt_rec = res.get((tid, "target", b.id))
            declared: object = None
            if tgt_rec is not None:
                tgt, tsrc = tgt_rec.score, tgt_rec.source.value
                if tsrc == "declared":
                    declared = tgt_rec.settings.get("protocol")
            elif target is not None and b.id in target.published:
                tgt, tsrc = target.published_score(b.id), "declared"
                proto = target.published_protocol(b.id)
                declared = proto.model_dump() if proto is not None else None
            else:
                out.evidence[i].append(f"{b.id}: score {cand.score:.4f} but no target score "
                                       "(0 points)")
                continue
            why = not_comparable(declared, cand.settings.get("protocol"))
            if why:
                out.evidence[i].append(f"{b.id}: score {cand.score:.4f}; the target's figure "
                                       f"is not comparable ({why}) (0 points)")
                continue
            if tgt <= 0:
                out.evidence[i].append(f"{b.id}: target score {tgt} is not positive (0 points)")
                continue
            rel = cand.score / tgt
            s = float(share(rel, comp.mapping))
            pts[i] += comp.points * b.weight / wsum * s
            out.sources[i].update({cand.source.value, tsrc})
            tname = target.name if target else "target"
            out.evidence[i].append(
                f"{b.id}: {cand.score:.4f} vs {tname} {tgt:.4f} ({tsrc}) = {rel:.1%} "
                f"-> {s:.2f} of {comp.points * b.weight / wsum:.2f} pts [{cand.source.value}]")
            if reps:
                assert plan is not None
                if cand.item_scores:
                    bm = bootstrap_mean(np.asarray(cand.item_scores, dtype=np.float64), reps,
                                        plan.rng)
                    out.resampled.add("benchmark items")
                else:
                    bm = np.full(reps, cand.score)
                rep_pts[:, i] += comp.points * b.weight / wsum * share(bm / tgt, comp.mapping)
    # A team with no result on any benchmark that others were measured on is not
    # measured (its submission could not be run), not a team that scored zero.
    none = np.array([not any((tid, "candidate", b.id) in res for b in measured)
                     for tid in teams])
    out.points = np.where(none, np.nan, pts)
    if reps:
        out.replicates = np.where(none[None, :], np.nan, rep_pts)
    for i in range(t):
        if none[i]:
            out.detail[i] = ("not measured: no benchmark result stored for this team"
                             + _why_not(records, teams[i], "bench"))
            out.evidence[i] = []
            continue
        out.detail[i] = (f"{len(measured)} of {len(comp.benchmarks)} benchmarks measured; "
                         f"relative to the declared target, mapped by floor {comp.mapping.floor}, "
                         f"full {comp.mapping.full}, cap {comp.mapping.cap}")
    return out


def committee_scores(comp: Component, stage_id: str, teams: Sequence[str],
                     records: Sequence[Record], plan: BootstrapPlan | None) -> LeafScores:
    """Trimmed mean of the evaluators' sheets per rubric item, scaled to the component's points."""
    t = len(teams)
    out = _empty(t)
    sheets = [r for r in records if isinstance(r, CommitteeSheet)
              and r.component_id == comp.id and r.stage_id == stage_id]
    if not sheets:
        for i in range(t):
            out.detail[i] = "not measured: no committee sheets stored"
        return out
    evaluators = plan.evaluators if plan else tuple(sorted({s.evaluator_id for s in sheets}))
    e_index = {e: k for k, e in enumerate(evaluators)}
    t_index = {tid: k for k, tid in enumerate(teams)}
    items = [it.id for it in comp.rubric]
    scores = np.full((len(evaluators), t, len(items)), np.nan)
    coi = np.zeros((len(evaluators), t), dtype=bool)
    for s in sheets:
        if s.team_id not in t_index or s.evaluator_id not in e_index:
            continue
        e, k = e_index[s.evaluator_id], t_index[s.team_id]
        coi[e, k] = s.conflict_of_interest
        unknown = sorted(set(s.scores) - set(items))
        if unknown:
            raise KaiError(f"sheet of {s.evaluator_id} for {s.team_id} scores unknown rubric "
                           f"item(s) {', '.join(unknown)} of component '{comp.id}'",
                           where=f"stage {stage_id}")
        for j, item in enumerate(items):
            if item in s.scores:
                v, mx = s.scores[item], comp.rubric[j].max
                if not 0.0 <= v <= mx:
                    raise KaiError(f"sheet of {s.evaluator_id} for {s.team_id}: {comp.id}.{item} "
                                   f"= {v:g} is outside 0..{mx:g}", where=f"stage {stage_id}")
                scores[e, k, j] = v
    item_max = np.array([it.max for it in comp.rubric])
    out.points = committee_points(scores, coi, item_max, comp.points, trim_min=comp.trim_min_sheets)
    means = trimmed_item_means(scores, coi, trim_min=comp.trim_min_sheets)
    for i in range(t):
        valid = (~np.isnan(scores[:, i, :]).all(axis=1)) & ~coi[:, i]
        n_coi = int((coi[:, i] & ~np.isnan(scores[:, i, :]).all(axis=1)).sum())
        src = {s.source.value for s in sheets if s.team_id == teams[i]}
        out.sources[i] = src
        out.detail[i] = (f"{int(valid.sum())} sheets"
                         + (f", {n_coi} excluded for conflict of interest" if n_coi else "")
                         + (f"; highest and lowest dropped per item (>= {comp.trim_min_sheets})"
                            if valid.sum() >= comp.trim_min_sheets else "; plain mean"))
        for j, it in enumerate(comp.rubric):
            m = means[i, j]
            out.evidence[i].append(f"{it.id} ({it.title}): "
                                   + ("no valid sheet" if np.isnan(m) else
                                      f"{m:.2f} / {it.max:g}")
                                   + f" [{', '.join(sorted(src)) or 'none'}]")
    if plan and plan.replicates:
        out.replicates = bootstrap_committee_points(
            scores, coi, item_max, comp.points, replicates=plan.replicates, rng=plan.rng,
            trim_min=comp.trim_min_sheets, weights=plan.evaluator_weights)
        out.resampled.add("evaluators")
    return out


def rating_scores(comp: Component, stage_id: str, teams: Sequence[str],
                  records: Sequence[Record], plan: BootstrapPlan | None) -> LeafScores:
    """A rating-mode users component: the mean over raters of each rater's mean criterion
    score, mapped from the 1–5 scale linearly, (score - 1) / 4 x the component's points.

    The bootstrap resamples raters (with replacement, the same draw for every team, as
    committee evaluators are), so a team's interval reflects who happened to rate; a
    replicate that drew none of a team's raters keeps the team's point estimate.
    """
    low, high = RATING_SCALE
    t = len(teams)
    out = _empty(t)
    ratings = sorted((r for r in records if isinstance(r, UserRating) and r.stage_id == stage_id
                      and r.component_id == comp.id and r.team_id in teams and r.scores),
                     key=lambda r: r.natural_key())
    if not ratings:
        for i in range(t):
            out.detail[i] = "not measured: no user ratings stored"
        return out
    raters = sorted({r.rater_id for r in ratings})
    r_index = {name: k for k, name in enumerate(raters)}
    t_index = {tid: k for k, tid in enumerate(teams)}
    means = np.full((len(raters), t), np.nan)  # [E, T] each rater's mean criterion score
    for r in ratings:
        means[r_index[r.rater_id], t_index[r.team_id]] = float(np.mean(list(r.scores.values())))
    share = (means - low) / (high - low)
    rated = ~np.isnan(share)
    n = rated.sum(axis=0)
    with np.errstate(invalid="ignore"):
        avg = np.where(n > 0, np.nansum(share, axis=0) / np.maximum(n, 1), np.nan)
    out.points = comp.points * avg
    crit = [c.id for c in comp.criteria]
    for i, tid in enumerate(teams):
        mine = [r for r in ratings if r.team_id == tid]
        if not mine:
            out.detail[i] = "not measured: no user rated this team"
            continue
        out.sources[i] = {r.source.value for r in mine}
        out.detail[i] = (f"{len(mine)} user ratings, mean score {low + avg[i] * (high - low):.2f} "
                         f"of {low}–{high}, mapped (score - {low}) / {high - low}")
        for c in crit:
            vals = [r.scores[c] for r in mine if c in r.scores]
            if vals:
                out.evidence[i].append(f"{c}: {np.mean(vals):.2f} / {high} from {len(vals)} "
                                       f"users [{', '.join(sorted(out.sources[i]))}]")
    if plan and plan.replicates:
        e = len(raters)
        weights = plan.rng.multinomial(e, np.full(e, 1.0 / e), size=plan.replicates)  # [R, E]
        filled = np.where(rated, share, 0.0)
        num = weights @ filled  # [R, T]
        den = weights @ rated.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            rep = np.where(den > 0, num / den, avg[None, :])
        out.replicates = comp.points * rep
        out.resampled.add("user raters")
    return out


def user_scores(comp: Component, stage_id: str, teams: Sequence[str],
                records: Sequence[Record], plan: BootstrapPlan | None) -> LeafScores:
    """Bradley–Terry strengths from the stage's pairwise votes, relative to the best team.

    A rating-mode component is scored by ``rating_scores`` instead.
    """
    if comp.mode == "rating":
        return rating_scores(comp, stage_id, teams, records, plan)
    t = len(teams)
    out = _empty(t)
    # In natural-key order, so the bootstrap draws do not depend on how records came in.
    stored = sorted((r for r in records if isinstance(r, UserVote) and r.stage_id == stage_id
                     and r.vote.a in teams and r.vote.b in teams and r.vote.a != r.vote.b),
                    key=lambda r: (r.natural_key(), r.content_hash()))
    votes = [r.vote for r in stored]
    if not votes:
        for i in range(t):
            out.detail[i] = "not measured: no user votes stored"
        return out
    w = win_matrix(votes, teams)
    p = fit_strengths(w)
    games = w + w.T
    voted = games.sum(axis=1) > 0
    out.points = np.where(voted, user_points(p, comp.points), np.nan)
    src = {r.source.value for r in stored}
    voters = len({v.voter_id for v in votes})
    for i in range(t):
        if not voted[i]:
            out.detail[i] = "not measured: no user vote involved this team"
            continue
        out.sources[i] = set(src)
        out.detail[i] = (f"Bradley–Terry fit of {len(votes)} votes by {voters} users; "
                         "points relative to the strongest team")
        out.evidence[i].append(f"{games[i].sum():g} comparisons, {w[i].sum():g} wins "
                               f"(ties as 1/2), strength {p[i]:.3f} [{', '.join(sorted(src))}]")
    if plan and plan.replicates:
        idx = {tid: k for k, tid in enumerate(teams)}
        a = np.array([idx[v.a] for v in votes])
        b = np.array([idx[v.b] for v in votes])
        wa = np.array([win_share(v.winner) for v in votes])
        n = len(votes)
        counts = plan.rng.multinomial(n, np.full(n, 1.0 / n), size=plan.replicates)
        ws = np.zeros((plan.replicates, t, t))
        for r in range(plan.replicates):
            c = counts[r]
            np.add.at(ws[r], (a, b), c * wa)
            np.add.at(ws[r], (b, a), c * (1 - wa))
        out.replicates = np.where(voted[None, :], user_points(fit_strengths(ws), comp.points),
                                  np.nan)
        out.resampled.add("user votes")
    return out


def _why_not(records: Sequence[Record], team_id: str, engine: str) -> str:
    """The reason ``kai stage measure`` stored when it could not measure (or "")."""
    for r in records:
        if (isinstance(r, EngineRun) and r.team_id == team_id and r.engine == engine
                and r.status == "not_measured"):
            return f"; {engine}: {r.reason}"
    return ""


def audit_scores(comp: Component, stage_id: str, teams: Sequence[str],
                 records: Sequence[Record]) -> LeafScores:
    """Sum of audited rubric items (produced by the audit engine), capped at the item's max."""
    t = len(teams)
    out = _empty(t)
    by_team: dict[str, list[AuditItem]] = defaultdict(list)
    for r in records:
        if isinstance(r, AuditItem) and r.component_id == comp.id and r.stage_id == stage_id:
            by_team[r.team_id].append(r)
    maxes = {it.id: it.max for it in comp.rubric}
    total_max = sum(maxes.values())
    for i, tid in enumerate(teams):
        items = {a.item_id: a for a in by_team.get(tid, []) if a.item_id in maxes}
        # The evidence of measured items is shown even when the component cannot be scored:
        # a reader should see what was found, and which items are missing.
        out.evidence[i] = [f"{k}: {a.points:g}/{maxes[k]:g} — {a.evidence}"
                           for k, a in sorted(items.items())]
        if len(items) < len(maxes):
            missing = ", ".join(k for k in maxes if k not in items)
            out.detail[i] = (f"not measured: {len(maxes) - len(items)} of {len(maxes)} audit "
                             f"items have no result ({missing})"
                             + _why_not(records, tid, "audit"))
            continue
        got = sum(min(a.points, maxes[k]) for k, a in items.items())
        out.points[i] = comp.points * got / total_max
        out.sources[i] = {a.source.value for a in items.values()}
        out.detail[i] = f"audit rubric: {got:g} of {total_max:g}"
    return out


def leaf_scores(comp: Component, stage_id: str, teams: Sequence[str],
                subs: Sequence[Submission | None], records: Sequence[Record],
                plan: BootstrapPlan | None) -> LeafScores:
    if comp.kind is ComponentKind.BENCHMARKS:
        return benchmark_scores(comp, teams, subs, records, plan)
    if comp.kind is ComponentKind.COMMITTEE:
        return committee_scores(comp, stage_id, teams, records, plan)
    if comp.kind is ComponentKind.USERS:
        return user_scores(comp, stage_id, teams, records, plan)
    return audit_scores(comp, stage_id, teams, records)
