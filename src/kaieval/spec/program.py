"""Programme spec: stages, their scored composition, gates, cut rules and repechage.

A programme is data, not code: the points, rubrics and rules of a stage live in
YAML so that the programme office can change a stage without a release, and so
that a report can cite the exact rule that awarded or withheld a point.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from kaieval.spec.messages import ID_PATTERN, display_name, spec_error

Id = Annotated[str, Field(pattern=ID_PATTERN)]
Name = Annotated[str, Field(min_length=1), AfterValidator(display_name)]
"""A name people read (team, organisation, programme, stage): see ``display_name``."""
Loc = tuple[str | int, ...]
POINT_TOLERANCE = 1e-6
MIN_POINTS = 1e-3
"""The fewest points a component, item or stage may be worth: totals are compared to 1e-6,
so points far below that could never separate two teams (and 1e-300 rounds to nothing)."""

KST = dt.timezone(dt.timedelta(hours=9), "KST")
"""Korean time, in which the programme's dates and deadlines are read."""


class Strict(BaseModel):
    """Base for spec models: unknown fields are errors and specs are immutable.

    Numbers are validated strictly (``strict=True`` on each numeric field): YAML
    reads ``yes``/``no``/``on``/``off`` as booleans, and pydantic's lax mode would
    quietly turn ``points: yes`` into 1 point; quoted numbers ("10") are refused
    too, so that a number always looks like one. Text fields accept bare numbers
    (``released: 2025``) because that is what a reader means by them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False,
                              coerce_numbers_to_str=True, allow_inf_nan=False)


class Source(StrEnum):
    """Where a stored number came from; shown next to every number in a report."""

    MEASURED = "measured"
    DECLARED = "declared"
    COMMITTEE = "committee"
    USERS = "users"
    SIMULATED = "simulated"


class ComponentKind(StrEnum):
    """What engine produces a leaf component's points."""

    BENCHMARKS = "benchmarks"  # relative performance against the declared target
    COMMITTEE = "committee"  # expert score sheets on a rubric
    USERS = "users"  # pairwise votes -> Bradley-Terry strengths
    AUDIT = "audit"  # sovereignty / openness / ecosystem rubric (audit engine)


class Axis(Strict):
    id: Id
    name: Name
    description: str = ""


class RuleStep(Strict):
    """One step of a ``steps`` rule: a measure at or above ``at`` earns ``share`` of the item."""

    at: float = Field(strict=True)
    share: float = Field(ge=0, le=1, strict=True)


class AuditRule(Strict):
    """How an audit item turns one measured figure into points (all of it lives in YAML).

    - ``linear``: share = clip((x - from) / (to - from), 0, 1); ``from`` above ``to``
      rewards lower values (e.g. fewer foreign dependencies).
    - ``steps``: the largest ``share`` among the steps whose ``at`` the figure reaches.
    - ``boolean``: full points when the figure equals ``award_when`` (default true).

    The measure name is checked against the audit catalogue when the programme is
    loaded, so a typo is a ``file:line`` error instead of an item nobody can score.
    """

    measure: str = Field(min_length=1)
    points: Literal["linear", "steps", "boolean"]
    from_: float | None = Field(default=None, alias="from", strict=True)
    to: float | None = Field(default=None, strict=True)
    steps: tuple[RuleStep, ...] = ()
    award_when: bool = Field(default=True, strict=True)

    @model_validator(mode="after")
    def _check_rule(self) -> AuditRule:
        import difflib

        from kaieval.audit.measures import MEASURES, measure_type

        kind = measure_type(self.measure)
        if kind is None:
            near = difflib.get_close_matches(self.measure, list(MEASURES), n=1)
            hint = f"; did you mean '{near[0]}'?" if near else ""
            raise spec_error(f"unknown measure '{self.measure}'{hint} (see docs/audit.md for "
                             "the list)", "measure")
        if self.points == "boolean":
            if kind != "bool":
                raise spec_error(f"measure '{self.measure}' is a {kind}, not yes/no; use "
                                 "points: linear or steps", "points")
            if self.from_ is not None or self.to is not None or self.steps:
                raise spec_error("a boolean rule takes no from/to/steps", "points")
            return self
        if kind == "bool":
            raise spec_error(f"measure '{self.measure}' is yes/no; use points: boolean",
                             "points")
        if self.points == "linear":
            if self.from_ is None or self.to is None:
                raise spec_error("a linear rule needs 'from' (no points) and 'to' (full "
                                 "points)", "points")
            if self.from_ == self.to:
                raise spec_error(f"'from' and 'to' are both {self.to:g}", "to")
            if self.steps:
                raise spec_error("a linear rule takes no steps", "steps")
            return self
        if not self.steps:
            raise spec_error("a steps rule needs a list of steps ({at: ..., share: ...})",
                             "points")
        if self.from_ is not None or self.to is not None:
            raise spec_error("a steps rule takes no from/to", "points")
        for i in range(1, len(self.steps)):
            if self.steps[i].at <= self.steps[i - 1].at:
                raise spec_error("steps must be listed with increasing 'at'", "steps", i, "at")
        return self

    def share(self, value: float | bool) -> float:
        """Share (0..1) of the item's points that ``value`` earns under this rule."""
        if self.points == "boolean":
            return 1.0 if bool(value) is self.award_when else 0.0
        x = float(value)
        if self.points == "linear":
            assert self.from_ is not None and self.to is not None
            return min(1.0, max(0.0, (x - self.from_) / (self.to - self.from_)))
        return max((s.share for s in self.steps if x >= s.at), default=0.0)

    def describe(self) -> str:
        """The rule in words, for evidence lines."""
        if self.points == "boolean":
            return f"full points if {self.measure} is {'yes' if self.award_when else 'no'}"
        if self.points == "linear":
            return f"linear in {self.measure}: {self.from_:g} -> none, {self.to:g} -> full"
        steps = ", ".join(f">= {s.at:g}: {s.share:g}" for s in self.steps)
        return f"steps on {self.measure}: {steps}"


