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
MAX_ID = 128
"""Longest id (stage, team, evaluator, voter, item): the store's id columns are 128 wide."""
MAX_TEXT = 20_000
"""Longest free text (a comment, evidence, a reason): a sheet's comment is read, not archived."""

Finite = Annotated[float, Field(strict=True, allow_inf_nan=False)]
"""A number that is a number: not NaN or infinite, and not a string or a boolean.

Lax parsing would read ``"9"`` and ``true`` as scores and let NaN or infinity through,
which then earn points or block a stage; every scored figure of a record is ``Finite``.
"""
RecordId = Annotated[str, Field(min_length=1, max_length=MAX_ID, pattern=r"^[^\s/]+$")]
"""An id inside a natural key: non-empty, no whitespace and no ``/`` (the key separator)."""
Text = Annotated[str, Field(max_length=MAX_TEXT)]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


class Record(BaseModel):
    """Common provenance of every stored result."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    schema_version: int = RECORD_SCHEMA
    stage_id: RecordId
    team_id: RecordId
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
    benchmark_id: RecordId
    task: str = Field(max_length=1000)
    role: Literal["candidate", "target"] = "candidate"
    model_ref: str = Field(default="", max_length=1000)
    score: Finite
    item_scores: tuple[Finite, ...] = ()
    stderr: Finite | None = None

    def natural_key(self) -> str:
        return f"benchmark/{self.stage_id}/{self.team_id}/{self.role}/{self.benchmark_id}"


class CommitteeSheet(Record):
    """One evaluator's scores for one team on one committee component's rubric.

    ``affiliation`` is the evaluator's organisation: conflicts of interest are
    computed from it against the team's consortium when the sheet is checked
    (``kaieval.intake``), so ``conflict_of_interest`` can only be raised by a
    record, never cleared.
    """

    kind: Literal["sheet"] = "sheet"
    component_id: RecordId
    evaluator_id: RecordId
    affiliation: str = Field(default="", max_length=300)
    scores: dict[RecordId, Finite]
    conflict_of_interest: bool = Field(default=False, strict=True)
    comment: Text = ""

    def natural_key(self) -> str:
        return f"sheet/{self.stage_id}/{self.component_id}/{self.team_id}/{self.evaluator_id}"


class Vote(BaseModel):
    """One user's verdict on one pairwise comparison (a battle) of two teams' models.

    ``winner`` is ``a``, ``b``, ``tie`` (both equally good) or ``both_bad``. "Both bad"
    is kept as said, not folded into ``tie`` at intake, so an analysis can tell the two
    apart; scoring counts it as a tie (half a win each), as Chatbot Arena counts its
    "tie (bothbad)" -- see ``kaieval.arena.bradley_terry.WIN_SHARE``, which maps every
    outcome explicitly (an unmapped one would make every rating NaN).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    voter_id: RecordId
    a: RecordId
    b: RecordId
    winner: Literal["a", "b", "tie", "both_bad"]
    battle_id: str = Field(default="", max_length=MAX_ID, pattern=r"^[^\s/]*$")

    def pair(self) -> str:
        """The battle id, else the unordered pair: what makes two votes the same vote."""
        return self.battle_id or "~".join(sorted((self.a, self.b)))


class UserVote(Record):
    """One stored user vote (``team_id`` is ``*``: a vote names two teams).

    Stored one per (voter, battle or pair), each with its own natural key, so an
    import adds votes and can never replace a whole stage's votes by accident.
    """

    kind: Literal["vote"] = "vote"
    vote: Vote

    def natural_key(self) -> str:
        return f"vote/{self.stage_id}/{self.vote.voter_id}/{self.vote.pair()}"


class UserRating(Record):
    """One user's 1-5 scores for one team on a rating-mode users component's criteria.

    ``team_id`` is the team rated. Stored one per (component, team, rater); the
    criteria and the scale are checked against the programme by ``kaieval.intake``.
    """

    kind: Literal["rating"] = "rating"
    component_id: RecordId
    rater_id: RecordId
    scores: dict[RecordId, Finite]

    def natural_key(self) -> str:
        return f"rating/{self.stage_id}/{self.component_id}/{self.team_id}/{self.rater_id}"


