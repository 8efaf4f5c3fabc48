"""Typed, immutable result records: the only currency between engines, store and scoring.

Every engine (bench, provenance, audit, committee, arena) emits these; the store
keeps them; scoring reads them. Each carries where its number came from
(``source``), the content hashes of its inputs, the settings, the code version
and the time, so any number in a report can be traced to its evidence.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from kaieval.hashing import sha256_json
from kaieval.spec.program import Source
from kaieval.version import code_version

RECORD_SCHEMA = 1


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class Record(BaseModel):
    """Common provenance of every stored result."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = RECORD_SCHEMA
    stage_id: str
    team_id: str
    source: Source
    input_hashes: dict[str, str] = Field(default_factory=dict)
    settings: dict[str, Any] = Field(default_factory=dict)
    code_version: str = Field(default_factory=code_version)
    created_at: dt.datetime = Field(default_factory=_now)

    def natural_key(self) -> str:
        """Identity of the thing measured; a rerun with the same key replaces, never duplicates."""
        raise NotImplementedError

    def content_hash(self) -> str:
        """Hash of what the record says, excluding when it was made (reruns compare equal)."""
        return sha256_json(self.model_dump(mode="json", exclude={"created_at", "code_version"}))


class BenchmarkResult(Record):
    """A model's score on one benchmark; ``item_scores`` allow bootstrap over items."""

    kind: Literal["benchmark"] = "benchmark"
    benchmark_id: str
    task: str
    role: Literal["candidate", "target"] = "candidate"
    model_ref: str = ""
    score: float
    item_scores: tuple[float, ...] = ()
    stderr: float | None = None

    def natural_key(self) -> str:
        return f"benchmark/{self.stage_id}/{self.team_id}/{self.role}/{self.benchmark_id}"


class CommitteeSheet(Record):
    """One evaluator's scores for one team on one committee component's rubric."""

    kind: Literal["sheet"] = "sheet"
    component_id: str
    evaluator_id: str
    scores: dict[str, float]
    conflict_of_interest: bool = False
    comment: str = ""

    def natural_key(self) -> str:
        return f"sheet/{self.stage_id}/{self.component_id}/{self.team_id}/{self.evaluator_id}"


class Vote(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    voter_id: str
    a: str
    b: str
    winner: Literal["a", "b", "tie"]


class ArenaVotes(Record):
    """All pairwise user votes of a stage (``team_id`` is ``*``: votes span teams)."""

    kind: Literal["votes"] = "votes"
    votes: tuple[Vote, ...]

    def natural_key(self) -> str:
        return f"votes/{self.stage_id}"


class ComponentEvidence(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    component: str
    verdict: Literal["derived", "partial", "no_evidence", "inconclusive"]
    test: str
    statistic: float | None = None
    p_value: float | None = None
    detail: str = ""
    reference: str | None = None  # which reference this line compares with (None: none)
    log10_p: float | None = None  # the p-value as log10, finite when p underflows to 0


class IndependenceVerdict(Record):
    """The provenance engine's verdict for a team's submitted model against references."""

    kind: Literal["verdict"] = "verdict"
    verdict: Literal["derived", "partial", "no_evidence", "inconclusive"]
    references: tuple[str, ...]
    alpha: float
    evidence: tuple[ComponentEvidence, ...] = ()
    summary: str = ""
    block_map: tuple[str, ...] = ()  # "parent: cand block 3 <- ref block 1", significant sites

    def natural_key(self) -> str:
        return f"verdict/{self.stage_id}/{self.team_id}"


class AuditItem(Record):
    """Points an audit rubric item awarded, with the evidence behind them."""

    kind: Literal["audit"] = "audit"
    component_id: str
    item_id: str
    points: float
    max_points: float
    evidence: str

    def natural_key(self) -> str:
        return f"audit/{self.stage_id}/{self.component_id}/{self.team_id}/{self.item_id}"


class Measurement(Record):
    """A single measured figure that is not itself scored (e.g. held-out loss)."""

    kind: Literal["measurement"] = "measurement"
    name: str
    value: float
    unit: str = ""
    detail: str = ""

    def natural_key(self) -> str:
        return f"measurement/{self.stage_id}/{self.team_id}/{self.name}"


class RepechageVote(Record):
    """An evaluator's vote for the repechage slot (``team_id`` is the candidate voted for)."""

    kind: Literal["repechage_vote"] = "repechage_vote"
    evaluator_id: str

    def natural_key(self) -> str:
        return f"repechage_vote/{self.stage_id}/{self.evaluator_id}"


AnyRecord = Annotated[
    BenchmarkResult | CommitteeSheet | ArenaVotes | IndependenceVerdict | AuditItem
    | Measurement | RepechageVote,
    Field(discriminator="kind"),
]


class _RecordAdapter(BaseModel):
    record: AnyRecord


def record_from_json(data: dict[str, Any]) -> Record:
    """Rebuild a typed record from its stored JSON."""
    return _RecordAdapter.model_validate({"record": data}).record


def load_records_jsonl(path: Path) -> list[Record]:
    """Read typed records from JSON Lines; a bad line is a ``KaiError`` naming file and line."""
    from pydantic import ValidationError

    from kaieval.errors import KaiError
    from kaieval.io import read_jsonl

    out: list[Record] = []
    for where, data in read_jsonl(path):
        try:
            out.append(record_from_json(data))
        except ValidationError as e:
            first = e.errors(include_url=False)[0]
            loc = ".".join(str(p) for p in first["loc"][1:] if not str(p).startswith("function"))
            raise KaiError(f"{loc or 'record'}: {first['msg']}", where=where) from None
    return out