class RubricItem(Strict):
    """One line of a score sheet; evaluators score it from 0 to ``max``.

    Audit items carry a ``rule`` instead: the audit engine measures and scores them.
    """

    id: Id
    title: str
    max: float = Field(ge=MIN_POINTS, strict=True)
    axis: Id | None = None
    guidance: str = ""
    rule: AuditRule | None = None


class Criterion(Strict):
    """One criterion of a rating-mode users component; users score it 1 (poor) to 5."""

    id: Id
    title: str = Field(min_length=1)


RATING_SCALE = (1, 5)
"""The rating scale of a users component in rating mode (매우 미흡 … 매우 우수)."""


class BenchmarkRef(Strict):
    """One benchmark inside a benchmarks component, with its weight in that component."""

    id: Id
    task: str = Field(min_length=1, description="catalogue name or task file")
    weight: float = Field(default=1.0, gt=0, strict=True)


class RelativeMapping(Strict):
    """Maps relative performance r = score / target_score to a share of the points.

    share = clip((r - floor) / (full - floor), 0, cap). With the defaults a model
    equal to its declared target earns full points and anything above is capped.
    """

    floor: float = Field(default=0.0, ge=0, strict=True)
    full: float = Field(default=1.0, gt=0, strict=True)
    cap: float = Field(default=1.0, gt=0, le=2, strict=True)

    @model_validator(mode="after")
    def _order(self) -> RelativeMapping:
        if self.full <= self.floor:
            raise spec_error(f"full ({self.full:g}) must be above floor ({self.floor:g})", "full")
        return self


