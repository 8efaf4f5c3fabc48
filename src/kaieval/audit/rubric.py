"""Audit rubric evaluation: programme rules + measured figures -> ``AuditItem`` records.

The points and the rule of every audit item live in the programme YAML
(``RubricItem.rule``); this module only applies them. Each record's evidence
says the figure, where it came from and the rule, so a report can show for
every point awarded or withheld why. An item whose figure is not measured gets
*no* record (the stage engine then reports the component as not measured)
rather than a zero that would read as a finding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from kaieval.audit.measures import Figure
from kaieval.records import AuditItem
from kaieval.spec.program import Component, ComponentKind, Source, Stage

POINT_DECIMALS = 4


@dataclass(frozen=True)
class NotScored:
    """An audit item left without a record, and why."""

    component_id: str
    item_id: str
    measure: str
    reason: str


def evidence_line(fig: Figure, rule_text: str, share: float, max_points: float) -> str:
    """One line: figure, its source, the rule and what it earned."""
    detail = f"; {fig.detail}" if fig.detail else ""
    return (f"{fig.measure} = {fig.shown()} [{fig.source}: {fig.where}{detail}]; "
            f"rule: {rule_text} -> {share:.0%} of {max_points:g}")


def score_component(comp: Component, figures: Mapping[str, Figure], *, stage_id: str,
                    team_id: str, input_hashes: Mapping[str, str] | None = None,
                    ) -> tuple[list[AuditItem], list[NotScored]]:
    """Apply an audit component's rules to one team's figures."""
    if comp.kind is not ComponentKind.AUDIT:
        raise ValueError(f"component '{comp.id}' is not an audit component")
    items: list[AuditItem] = []
    skipped: list[NotScored] = []
    for it in comp.rubric:
        rule = it.rule
        if rule is None:
            skipped.append(NotScored(comp.id, it.id, "", "the programme gives this item no "
                                     "rule; only imported audit records can score it"))
            continue
        fig = figures.get(rule.measure)
        if fig is None or fig.value is None:
            reason = fig.detail if fig is not None else "the audit did not produce this figure"
            where = f" ({fig.where})" if fig is not None else ""
            skipped.append(NotScored(comp.id, it.id, rule.measure, reason + where))
            continue
        share = rule.share(fig.value)
        items.append(AuditItem(
            stage_id=stage_id, team_id=team_id,
            source=Source.MEASURED if fig.source == "measured" else Source.DECLARED,
            component_id=comp.id, item_id=it.id,
            points=round(share * it.max, POINT_DECIMALS), max_points=it.max,
            evidence=evidence_line(fig, rule.describe(), share, it.max),
            input_hashes=dict(input_hashes or {}),
            settings={"rule": rule.model_dump(mode="json", by_alias=True, exclude_defaults=True),
                      "value": fig.value}))
    return items, skipped


def audit_components(stage: Stage) -> list[Component]:
    """The stage's audit leaves, in document order."""
    return [c for c in stage.leaves() if c.kind is ComponentKind.AUDIT]


def score_stage(stage: Stage, figures: Mapping[str, Figure], *, team_id: str,
                input_hashes: Mapping[str, str] | None = None,
                ) -> tuple[list[AuditItem], list[NotScored]]:
    """Every audit item of a stage for one team."""
    items: list[AuditItem] = []
    skipped: list[NotScored] = []
    for comp in audit_components(stage):
        i, s = score_component(comp, figures, stage_id=stage.id, team_id=team_id,
                               input_hashes=input_hashes)
        items += i
        skipped += s
    return items, skipped
