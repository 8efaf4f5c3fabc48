"""An independence gate's policy read against a verdict, and its evidence as table rows.

Why here and not in the engine: the policy is the programme's, not the measurement's.
The verdict record says which components were copied, derived by training or
co-adapted, and how much of the model each covers; the programme says which of those
a stage tolerates. Reads only record fields, never the engine's prose.
"""

from __future__ import annotations

from typing import Literal

from kaieval.records import ComponentEvidence, IndependenceVerdict
from kaieval.scoring.results import IndependenceRow
from kaieval.spec.program import POLICY_LINES, IndependencePolicy

Status = Literal["pass", "fail", "not_measured"]
_FLAG: dict[str, Status] = {"pass": "pass", "fail": "fail", "flag": "not_measured"}


def policy_words(line: str) -> str:
    """What a policy line is about, in words (its field description)."""
    name = line.split(":", 1)[0]
    field = IndependencePolicy.model_fields.get(name)
    if field is None:
        return "no component is copied, derived by training or co-adapted"
    return field.description or name


def _applies(v: IndependenceVerdict) -> set[str]:
    """The policy lines that apply to a verdict.

    A record written before the kinds existed has none; its overall verdict stands in
    (``derived`` -> derived_model, ``partial`` -> copied), the stricter reading.
    """
    kinds: set[str] = {s.kind for s in v.shares if s.components}
    if not v.shares:
        kinds = {e.kind for e in v.evidence if e.kind is not None}
        if not kinds:
            kinds = {"copied"} if v.verdict == "partial" else set()
    out: set[str] = {k for k in kinds if k in POLICY_LINES}
    if v.verdict == "derived":
        out.add("derived_model")
    if v.verdict == "inconclusive":
        out.add("inconclusive")
    return out


def policy_decision(policy: IndependencePolicy, v: IndependenceVerdict) -> tuple[Status, str]:
    """The gate's status and the policy line that decided it, as ``"copied: fail"``.

    The lines are read in :data:`POLICY_LINES` order; the first that applies and fails
    decides. If none fails, the first that applies is quoted (it passed); if none
    applies, nothing depends on a reference and the gate passes on ``no dependence``.
    """
    applies = [line for line in POLICY_LINES if line in _applies(v)]
    for line in applies:
        outcome = getattr(policy, line)
        if outcome != "pass":
            return _FLAG[outcome], f"{line}: {outcome}"
    if applies:
        return "pass", f"{applies[0]}: pass"
    return "pass", "no line applies: pass"


def _coverage(e: ComponentEvidence) -> str:
    if e.lineage is not None:  # tokenizer lineage: measured or not; the verdict word says more
        return "not measured" if e.lineage == "not measured" else "compared"
    if e.kind == "not_comparable" or e.verdict == "inconclusive":
        return f"not comparable: {e.not_compared or 'nothing to compare'}"
    if e.not_compared:
        return f"partly compared: {e.not_compared}"
    return "compared"


def independence_rows(v: IndependenceVerdict) -> tuple[IndependenceRow, ...]:
    """One row per evidence line: test, effect size, p-value, kind of evidence, coverage."""
    return tuple(IndependenceRow(
        component=e.component, reference=e.reference, test=e.test,
        effect_size=e.effect_size, p_value=e.p_value, log10_p=e.log10_p, kind=e.kind,
        coverage=_coverage(e), parameters=e.parameters, detail=e.detail)
        for e in v.evidence)