class ArenaVotes(Record):
    """A file format only: many votes of a stage in one line, as arena exports write them.

    The store never keeps a bundle; ``split`` turns it into one ``UserVote`` each.
    """

    kind: Literal["votes"] = "votes"
    votes: tuple[Vote, ...]

    def natural_key(self) -> str:
        return f"votes/{self.stage_id}"

    def split(self) -> list[UserVote]:
        """One ``UserVote`` per vote, with this bundle's provenance."""
        common = self.model_dump(exclude={"kind", "votes"})
        return [UserVote(**common, vote=v) for v in self.votes]


class Retraction(Record):
    """Takes one stored record out of scoring, with the reason; deleting it restores the record.

    A record of its own (not a flag on the row) so that it goes through the one
    audited write path: who retracted what, when and why is in the log, and the
    retracted record itself stays stored and readable.
    """

    kind: Literal["retraction"] = "retraction"
    target: str = Field(min_length=1, max_length=512)
    reason: Text = Field(min_length=1)

    def natural_key(self) -> str:
        return f"retraction/{self.target}"


EvidenceKind = Literal["copied", "derived_by_training", "co_adapted", "no_evidence",
                       "not_comparable"]


class ComponentShare(BaseModel):
    """How much of a candidate one kind of evidence covers: components and parameter share."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: EvidenceKind
    components: tuple[str, ...] = ()
    parameters: int = 0
    share: float = 0.0  # of the candidate's parameters in weight components


class ComponentEvidence(BaseModel):
    """One (component, reference) line of an independence verdict.

    ``detail`` is prose for people; every figure a program needs is a field of its own
    (readers never parse ``detail``). The counts and Fisher fields are ``None`` in
    records written before they existed, and where a test does not produce them
    (tokenizer lineage, black box).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    component: str
    verdict: Literal["derived", "partial", "no_evidence", "inconclusive"]
    test: str
    statistic: float | None = None
    p_value: float | None = None
    detail: str = ""
    reference: str | None = None  # which reference this line compares with (None: none)
    log10_p: float | None = None  # the p-value as log10, finite when p underflows to 0
    tensors_copied: int | None = None  # tensors byte-identical to the reference's
    tensors_correlated: int | None = None  # tensors correlation-tested (Fisher-combined)
    tensors_skipped: int | None = None  # tensors that could not be compared
    sites_matched: int | None = None  # MLPs / experts compared by hidden-unit matching
    fisher_chi2: float | None = None  # Fisher's chi-square over the correlation tests
    fisher_df: int | None = None  # its degrees of freedom (2 x tensors correlated)
    fisher_log10_p: float | None = None  # its p-value as log10 (finite when p underflows)
    lineage: str | None = None  # tokenizer rows: the tokenizer-lineage verdict word
    # (identical, extended, extended, shifted, derived, reordered, independent,
    # inconclusive) or "not measured"; None on weight rows
    kind: EvidenceKind | None = None  # weight rows: what the evidence shows (copied,
    # derived by training, co-adapted, no evidence, not comparable); None on tokenizer and
    # behaviour rows and in records written before it existed
    effect_size: float | None = None  # mean centred r of the aligned tensors (the matched
    # rank rho where no tensor was correlated; 1 for a component only copies compared)
    match_rho: float | None = None  # MLPs: matched hidden units' rank correlation
    aligned_similarity: float | None = None  # MLPs and attention: mean cosine of the matched
    # units or heads after alignment (>= 0.9999: the same weights reordered, a copy)
    parameters: int | None = None  # the candidate's parameters in this component
    parameters_copied: int | None = None  # of which in byte-identical tensors
    not_compared: str | None = None  # why nothing (or not everything) could be compared


class IndependenceVerdict(Record):
    """The provenance engine's verdict for a team's submitted model against references."""

    kind: Literal["verdict"] = "verdict"
    verdict: Literal["derived", "partial", "no_evidence", "inconclusive"]
    references: tuple[str, ...]
    alpha: Finite
    evidence: tuple[ComponentEvidence, ...] = ()
    summary: str = ""
    block_map: tuple[str, ...] = ()  # "parent: cand block 3 <- ref block 1", significant sites
    shares: tuple[ComponentShare, ...] = ()  # per kind of evidence, for the reference the
    # verdict is about (empty in records written before it existed)
    effect_thresholds: dict[str, float] = Field(default_factory=dict)  # component type ->
    # smallest effect size the calibration suite's fine-tunes produced (derived by training)
    sentence: str = ""  # one plain sentence: what was compared, found, how sure

    def natural_key(self) -> str:
        return f"verdict/{self.stage_id}/{self.team_id}"


