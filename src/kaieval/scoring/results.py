"""The stage engine's output: one immutable, versioned record per stage run.

Its JSON form (``StageResult.model_dump(mode="json")``) is the report's JSON
file; its schema is documented in ``docs/report-schema.md``. Bump
``STAGE_RESULT_SCHEMA`` on any incompatible change.
"""

from __future__ import annotations

import datetime as dt
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

STAGE_RESULT_SCHEMA = "kaieval/stage-result/v1"

Decision = Literal["advance", "cut", "gated", "repechage"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ComponentScore(Frozen):
    """Points of one component for one team. ``points`` is None when not measured."""

    component_id: str
    title: str
    points: float | None
    max_points: float
    axis: str | None = None
    kind: str | None = None
    sources: tuple[str, ...] = ()
    detail: str = ""
    evidence: tuple[str, ...] = ()
    children: tuple[ComponentScore, ...] = ()


class IndependenceRow(Frozen):
    """One compared (or not comparable) component of an independence gate, for people."""

    component: str
    reference: str | None = None
    test: str = ""
    effect_size: float | None = None  # stronger of mean centred r and matched rank rho
    p_value: float | None = None
    log10_p: float | None = None  # finite when p underflows to 0
    kind: str | None = None  # copied, derived_by_training, co_adapted, no_evidence,
    # not_comparable; None for lines beside the weight tests (tokenizer lineage)
    coverage: str = ""  # "compared", "partly compared: why" or "not comparable: why"
    parameters: int | None = None
    detail: str = ""  # the engine's full sentence, folded away in the HTML report


class GateOutcome(Frozen):
    gate_id: str
    rule: str
    status: Literal["pass", "fail", "not_measured"]
    reason: str
    evidence: tuple[str, ...] = ()
    sentence: str = ""  # independence gates: what was compared, found, how sure, and the
    # policy line that decided, in one plain sentence
    decided_by: str = ""  # independence gates: the policy line that decided, quoted
    components: tuple[IndependenceRow, ...] = ()  # independence gates: one row each


class TeamResult(Frozen):
    team_id: str
    team_name: str
    total: float
    max_measured: float
    components: tuple[ComponentScore, ...]
    axes: dict[str, float]
    gates: tuple[GateOutcome, ...]
    rank: int
    decision: Decision
    decision_reason: str
    survival_probability: float | None = None
    total_interval: tuple[float, float] | None = None
    not_measured: tuple[str, ...] = ()


class Robustness(Frozen):
    """Bootstrap over benchmark items, evaluators and votes; see docs/formulas.md."""

    replicates: int
    seed: int
    resampled: tuple[str, ...]
    flag_threshold: float
    flagged: bool
    note: str


class RepechageOutcome(Frozen):
    candidates: tuple[str, ...]
    candidate_names: dict[str, str] = Field(default_factory=dict)
    votes: dict[str, int]
    evaluators: int
    majority: float
    winners: tuple[str, ...]
    reason: str
    source: str


class AuditCheckpoint(Frozen):
    """The store's audit log as the stage was scored from it (docs/audit-log.md).

    ``size`` entries, the newest with hash ``head``; signed by the key with fingerprint
    ``key`` when a signing key existed (``key``/``signature`` None: unsigned). Give the
    report JSON to ``kai audit-log verify --checkpoint`` to prove the log still holds
    what was scored.
    """

    log: str
    size: int
    head: str
    time: str
    key: str | None = None
    signature: str | None = None


class StageResult(Frozen):
    schema_: str = Field(default=STAGE_RESULT_SCHEMA, alias="schema")
    program_id: str
    stage_id: str
    stage_name: str
    date: dt.date
    total_points: float
    axis_max: dict[str, float] = Field(default_factory=dict)
    rule: str
    teams: tuple[TeamResult, ...]
    robustness: Robustness | None
    repechage: RepechageOutcome | None = None
    not_measured: tuple[str, ...] = ()
    simulated_sources: tuple[str, ...] = ()
    banner: str | None = None
    provisional: tuple[str, ...] = ()  # why this is not a decision (empty: it is one)
    input_hashes: dict[str, str] = Field(default_factory=dict)
    code_version: str
    created_at: dt.datetime
    audit_checkpoint: AuditCheckpoint | None = None

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def team(self, team_id: str) -> TeamResult:
        for t in self.teams:
            if t.team_id == team_id:
                return t
        raise KeyError(team_id)

    def advancing(self) -> list[str]:
        """Teams going on to the next stage: advanced, won back, or admitted by repechage."""
        out = [t.team_id for t in self.teams if t.decision in ("advance", "repechage")]
        if self.repechage:
            out += [w for w in self.repechage.winners if w not in out]
        return out
