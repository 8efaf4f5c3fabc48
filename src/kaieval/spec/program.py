"""Programme spec: stages, their scored composition, gates, cut rules and repechage.

A programme is data, not code: the points, rubrics and rules of a stage live in
YAML so that the programme office can change a stage without a release, and so
that a report can cite the exact rule that awarded or withheld a point.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from kaieval.spec.messages import ID_PATTERN, spec_error

Id = Annotated[str, Field(pattern=ID_PATTERN)]
Loc = tuple[str | int, ...]
POINT_TOLERANCE = 1e-6


class Strict(BaseModel):
    """Base for spec models: unknown fields are errors and specs are immutable.

    Numbers are validated strictly (``strict=True`` on each numeric field): YAML
    reads ``yes``/``no``/``on``/``off`` as booleans, and pydantic's lax mode would
    quietly turn ``points: yes`` into 1 point; quoted numbers ("10") are refused
    too, so that a number always looks like one. Text fields accept bare numbers
    (``released: 2025``) because that is what a reader means by them.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False,
                              coerce_numbers_to_str=True)


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
    name: str
    description: str = ""


class RubricItem(Strict):
    """One line of a score sheet; evaluators score it from 0 to ``max``."""

    id: Id
    title: str
    max: float = Field(gt=0, strict=True)
    axis: Id | None = None
    guidance: str = ""


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
    points: float = Field(gt=0, strict=True)
    axis: Id | None = None
    kind: ComponentKind | None = None
    children: tuple[Component, ...] = ()
    rubric: tuple[RubricItem, ...] = ()
    benchmarks: tuple[BenchmarkRef, ...] = ()
    mapping: RelativeMapping = RelativeMapping()
    trim_min_sheets: int = Field(
        default=5, ge=3, strict=True,
        description="trim highest and lowest sheet per item from this many")

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
        return self

    def leaves(self) -> list[Component]:
        """Leaf components in document order."""
        if not self.children:
            return [self]
        return [leaf for c in self.children for leaf in c.leaves()]


class GateKind(StrEnum):
    INDEPENDENCE = "independence"
    MIN_POINTS = "min_points"


class Gate(Strict):
    """A rule that removes a team whatever its score."""

    id: Id
    kind: GateKind
    rule: str = Field(min_length=1, description="the rule in words, quoted in reports")
    disallow: tuple[Literal["derived", "partial", "inconclusive"], ...] = ("derived", "partial")
    component: Id = Field(default="total", description="a component id, or 'total'")
    min: float = Field(default=0.0, strict=True)
    on_not_measured: Literal["pass", "fail", "flag"] = "flag"


class Repechage(Strict):
    """An extra slot filled after the cut by a majority vote of the evaluators."""

    slots: int = Field(default=1, ge=1, strict=True)
    majority: float = Field(default=0.5, gt=0, lt=1, strict=True,
                            description="a candidate needs more than this share of votes")
    candidates: Literal["cut", "cut_and_applicants"] = "cut_and_applicants"


class Stage(Strict):
    id: Id
    name: str
    date: dt.date
    entrants: int | None = Field(default=None, ge=1, strict=True,
                                 description="applicants on record, when more than the dossiers")
    composition: tuple[Component, ...] = Field(min_length=1)
    total: float = Field(gt=0, strict=True)
    gates: tuple[Gate, ...] = ()
    advance: int | None = Field(default=None, ge=1, strict=True)
    cut: int | None = Field(default=None, ge=0, strict=True)
    tie_breakers: tuple[Id, ...] = ()
    repechage: Repechage | None = None
    robustness_replicates: int = Field(default=1000, ge=0, le=100_000, strict=True)
    robustness_flag: float = Field(default=0.10, gt=0, lt=1, strict=True)

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

    def component(self, cid: str) -> Component:
        for c in self.composition:
            for d in (c, *_descendants(c)):
                if d.id == cid:
                    return d
        raise KeyError(cid)


class Program(Strict):
    schema_: Literal["kaieval/program/v1"] = Field(alias="schema")
    id: Id
    name: str
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