class AuditItem(Record):
    """Points an audit rubric item awarded, with the evidence behind them."""

    kind: Literal["audit"] = "audit"
    component_id: RecordId
    item_id: RecordId
    points: Finite
    max_points: Finite
    evidence: Text

    def natural_key(self) -> str:
        return f"audit/{self.stage_id}/{self.component_id}/{self.team_id}/{self.item_id}"


class Measurement(Record):
    """A single measured figure that is not itself scored (e.g. held-out loss)."""

    kind: Literal["measurement"] = "measurement"
    name: RecordId
    value: Finite
    unit: str = Field(default="", max_length=100)
    detail: Text = ""

    def natural_key(self) -> str:
        return f"measurement/{self.stage_id}/{self.team_id}/{self.name}"


class RepechageVote(Record):
    """An evaluator's vote for the repechage slot (``team_id`` is the candidate voted for)."""

    kind: Literal["repechage_vote"] = "repechage_vote"
    evaluator_id: RecordId

    def natural_key(self) -> str:
        return f"repechage_vote/{self.stage_id}/{self.evaluator_id}"


class EngineRun(Record):
    """What one engine did for one team (or one shared target) in ``kai stage measure``.

    Written in the same transaction as the records it produced, so the store always
    knows which inputs a stored result was measured from: a rerun whose ``job_key``
    (inputs' content hashes, settings and engine version) is unchanged measures
    nothing, and a failure is kept as ``not_measured`` with its reason, for the
    report and the summary, instead of silently missing.
    """

    kind: Literal["engine_run"] = "engine_run"
    engine: Literal["bench", "provenance", "audit", "tokenizer"]
    subject: str = "candidate"  # "candidate", or "target <name>" for a shared target
    status: Literal["measured", "not_measured"]
    reason: str = ""
    notes: tuple[str, ...] = ()
    job_key: str
    produced: tuple[str, ...] = ()  # natural keys of the records written with it
    teams: tuple[str, ...] = ()  # for a shared target: the teams that declared it

    def natural_key(self) -> str:
        return f"engine_run/{self.stage_id}/{self.team_id}/{self.engine}/{self.subject}"


AnyRecord = Annotated[
    BenchmarkResult | CommitteeSheet | UserVote | UserRating | ArenaVotes | IndependenceVerdict
    | AuditItem | Measurement | RepechageVote | EngineRun | Retraction,
    Field(discriminator="kind"),
]


class _RecordAdapter(BaseModel):
    record: AnyRecord


def record_from_json(data: dict[str, Any]) -> Record:
    """Rebuild a typed record from its stored JSON."""
    return _RecordAdapter.model_validate({"record": data}).record


def load_records_jsonl(path: Path) -> list[tuple[str, Record]]:
    """Typed records of a JSON Lines file with the ``file:line`` of each.

    Every bad line is reported (one ``KaiError`` each, naming file, line and field,
    inside a ``KaiErrors``), so a user fixes a file in one pass; nothing is
    returned from a file with any bad line.
    """
    from pydantic import ValidationError

    from kaieval.errors import KaiError, KaiErrors
    from kaieval.io import read_jsonl

    out: list[tuple[str, Record]] = []
    errors: list[KaiError] = []
    for where, data in read_jsonl(path):
        try:
            out.append((where, record_from_json(data)))
        except ValidationError as e:
            first = e.errors(include_url=False)[0]
            parts = list(first["loc"][1:])
            if parts and parts[0] == data.get("kind"):
                parts = parts[1:]  # the union's tag: the kind, not a field
            loc = ".".join(str(p) for p in parts if not str(p).startswith("function"))
            value = "" if first["type"] == "missing" else f" (got {_shown(first.get('input'))})"
            errors.append(KaiError(f"{loc or 'record'}: {first['msg']}{value}", where=where))
    if errors:
        raise KaiErrors(errors)
    return out


def _shown(value: Any) -> str:
    """A bad input value as an error line shows it: its repr, cut short."""
    if isinstance(value, dict | list):
        return type(value).__name__
    text = repr(value)
    return text if len(text) <= 40 else f"{text[:37]}..."
