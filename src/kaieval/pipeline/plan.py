"""What a stage asks to be measured: one job per (team, engine), plus one per shared target.

Planning is separate from running (OpenCompass's habit): the plan can be shown,
filtered (``--only``, ``--team``) and keyed before anything slow happens.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, get_args

from kaieval.errors import KaiError
from kaieval.hashing import sha256_json
from kaieval.registry import Registry
from kaieval.spec.load import LoadedDossier
from kaieval.spec.program import ComponentKind, GateKind, Program, Stage

Engine = Literal["bench", "provenance", "audit", "tokenizer"]
ENGINES: tuple[Engine, ...] = get_args(Engine)
SHARED = "*"  # the team id of a shared target's job


@dataclass(frozen=True)
class StageInputs:
    """Everything a stage's measurement depends on besides the store."""

    program: Program
    program_hash: str
    stage: Stage
    dossiers: tuple[LoadedDossier, ...]
    registry: Registry
    cache_dir: Path  # request cache of the benchmark engine
    cache_url: str | None = None  # or the request cache in this database (Ray: shared)
    alpha: float = 0.01
    reference_tokenizer: Path | None = None
    batch_size: int = 16
    audit_dir: Path | None = None  # where full audit reports (figures, flags) are written
    bench_backend: str = "hf"  # for model folders (endpoints: openai): hf, or vllm
    tensor_parallel_size: int = 1  # vllm: GPUs per model copy (the Ray engine's placement)

    def dossier(self, team_id: str) -> LoadedDossier:
        for d in self.dossiers:
            if d.dossier.team.id == team_id:
                return d
        raise KeyError(team_id)


@dataclass(frozen=True)
class Job:
    """One engine's work for one team, or for one target shared by ``teams``."""

    engine: Engine
    team_id: str
    subject: str = "candidate"
    teams: tuple[str, ...] = ()
    target: Path | None = None
    title: str = ""  # how a shared target is shown: the names the teams gave it

    @property
    def label(self) -> str:
        return (self.title or self.subject) if self.team_id == SHARED else self.team_id


@dataclass
class Plan:
    jobs: list[Job] = field(default_factory=list)
    skipped: list[tuple[str, Engine, str]] = field(default_factory=list)  # team, engine, why


def engines_asked(stage: Stage) -> dict[Engine, str]:
    """Which engines the stage's composition and gates need, with the reason in words."""
    out: dict[Engine, str] = {}
    leaves = stage.leaves()
    if any(c.kind is ComponentKind.BENCHMARKS for c in leaves):
        out["bench"] = "benchmarks component"
    if any(g.kind is GateKind.INDEPENDENCE for g in stage.gates):
        out["provenance"] = "independence gate"
    audits = [c for c in leaves if c.kind is ComponentKind.AUDIT]
    if audits:
        out["audit"] = "audit component"
    if any(i.rule is not None and i.rule.measure.startswith("tokenizer.")
           for c in audits for i in c.rubric):
        out["tokenizer"] = "audit rule on tokenizer efficiency"
    return out


def parse_only(text: str | None) -> set[Engine] | None:
    """``--only bench,provenance``; ``None`` means every engine the stage asks for."""
    if text is None:
        return None
    names = {t.strip() for t in text.split(",") if t.strip()}
    bad = sorted(names - set(ENGINES))
    if bad or not names:
        raise KaiError(f"unknown engine(s) {', '.join(bad) or '(none given)'}; choose from "
                       f"{', '.join(ENGINES)}", where="--only")
    return {e for e in ENGINES if e in names}


def stage_teams(dossiers: Sequence[LoadedDossier], stage_id: str,
                only_teams: Iterable[str] | None = None) -> list[LoadedDossier]:
    """Dossiers with a submission for the stage (repechage applicants included)."""
    chosen = [d for d in dossiers if stage_id in d.dossier.submissions]
    if only_teams is not None:
        wanted = list(only_teams)
        known = {d.dossier.team.id for d in chosen}
        unknown = [t for t in wanted if t not in known]
        if unknown:
            raise KaiError(f"no dossier with a '{stage_id}' submission for team(s) "
                           f"{', '.join(unknown)} (teams: {', '.join(sorted(known)) or 'none'})",
                           where="--team")
        chosen = [d for d in chosen if d.dossier.team.id in wanted]
    return chosen


def plan_stage(inputs: StageInputs, only: set[Engine] | None = None) -> Plan:
    """Jobs for every team in ``inputs`` and every engine the stage asks for."""
    plan = Plan()
    asked = engines_asked(inputs.stage)
    sid = inputs.stage.id
    targets: dict[Path, list[str]] = {}
    names: dict[Path, str] = {}
    for ld in inputs.dossiers:
        tid = ld.dossier.team.id
        sub = ld.dossier.submissions[sid]
        for engine in ENGINES:
            if engine not in asked:
                continue
            if only is not None and engine not in only:
                plan.skipped.append((tid, engine, "not in --only"))
                continue
            if engine == "bench" and sub.applies_to == "repechage":
                plan.skipped.append((tid, engine, "repechage applicant: not scored on "
                                     "benchmarks"))
                continue
            plan.jobs.append(Job(engine, tid))
        if ("bench" in asked and (only is None or "bench" in only)
                and sub.applies_to == "stage" and sub.target is not None
                and sub.target.path is not None):
            path = ld.resolve(sub.target.path)
            targets.setdefault(path, []).append(tid)
            names.setdefault(path, sub.target.name)
    groups: dict[str, tuple[Path, list[str], set[str]]] = {}
    for path, teams in targets.items():
        try:  # one job per distinct content, whatever each team calls it or wherever it lies
            ident = folder_hash(path)[7:19]
        except (KaiError, OSError):
            ident = "missing-" + sha256_json(str(path))[7:15]  # the job reports the failure
        grp = groups.setdefault(f"target {ident}", (path, [], set()))
        grp[1].extend(teams)
        grp[2].add(names[path])
    for subject, (path, teams, called) in groups.items():
        plan.jobs.append(Job("bench", SHARED, subject=subject, teams=tuple(sorted(teams)),
                             target=path, title=f"target {' / '.join(sorted(called))}"))
    return plan


def folder_hash(path: Path) -> str:
    """``sha256:`` content hash of a model folder (memoised in :func:`model_hash`)."""
    from kaieval.artifacts import model_hash

    if not path.is_dir():
        raise KaiError("folder not found", where=str(path))
    return "sha256:" + model_hash(path)
