"""What may enter the store: records checked against the programme and the dossiers.

A record's shape is checked when it is parsed (``kaieval.records``: finite numbers,
ids, text limits). Its *meaning* needs the programme and the teams, and is checked
here, before anything is written, by every path that takes records from people or
files -- ``kai records import`` and the web app alike:

* the stage, team, component, rubric item and benchmark ids exist, and the
  component is of the kind the record scores (a sheet on a committee component);
* every number lies inside its item's range (0..max for a rubric item, 0..1 for a
  benchmark score);
* the source is one the record's kind can honestly have (a sheet is ``committee``;
  ``measured`` only on what kaieval's engines write, with their input hashes;
  ``simulated`` only when a rehearsal asks for it);
* a conflict of interest is computed from the evaluator's affiliation and the
  team's consortium: a record may declare one, never clear one;
* a vote names two different teams of the stage, which has an arena-mode users
  component; a rating scores every criterion of a rating-mode one, in whole
  numbers 1-5.

All problems are collected, one line each naming ``file:line`` and the field;
the caller refuses the whole file when there is any.
"""

from __future__ import annotations

import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from kaieval.errors import KaiError, KaiErrors
from kaieval.records import (
    ArenaVotes,
    AuditItem,
    BenchmarkResult,
    CommitteeSheet,
    IndependenceVerdict,
    Measurement,
    Record,
    RepechageVote,
    UserRating,
    UserVote,
)
from kaieval.spec.dossier import Dossier, Team
from kaieval.spec.program import (
    RATING_SCALE,
    Component,
    ComponentKind,
    Program,
    Source,
    Stage,
)

SOURCES: dict[str, frozenset[Source]] = {
    "sheet": frozenset({Source.COMMITTEE}),
    "vote": frozenset({Source.USERS}),
    "rating": frozenset({Source.USERS}),
    "votes": frozenset({Source.USERS}),
    "repechage_vote": frozenset({Source.COMMITTEE}),
    "audit": frozenset({Source.MEASURED, Source.COMMITTEE, Source.DECLARED}),
    "benchmark": frozenset({Source.MEASURED, Source.DECLARED}),
    "verdict": frozenset({Source.MEASURED}),
    "measurement": frozenset({Source.MEASURED}),
}
"""The sources each importable kind may carry (``simulated`` aside: see ``Intake``)."""

SIMULABLE = frozenset({"sheet", "vote", "rating", "votes", "repechage_vote", "measurement"})
"""Kinds the demo's simulator produces: the only ones a rehearsal may import as simulated."""

WRITTEN_BY_KAIEVAL = {
    "engine_run": "written only by `kai stage measure`",
    "retraction": "written only by `kai records retract`",
}


def normal_name(text: str) -> str:
    """An organisation name as compared for conflicts: NFC, case-folded, single spaces."""
    return " ".join(unicodedata.normalize("NFC", text).casefold().split())


def team_organisations(team: Team) -> set[str]:
    """The normalised names an evaluator of this team must not be affiliated with."""
    names = {team.name, team.lead, *(m.name for m in team.consortium)}
    return {normal_name(n) for n in names if n.strip()}