class Component(Strict):
    """A scored part of a stage. Either has children (points must add up) or a ``kind``."""

    id: Id
    title: str = ""
    points: float = Field(ge=MIN_POINTS, strict=True)
    axis: Id | None = None
    kind: ComponentKind | None = None
    children: tuple[Component, ...] = ()
    rubric: tuple[RubricItem, ...] = ()
    benchmarks: tuple[BenchmarkRef, ...] = ()
    mapping: RelativeMapping = RelativeMapping()
    trim_min_sheets: int = Field(
        default=5, ge=3, strict=True,
        description="trim highest and lowest sheet per item from this many")
    mode: Literal["arena", "rating"] = Field(
        default="arena",
        description="users components: 'arena' (blind pairwise votes, Bradley-Terry) or "
                    "'rating' (each user scores each team 1-5 on the criteria)")
    criteria: tuple[Criterion, ...] = Field(
        default=(), description="rating mode: what users score, each 1-5")
    show_names: bool = Field(
        default=False, strict=True,
        description="rating mode: raters see the teams' names (stage 1 did); else codes")
    reveal_sheets: Literal["after_submit", "never"] = Field(
        default="after_submit",
        description="committee components: when an evaluator sees the other evaluators' "
                    "sheets for a team (after submitting their own, as HotCRP does, or never)")

    @model_validator(mode="after")
    def _shape(self) -> Component:
        if self.children:
            if self.kind is not None:
                raise spec_error("a component has either children or a kind, not both", "kind")
            for name in ("rubric", "benchmarks"):
                if getattr(self, name):
                    raise spec_error(f"a component with children takes no {name}; put it on "
                                     "the child that uses it", name)
            total = sum(c.points for c in self.children)
            if abs(total - self.points) > POINT_TOLERANCE:
                raise spec_error(f"children's points add up to {total:g}, not this component's "
                                 f"{self.points:g}", "points")
            _unique([c.id for c in self.children], "child component id", "children", "id")
            return self
        if self.kind is None:
            raise spec_error("a component needs a kind (benchmarks, committee, users or audit) "
                             "or children")
        if self.kind in (ComponentKind.COMMITTEE, ComponentKind.AUDIT) and not self.rubric:
            raise spec_error(f"a {self.kind.value} component needs a rubric (the score-sheet "
                             "items)", "kind")
        if self.kind is ComponentKind.BENCHMARKS and not self.benchmarks:
            raise spec_error("a benchmarks component needs a list of benchmarks", "kind")
        if self.rubric and self.kind not in (ComponentKind.COMMITTEE, ComponentKind.AUDIT):
            raise spec_error(f"a {self.kind.value} component takes no rubric (only committee "
                             "and audit components do)", "rubric")
        if self.benchmarks and self.kind is not ComponentKind.BENCHMARKS:
            raise spec_error(f"a {self.kind.value} component takes no benchmarks",
                             "benchmarks")
        _unique([r.id for r in self.rubric], "rubric item id", "rubric", "id")
        _unique([b.id for b in self.benchmarks], "benchmark id", "benchmarks", "id")
        self._users_fields()
        if "reveal_sheets" in self.model_fields_set and self.kind is not ComponentKind.COMMITTEE:
            raise spec_error("'reveal_sheets' is for committee components only", "reveal_sheets")
        return self

    def _users_fields(self) -> None:
        set_here = self.model_fields_set
        if self.kind is not ComponentKind.USERS:
            for name in ("mode", "criteria", "show_names"):
                if name in set_here:
                    raise spec_error(f"'{name}' is for users components only", name)
            return
        if self.mode == "rating":
            if not self.criteria:
                raise spec_error("a users component in rating mode needs 'criteria' (what "
                                 "users score 1-5)", "criteria")
            _unique([c.id for c in self.criteria], "criterion id", "criteria", "id")
            return
        for name in ("criteria", "show_names"):
            if name in set_here:
                raise spec_error(f"'{name}' is for rating mode (mode: rating); an arena is "
                                 "blind and scored by votes", name)

    @model_validator(mode="after")
    def _rules(self) -> Component:
        """Only audit items take a rule. An audit item without one is scored only by
        AuditItem records imported from elsewhere (``kai audit`` reports it unscored)."""
        for j, item in enumerate(self.rubric):
            if self.kind is not ComponentKind.AUDIT and item.rule is not None:
                raise spec_error(f"rubric item '{item.id}' has a rule but only audit "
                                 "components use rules", "rubric", j, "rule")
        return self

    def leaves(self) -> list[Component]:
        """Leaf components in document order."""
        if not self.children:
            return [self]
        return [leaf for c in self.children for leaf in c.leaves()]


class GateKind(StrEnum):
    INDEPENDENCE = "independence"
    MIN_POINTS = "min_points"


PolicyOutcome = Literal["pass", "fail"]

POLICY_LINES = ("derived_model", "copied", "derived_by_training", "co_adapted", "inconclusive")
"""An independence policy's lines, in the order they are read: the first that applies to a
team and says ``fail`` decides; docs/spec.md, *Independence policy*."""


class IndependencePolicy(Strict):
    """How an independence gate reads the kinds of evidence, one line per kind.

    Why lines per kind and not per verdict: "partial" covers both a copied foreign
    encoder and frozen foreign blocks, while a stage may fail the one and accept weights
    that merely co-adapted to something. The defaults are the stage-1 rule: foreign
    weights used as-is or fine-tuned fail, co-adaptation alone passes.
    """

    derived_model: PolicyOutcome = Field(
        default="fail", description="the model as a whole is derived from a reference")
    copied: PolicyOutcome = Field(
        default="fail", description="a component's foreign weights are used as-is "
                                    "(byte-identical or identical after alignment)")
    derived_by_training: PolicyOutcome = Field(
        default="fail", description="a component's foreign weights were trained on "
                                    "(effect size in the range fine-tunes produce)")
    co_adapted: PolicyOutcome = Field(
        default="pass", description="significant but weak dependence (co-adapted to "
                                    "copied parts, or very long training)")
    inconclusive: Literal["pass", "fail", "flag"] = Field(
        default="pass", description="nothing could be compared")


