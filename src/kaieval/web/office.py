"""What the programme office sees of the committee: progress, aggregation, agreement, outliers.

The aggregation is the stage engine's own (``scoring.leaf_points.committee_scores``:
trimmed means scaled to the component's points), so the office sees the number the
stage will use. Agreement is Krippendorff's α per rubric item over the submitted,
non-conflicted sheets (interval level; the ``krippendorff`` package). A sheet is an
outlier on an item when its score is further from the median of the other sheets for
that team than ``max(0.3 x item max, 3 x their median absolute deviation)``.
"""

from __future__ import annotations

from typing import Any

import krippendorff
import numpy as np

from kaieval.records import CommitteeSheet
from kaieval.scoring.leaf_points import committee_scores
from kaieval.web import committee as cm
from kaieval.web.context import WebContext

OUTLIER_SHARE = 0.3
OUTLIER_MADS = 3.0


def committee_overview(ctx: WebContext, stage_id: str) -> list[dict[str, Any]]:
    """Per committee component: progress per team, aggregated points, α per item, outliers."""
    stage = ctx.program.stage(stage_id)
    teams = [d.team.id for d in cm.entrants(ctx, stage_id)]
    records = ctx.store.records(stage_id=stage_id, kind="sheet")
    sheets = [r for r in records if isinstance(r, CommitteeSheet)]
    slots = cm.assignments(ctx, stage_id)
    out = []
    for comp in cm.committee_components(stage):
        mine = [s for s in sheets if s.component_id == comp.id]
        leaf = committee_scores(comp, stage_id, teams, mine, None)
        progress = []
        for i, tid in enumerate(teams):
            assigned = sorted(s.evaluator for s in slots
                              if s.component_id == comp.id and s.team_id == tid)
            done = sorted(s.evaluator_id for s in mine if s.team_id == tid)
            points = float(leaf.points[i])
            progress.append({"team_id": tid, "assigned": assigned, "submitted": done,
                             "points": None if np.isnan(points) else round(points, 3),
                             "detail": leaf.detail[i]})
        out.append({"component_id": comp.id, "title": comp.title or comp.id,
                    "max_points": comp.points, "teams": progress,
                    "alpha": item_alpha(comp.rubric, mine, teams),
                    "outliers": outliers(comp.rubric, mine)})
    return out


def _valid(sheets: list[CommitteeSheet]) -> list[CommitteeSheet]:
    return [s for s in sheets if not s.conflict_of_interest]


def item_alpha(rubric: Any, sheets: list[CommitteeSheet], teams: list[str],
               ) -> dict[str, float | None]:
    """Krippendorff's α (interval) per item; None where fewer than two sheets overlap."""
    valid = _valid(sheets)
    evaluators = sorted({s.evaluator_id for s in valid})
    out: dict[str, float | None] = {}
    for item in rubric:
        data = np.full((len(evaluators), len(teams)), np.nan)
        for s in valid:
            if item.id in s.scores and s.team_id in teams:
                data[evaluators.index(s.evaluator_id), teams.index(s.team_id)] = \
                    s.scores[item.id]
        pairable = (np.sum(~np.isnan(data), axis=0) >= 2).sum()
        values = data[~np.isnan(data)]
        if len(evaluators) < 2 or pairable < 1 or np.unique(values).size < 2:
            out[item.id] = None
            continue
        alpha = float(krippendorff.alpha(reliability_data=data,
                                         level_of_measurement="interval"))
        out[item.id] = round(alpha, 3) if np.isfinite(alpha) else None
    return out


def outliers(rubric: Any, sheets: list[CommitteeSheet]) -> list[dict[str, Any]]:
    """Sheets far from the others on an item (see the module docstring for the rule)."""
    valid = _valid(sheets)
    flagged = []
    for item in rubric:
        for s in valid:
            if item.id not in s.scores:
                continue
            others = np.array([o.scores[item.id] for o in valid if o.team_id == s.team_id
                               and o.evaluator_id != s.evaluator_id and item.id in o.scores])
            if others.size < 2:
                continue
            med = float(np.median(others))
            mad = float(np.median(np.abs(others - med)))
            limit = max(OUTLIER_SHARE * item.max, OUTLIER_MADS * mad)
            if abs(s.scores[item.id] - med) > limit:
                flagged.append({"team_id": s.team_id, "evaluator": s.evaluator_id,
                                "item": item.id, "score": s.scores[item.id],
                                "others_median": med})
    return flagged