@dataclass
class Checked:
    """Records ready to store (vote bundles split, conflicts set), and notes for the user."""

    records: list[Record] = field(default_factory=list)
    where: list[str] = field(default_factory=list)  # file:line of each record
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Intake:
    """The programme and teams that records are checked against.

    ``allow_simulated`` is for rehearsals (a dry run with made-up sheets): it lets
    the simulator's kinds in with source ``simulated``, which reports then label.
    """

    program: Program
    dossiers: Sequence[Dossier]
    allow_simulated: bool = False

    def check(self, rows: Sequence[tuple[str, Record]]) -> Checked:
        """Check ``(file:line, record)`` pairs; raise ``KaiErrors`` listing every problem."""
        teams = {d.team.id: d for d in self.dossiers}
        out = Checked()
        errors: list[KaiError] = []
        first: dict[str, tuple[str, str]] = {}  # natural key -> (where, content hash)
        for where, record in rows:
            problems: list[str] = []
            checked = self._check_one(record, teams, problems, out.notes, where)
            for rec in checked if not problems else []:
                key, content = rec.natural_key(), rec.content_hash()
                seen = first.setdefault(key, (where, content))
                if seen[1] != content:
                    problems.append(f"record: {key} is also on {seen[0]} with different content "
                                    "(one record per key)")
            errors.extend(KaiError(p, where=where) for p in problems)
            if not problems:
                out.records.extend(checked)
                out.where.extend([where] * len(checked))
        if errors:
            raise KaiErrors(errors)
        return out

    # -- one record ----------------------------------------------------------------------

    def _check_one(self, record: Record, teams: dict[str, Dossier], problems: list[str],
                   notes: list[str], where: str) -> list[Record]:
        kind = str(getattr(record, "kind", ""))
        if kind in WRITTEN_BY_KAIEVAL:
            problems.append(f"kind: '{kind}' records are {WRITTEN_BY_KAIEVAL[kind]}, "
                            "not imported")
            return []
        self._check_source(record, kind, problems)
        stage = self._stage(record.stage_id, problems)
        if stage is None:
            return []
        if isinstance(record, ArenaVotes | UserVote):
            votes = record.split() if isinstance(record, ArenaVotes) else [record]
            if record.team_id != "*":
                problems.append(f"team_id: a vote names two teams, so team_id must be '*', "
                                f"not '{record.team_id}'")
            self._check_votes(stage, votes, teams, problems)
            return list(votes)
        if record.team_id not in teams:
            problems.append(f"team_id: unknown team '{record.team_id}' "
                            f"(dossiers given: {_listing(teams)})")
            return []
        if stage.id not in teams[record.team_id].submissions:
            problems.append(f"team_id: team '{record.team_id}' has no submission for stage "
                            f"'{stage.id}'")
        if isinstance(record, CommitteeSheet):
            return [self._check_sheet(stage, record, teams[record.team_id], problems, notes,
                                      where)]
        if isinstance(record, UserRating):
            self._check_rating(stage, record, problems)
        elif isinstance(record, AuditItem):
            self._check_audit(stage, record, problems)
        elif isinstance(record, BenchmarkResult):
            self._check_benchmark(stage, record, problems)
        elif isinstance(record, RepechageVote) and stage.repechage is None:
            problems.append(f"stage_id: stage '{stage.id}' has no repechage to vote in")
        elif isinstance(record, IndependenceVerdict) and not 0 < record.alpha < 0.5:
            problems.append(f"alpha: {record.alpha:g} is outside (0, 0.5)")
        elif not isinstance(record, RepechageVote | IndependenceVerdict | Measurement):
            problems.append(f"kind: '{kind}' cannot be imported")
        return [record]

    def _check_source(self, record: Record, kind: str, problems: list[str]) -> None:
        allowed = SOURCES.get(kind, frozenset())
        if record.source is Source.SIMULATED:
            if not self.allow_simulated:
                problems.append("source: 'simulated' is refused in a real programme (pass "
                                "--allow-simulated for a rehearsal)")
            elif kind not in SIMULABLE:
                problems.append(f"source: a '{kind}' record is never simulated")
        elif record.source not in allowed:
            names = ", ".join(sorted(s.value for s in allowed)) or "none"
            problems.append(f"source: a '{kind}' record cannot have source "
                            f"'{record.source.value}' (allowed: {names})")
        elif record.source is Source.MEASURED and not record.input_hashes:
            problems.append("source: 'measured' records are written by kaieval's engines and "
                            "carry the input_hashes they were measured from; this one has none")

    def _stage(self, stage_id: str, problems: list[str]) -> Stage | None:
        for stage in self.program.stages:
            if stage.id == stage_id:
                return stage
        problems.append(f"stage_id: unknown stage '{stage_id}' (programme '{self.program.id}' "
                        f"has {', '.join(s.id for s in self.program.stages)})")
        return None

    def _check_votes(self, stage: Stage, votes: Sequence[UserVote], teams: dict[str, Dossier],
                     problems: list[str]) -> None:
        users = _leaves(stage, ComponentKind.USERS)
        if not users:
            problems.append(f"kind: stage '{stage.id}' has no users component to vote in")
        elif not any(c.mode == "arena" for c in users):
            problems.append(f"kind: stage '{stage.id}' rates users' scores (mode: rating); "
                            "it has no arena to vote in")
        for n, uv in enumerate(votes, 1):
            v = uv.vote
            at = f"votes[{n}]: " if len(votes) > 1 else ""
            for side, tid in (("a", v.a), ("b", v.b)):
                if tid not in teams:
                    problems.append(f"{at}{side}: unknown team '{tid}' "
                                    f"(dossiers given: {_listing(teams)})")
                elif stage.id not in teams[tid].submissions:
                    problems.append(f"{at}{side}: team '{tid}' has no submission for stage "
                                    f"'{stage.id}'")
            if v.a == v.b:
                problems.append(f"{at}b: a vote compares two different teams; both sides are "
                                f"'{v.a}'")

    def _check_sheet(self, stage: Stage, sheet: CommitteeSheet, dossier: Dossier,
                     problems: list[str], notes: list[str], where: str) -> Record:
        comp = _component(stage, sheet.component_id, ComponentKind.COMMITTEE, problems)
        if comp is not None:
            _check_items(comp, sheet.scores, "scores", problems)
        if not sheet.affiliation.strip():
            problems.append("affiliation: the evaluator's organisation is required "
                            "(conflicts of interest are computed from it)")
            return sheet
        if sheet.conflict_of_interest:
            return sheet
        if normal_name(sheet.affiliation) in team_organisations(dossier.team):
            notes.append(f"{where}: {sheet.evaluator_id} is affiliated with "
                         f"'{sheet.affiliation}', part of team '{dossier.team.id}': "
                         "marked as a conflict of interest (excluded from scoring)")
            return sheet.model_copy(update={"conflict_of_interest": True})
        return sheet

    def _check_rating(self, stage: Stage, rating: UserRating, problems: list[str]) -> None:
        comp = _component(stage, rating.component_id, ComponentKind.USERS, problems)
        if comp is None:
            return
        if comp.mode != "rating":
            problems.append(f"component_id: '{comp.id}' is an arena (mode: {comp.mode}); it "
                            "takes votes, not ratings")
            return
        known = [c.id for c in comp.criteria]
        low, high = RATING_SCALE
        if not rating.scores:
            problems.append("scores: empty (a rating scores every criterion)")
        for cid, value in rating.scores.items():
            if cid not in known:
                problems.append(f"scores.{cid}: unknown criterion of component '{comp.id}' "
                                f"(criteria: {', '.join(known)})")
            elif value != int(value) or not low <= value <= high:
                problems.append(f"scores.{cid}: {value:g} is not a whole number {low}–{high}")
        missing = [c for c in known if c not in rating.scores]
        if rating.scores and missing:
            problems.append(f"scores: criteria not scored: {', '.join(missing)} (a rating "
                            "scores every criterion)")

    def _check_audit(self, stage: Stage, item: AuditItem, problems: list[str]) -> None:
        comp = _component(stage, item.component_id, ComponentKind.AUDIT, problems)
        if comp is None:
            return
        spec = next((it for it in comp.rubric if it.id == item.item_id), None)
        if spec is None:
            problems.append(f"item_id: unknown item '{item.item_id}' of component "
                            f"'{comp.id}' (items: {', '.join(it.id for it in comp.rubric)})")
            return
        if item.max_points != spec.max:
            problems.append(f"max_points: {item.max_points:g} but item '{spec.id}' is worth "
                            f"{spec.max:g}")
        if not 0 <= item.points <= spec.max:
            problems.append(f"points: {item.points:g} is outside 0–{spec.max:g}")

    def _check_benchmark(self, stage: Stage, result: BenchmarkResult,
                         problems: list[str]) -> None:
        ids = {b.id for c in _leaves(stage, ComponentKind.BENCHMARKS) for b in c.benchmarks}
        if result.benchmark_id not in ids:
            problems.append(f"benchmark_id: stage '{stage.id}' has no benchmark "
                            f"'{result.benchmark_id}' (benchmarks: {', '.join(sorted(ids))})")
        if not 0 <= result.score <= 1:
            problems.append(f"score: {result.score:g} is outside 0–1 (benchmark scores are "
                            "fractions, e.g. 0.673 for 67.3%)")
        bad = [s for s in result.item_scores if not 0 <= s <= 1]
        if bad:
            problems.append(f"item_scores: {len(bad)} outside 0–1 (first {bad[0]:g})")
        if result.stderr is not None and not 0 <= result.stderr <= 1:
            problems.append(f"stderr: {result.stderr:g} is outside 0–1")