class Gate(Strict):
    """A rule that removes a team whatever its score."""

    id: Id
    kind: GateKind
    rule: str = Field(min_length=1, description="the rule in words, quoted in reports")
    disallow: tuple[Literal["derived", "partial", "inconclusive"], ...] = ("derived", "partial")
    component: Id = Field(default="total", description="a component id, or 'total'")
    min: float = Field(default=0.0, strict=True)
    on_not_measured: Literal["pass", "fail", "flag"] = "flag"
    registry: str | None = Field(
        default=None, min_length=1,
        description="independence gates: the reference registry folder the candidates are "
                    "checked against, relative to the programme file")
    alpha: float = Field(default=0.01, gt=0, lt=0.5, strict=True,
                         description="independence gates: the tests' significance level")
    policy: IndependencePolicy | None = Field(
        default=None, description="independence gates: pass or fail per kind of evidence "
                                  "(replaces 'disallow')")

    @model_validator(mode="after")
    def _kind_fields(self) -> Gate:
        if self.kind is not GateKind.INDEPENDENCE and self.registry is not None:
            raise spec_error("only an independence gate names a registry", "registry")
        if self.kind is not GateKind.INDEPENDENCE and self.policy is not None:
            raise spec_error("only an independence gate has a policy", "policy")
        if self.policy is not None and "disallow" in self.model_fields_set:
            raise spec_error("give either 'disallow' (verdicts that fail) or 'policy' (pass "
                             "or fail per kind of evidence), not both", "policy")
        return self


class Repechage(Strict):
    """An extra slot filled after the cut by a majority vote of the evaluators."""

    slots: int = Field(default=1, ge=1, strict=True)
    majority: float = Field(default=0.5, gt=0, lt=1, strict=True,
                            description="a candidate needs more than this share of votes")
    candidates: Literal["cut", "cut_and_applicants"] = "cut_and_applicants"


class Stage(Strict):
    id: Id
    name: Name
    date: dt.date
    entrants: int | None = Field(default=None, ge=1, strict=True,
                                 description="applicants on record, when more than the dossiers")
    composition: tuple[Component, ...] = Field(min_length=1)
    total: float = Field(ge=MIN_POINTS, strict=True)
    gates: tuple[Gate, ...] = ()
    advance: int | None = Field(default=None, ge=1, strict=True)
    cut: int | None = Field(default=None, ge=0, strict=True)
    tie_breakers: tuple[Id, ...] = ()
    repechage: Repechage | None = None
    robustness_replicates: int = Field(default=1000, ge=0, le=100_000, strict=True)
    robustness_flag: float = Field(default=0.10, gt=0, lt=1, strict=True)
    submission_deadline: dt.datetime | dt.date | None = Field(
        default=None, description="uploads close after this (a date: the end of that day, "
                                  "Korean time; a time without a zone: Korean time)")
    objection_days: int = Field(default=10, ge=0, le=365, strict=True,
                                description="days teams may object after a decided result")

    @model_validator(mode="after")
    def _check(self) -> Stage:
        s = sum(c.points for c in self.composition)
        if abs(s - self.total) > POINT_TOLERANCE:
            raise spec_error(f"composition adds up to {s:g} points, not the stage total "
                             f"{self.total:g}", "total")
        if self.advance is not None and self.cut is not None:
            raise spec_error("give only one of 'advance' (how many go on) and 'cut' (how many "
                             "are dropped on score), not both", "cut")
        if self.advance is None and self.cut is None:
            raise spec_error("give one of 'advance' (how many go on) or 'cut' (how many are "
                             "dropped on score)")
        for name in ("advance", "cut"):
            n = getattr(self, name)
            if self.entrants is not None and n is not None and n >= self.entrants:
                raise spec_error(f"{name} ({n}) must be fewer than the entrants "
                                 f"({self.entrants})", name)
        seen: dict[str, Loc] = {}
        for loc, comp in walk_components(self.composition, ("composition",)):
            if comp.id in seen:
                raise spec_error(f"duplicate component id '{comp.id}' in this stage (first at "
                                 f"{'.'.join(map(str, seen[comp.id]))})", *loc, "id")
            seen[comp.id] = loc
        _unique([g.id for g in self.gates], "gate id", "gates", "id")
        for i, g in enumerate(self.gates):
            if g.kind is not GateKind.MIN_POINTS:
                continue
            if g.component != "total" and g.component not in seen:
                raise spec_error(f"gate '{g.id}' names unknown component '{g.component}' "
                                 f"(components: {', '.join(seen)})", "gates", i, "component")
            top = self.total if g.component == "total" else self.component(g.component).points
            if g.min > top:
                raise spec_error(f"gate '{g.id}' asks for {g.min:g} points, more than the "
                                 f"{top:g} available", "gates", i, "min")
        for i, t in enumerate(self.tie_breakers):
            if t not in seen:
                raise spec_error(f"tie-breaker names unknown component '{t}' "
                                 f"(components: {', '.join(seen)})", "tie_breakers", i)
        _unique(list(self.tie_breakers), "tie-breaker", "tie_breakers")
        return self

    def leaves(self) -> list[Component]:
        return [leaf for c in self.composition for leaf in c.leaves()]

    def deadline(self) -> dt.datetime | None:
        """When uploads close, as an aware time: a date means the end of that day and a
        time without a zone is read, in Korean time (UTC+9); None if no deadline."""
        d = self.submission_deadline
        if d is None:
            return None
        if not isinstance(d, dt.datetime):
            return dt.datetime.combine(d + dt.timedelta(days=1), dt.time(), KST)
        return d if d.tzinfo is not None else d.replace(tzinfo=KST)

    def component(self, cid: str) -> Component:
        for c in self.composition:
            for d in (c, *_descendants(c)):
                if d.id == cid:
                    return d
        raise KeyError(cid)


