"""Programme spec: stages, their scored composition, gates, cut rules and repechage.

A programme is data, not code: the points, rubrics and rules of a stage live in
YAML so that the programme office can change a stage without a release, and so
that a report can cite the exact rule that awarded or withheld a point.
"""

from __future__ import annotations

import datetime as dt
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Id = Annotated[str, Field(pattern=r"^[a-z0-9][a-z0-9_\-]{0,63}$")]
POINT_TOLERANCE = 1e-6


class Strict(BaseModel):
    """Base for spec models: unknown fields are errors and specs are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=False)


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
    max: float = Field(gt=0)
    axis: Id | None = None
    guidance: str = ""


class BenchmarkRef(Strict):
    """One benchmark inside a benchmarks component, with its weight in that component."""

    id: Id
    task: str = Field(min_length=1, description="catalogue name or task file")
    weight: float = Field(default=1.0, gt=0)


class RelativeMapping(Strict):
    """Maps relative performance r = score / target_score to a share of the points.

    share = clip((r - floor) / (full - floor), 0, cap). With the defaults a model
    equal to its declared target earns full points and anything above is capped.
    """

    floor: float = Field(default=0.0, ge=0)
    full: float = Field(default=1.0, gt=0)
    cap: float = Field(default=1.0, gt=0, le=2)

    @model_validator(mode="after")
    def _order(self) -> RelativeMapping:
        if self.full <= self.floor:
            raise ValueError(f"full ({self.full}) must be above floor ({self.floor})")
        return self


class Component(Strict):
    """A scored part of a stage. Either has children (points must add up) or a ``kind``."""

    id: Id
    title: str = ""
    points: float = Field(gt=0)
    axis: Id | None = None
    kind: ComponentKind | None = None
    children: tuple[Component, ...] = ()
    rubric: tuple[RubricItem, ...] = ()
    benchmarks: tuple[BenchmarkRef, ...] = ()
    mapping: RelativeMapping = RelativeMapping()
    trim_min_sheets: int = Field(default=5, ge=3,
                                 description="trim highest and lowest sheet per item from this many")

    @model_validator(mode="after")
    def _shape(self) -> Component:
        if self.children:
            if self.kind is not None:
                raise ValueError("a component has either children or a kind, not both")
            total = sum(c.points for c in self.children)
            if abs(total - self.points) > POINT_TOLERANCE:
                raise ValueError(
                    f"children's points add up to {total:g}, not the component's {self.points:g}")
            _unique([c.id for c in self.children], "child component id")
            return self
        if self.kind is None:
            raise ValueError("a leaf component needs a kind (benchmarks, committee, users, audit)")
        if self.kind in (ComponentKind.COMMITTEE, ComponentKind.AUDIT) and not self.rubric:
            raise ValueError(f"a {self.kind.value} component needs a rubric")
        if self.kind is ComponentKind.BENCHMARKS and not self.benchmarks:
            raise ValueError("a benchmarks component needs a list of benchmarks")
        if self.rubric:
            _unique([r.id for r in self.rubric], "rubric item id")
        if self.benchmarks:
            _unique([b.id for b in self.benchmarks], "benchmark id")
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
    component: Id | Literal["total"] = "total"
    min: float = 0.0
    on_not_measured: Literal["pass", "fail", "flag"] = "flag"


class Repechage(Strict):
    """An extra slot filled after the cut by a majority vote of the evaluators."""

    slots: int = Field(default=1, ge=1)
    majority: float = Field(default=0.5, gt=0, lt=1,
                            description="a candidate needs more than this share of votes")
    candidates: Literal["cut", "cut_and_applicants"] = "cut_and_applicants"


class Stage(Strict):
    id: Id
    name: str
    date: dt.date
    entrants: int | None = Field(default=None, ge=1,
                                 description="applicants on record, when more than the dossiers")
    composition: tuple[Component, ...]
    total: float = Field(gt=0)
    gates: tuple[Gate, ...] = ()
    advance: int | None = Field(default=None, ge=1)
    cut: int | None = Field(default=None, ge=0)
    tie_breakers: tuple[Id, ...] = ()
    repechage: Repechage | None = None
    robustness_replicates: int = Field(default=1000, ge=0, le=100_000)
    robustness_flag: float = Field(default=0.10, gt=0, lt=1)

    @model_validator(mode="after")
    def _check(self) -> Stage:
        s = sum(c.points for c in self.composition)
        if abs(s - self.total) > POINT_TOLERANCE:
            raise ValueError(f"composition adds up to {s:g} points, not the stage total "
                             f"{self.total:g}")
        if (self.advance is None) == (self.cut is None):
            raise ValueError("give exactly one of 'advance' (how many go on) or 'cut' "
                             "(how many are dropped on score)")
        ids = [c.id for c in self.composition]
        for comp in self.composition:
            ids += [d.id for d in _descendants(comp)]
        _unique(ids, "component id")
        known = set(ids)
        for g in self.gates:
            if g.kind is GateKind.MIN_POINTS and g.component != "total" and g.component not in known:
                raise ValueError(f"gate '{g.id}' names unknown component '{g.component}'")
        for t in self.tie_breakers:
            if t not in known:
                raise ValueError(f"tie-breaker names unknown component '{t}'")
        _unique([g.id for g in self.gates], "gate id")
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
    finalists: int = Field(default=2, ge=1)

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("axes")
    @classmethod
    def _axes_unique(cls, v: tuple[Axis, ...]) -> tuple[Axis, ...]:
        _unique([a.id for a in v], "axis id")
        return v

    @model_validator(mode="after")
    def _check(self) -> Program:
        _unique([s.id for s in self.stages], "stage id")
        axes = {a.id for a in self.axes}
        for st in self.stages:
            for comp in st.composition:
                for d in (comp, *_descendants(comp)):
                    if d.axis is not None and d.axis not in axes:
                        raise ValueError(f"stage '{st.id}' component '{d.id}' names unknown axis "
                                         f"'{d.axis}'")
                    for item in d.rubric:
                        if item.axis is not None and item.axis not in axes:
                            raise ValueError(f"rubric item '{item.id}' names unknown axis "
                                             f"'{item.axis}'")
        dates = [s.date for s in self.stages]
        if dates != sorted(dates):
            raise ValueError("stages must be listed in date order")
        return self

    def stage(self, sid: str) -> Stage:
        for s in self.stages:
            if s.id == sid:
                return s
        raise KeyError(sid)


def _descendants(c: Component) -> list[Component]:
    return [d for child in c.children for d in (child, *_descendants(child))]


def _unique(ids: list[str], what: str) -> None:
    seen: set[str] = set()
    for i in ids:
        if i in seen:
            raise ValueError(f"duplicate {what} '{i}'")
        seen.add(i)