def _leaves(stage: Stage, kind: ComponentKind) -> list[Component]:
    return [c for c in stage.leaves() if c.kind is kind]


def _component(stage: Stage, cid: str, kind: ComponentKind,
               problems: list[str]) -> Component | None:
    for c in stage.leaves():
        if c.id == cid:
            if c.kind is not kind:
                problems.append(f"component_id: '{cid}' is a {c.kind.value if c.kind else '?'} "
                                f"component, not a {kind.value} one")
                return None
            return c
    fitting = ", ".join(c.id for c in _leaves(stage, kind)) or "none"
    problems.append(f"component_id: stage '{stage.id}' has no component '{cid}' "
                    f"({kind.value} components: {fitting})")
    return None


def _check_items(comp: Component, scores: dict[str, float], name: str,
                 problems: list[str]) -> None:
    items = {it.id: it for it in comp.rubric}
    if not scores:
        problems.append(f"{name}: empty (a sheet scores at least one item)")
    for item_id, value in scores.items():
        spec = items.get(item_id)
        if spec is None:
            problems.append(f"{name}.{item_id}: unknown item of component '{comp.id}' "
                            f"(items: {', '.join(items)})")
        elif not 0 <= value <= spec.max:
            problems.append(f"{name}.{item_id}: {value:g} is outside 0–{spec.max:g}")


def _listing(teams: dict[str, Dossier]) -> str:
    return ", ".join(sorted(teams)) or "none"


__all__ = ["SOURCES", "Checked", "Intake", "normal_name", "team_organisations"]