class Program(Strict):
    schema_: Literal["kaieval/program/v1"] = Field(alias="schema")
    id: Id
    name: Name
    description: str = ""
    kpi: str = ""
    axes: tuple[Axis, ...]
    stages: tuple[Stage, ...] = Field(min_length=1)
    finalists: int = Field(default=2, ge=1, strict=True)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @model_validator(mode="after")
    def _check(self) -> Program:
        _unique([a.id for a in self.axes], "axis id", "axes", "id")
        _unique([s.id for s in self.stages], "stage id", "stages", "id")
        axes = {a.id for a in self.axes}
        known = ", ".join(sorted(axes)) or "none defined"
        for i, st in enumerate(self.stages):
            for loc, d in walk_components(st.composition, ("stages", i, "composition")):
                if d.axis is not None and d.axis not in axes:
                    raise spec_error(f"component '{d.id}' names unknown axis '{d.axis}' "
                                     f"(axes: {known})", *loc, "axis")
                for j, item in enumerate(d.rubric):
                    if item.axis is not None and item.axis not in axes:
                        raise spec_error(f"rubric item '{item.id}' names unknown axis "
                                         f"'{item.axis}' (axes: {known})",
                                         *loc, "rubric", j, "axis")
        for i in range(1, len(self.stages)):
            prev, st = self.stages[i - 1], self.stages[i]
            if st.date < prev.date:
                raise spec_error(f"stage '{st.id}' ({st.date}) is dated before the stage above "
                                 f"it, '{prev.id}' ({prev.date}); list stages in date order",
                                 "stages", i, "date")
        return self

    def stage(self, sid: str) -> Stage:
        for s in self.stages:
            if s.id == sid:
                return s
        raise KeyError(sid)


def walk_components(comps: tuple[Component, ...], base: Loc) -> list[tuple[Loc, Component]]:
    """Every component below ``comps`` with its document path, parents before children."""
    out: list[tuple[Loc, Component]] = []
    for i, c in enumerate(comps):
        loc = (*base, i)
        out.append((loc, c))
        out.extend(walk_components(c.children, (*loc, "children")))
    return out


def _descendants(c: Component) -> list[Component]:
    return [d for child in c.children for d in (child, *_descendants(child))]


def _unique(ids: list[str], what: str, *at: str) -> None:
    """Raise at the second occurrence; ``at`` is the list's field and the id field inside it."""
    seen: set[str] = set()
    for i, x in enumerate(ids):
        if x in seen:
            loc: Loc = (at[0], i, *at[1:]) if at else ()
            raise spec_error(f"duplicate {what} '{x}'", *loc)
        seen.add(x)
