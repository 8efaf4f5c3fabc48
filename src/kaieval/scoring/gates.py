"""Gate outcomes: independence verdicts and minimum points (docs/formulas.md, *Gates*)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from kaieval.records import IndependenceVerdict
from kaieval.scoring.independence_policy import (
    independence_rows,
    policy_decision,
    policy_words,
)
from kaieval.scoring.results import GateOutcome
from kaieval.spec.program import Gate, GateKind

GateStatus = Literal["pass", "fail", "not_measured"]

# What a gate says when its input was not measured, by the gate's ``on_not_measured``.
_NOT_MEASURED: dict[str, GateStatus] = {"pass": "pass", "fail": "fail", "flag": "not_measured"}


def gate_outcome(gate: Gate, verdict: IndependenceVerdict | None,
                 points: Mapping[str, float | None], total: float) -> GateOutcome:
    """One team's outcome of one gate, from its independence verdict (if any) and points."""
    if gate.kind is GateKind.INDEPENDENCE:
        return _independence(gate, verdict)
    value = total if gate.component == "total" else points.get(gate.component)
    if value is None:
        return GateOutcome(gate_id=gate.id, rule=gate.rule,
                           status=_NOT_MEASURED[gate.on_not_measured],
                           reason=f"{gate.component} not measured")
    ok = value >= gate.min
    return GateOutcome(gate_id=gate.id, rule=gate.rule, status="pass" if ok else "fail",
                       reason=f"{gate.component} = {value:.2f} {'>=' if ok else '<'} "
                              f"{gate.min:g}")


def _independence(gate: Gate, v: IndependenceVerdict | None) -> GateOutcome:
    if v is None:
        return GateOutcome(gate_id=gate.id, rule=gate.rule,
                           status=_NOT_MEASURED[gate.on_not_measured],
                           reason="independence not measured")
    evidence = tuple(f"{e.component}: {e.verdict} by {e.test}"
                     + (f" (p = {e.p_value:.3g})" if e.p_value is not None else "")
                     + (f" — {e.detail}" if e.detail else "") for e in v.evidence)
    label = v.verdict.replace("_", " ")
    against = f"verdict '{label}' against {', '.join(v.references)}"
    if gate.policy is not None:
        status, line = policy_decision(gate.policy, v)
        said = f"policy line \"{line}\" ({policy_words(line)})"
    else:
        status = "fail" if v.verdict in gate.disallow else "pass"
        line = f"disallow: [{', '.join(gate.disallow)}]"
        said = (f"\"{line}\" ({label} is {'' if status == 'fail' else 'not '}listed; no "
                "policy in the programme, so the gate reads the overall verdict)")
    verb = {"fail": "fails", "pass": "passes", "not_measured": "is flagged"}[status]
    sentence = f"{v.sentence or v.summary} The gate {verb} by {said}."
    rows = independence_rows(v)
    if gate.policy is None:
        reason = (f"{against} is not allowed (α = {v.alpha:g}); {v.summary}" if status == "fail"
                  else f"{against} (α = {v.alpha:g}); {v.summary}")
    else:
        reason = f"{against} (α = {v.alpha:g}); decided by {said}"
    return GateOutcome(gate_id=gate.id, rule=gate.rule, status=status, reason=reason,
                       evidence=evidence, sentence=sentence, decided_by=line,
                       components=rows)
