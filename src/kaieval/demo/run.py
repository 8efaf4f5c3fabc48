"""``kai demo``: the selection (7 -> 5) and stage 1 (5 -> 4 with the independence gate and
repechage) of the public record, replayed end to end on synthetic stand-in models.

Flow: lay out the scenario (dossiers, technical reports) in the cache; build the
stand-in models (cached); measure them (held-out loss, independence against the
foreign base); simulate the people (committee sheets, user votes, repechage
votes; labelled simulated); store everything; run each stage from the store;
write the reports. Nothing about who advances is written here: it comes out of
the stage engine.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from rich.console import Console

from kaieval.artifacts import model_hash
from kaieval.cache import RecordCache
from kaieval.demo.simulate import (
    TeamFacts,
    quality_from_loss,
    simulate_repechage,
    simulate_sheets,
    simulate_votes,
)
from kaieval.hashing import sha256_json
from kaieval.pipeline import save_stage_result
from kaieval.records import IndependenceVerdict, Measurement, Record
from kaieval.scoring.results import StageResult
from kaieval.scoring.stage import Entrant, run_stage
from kaieval.spec.load import LoadedDossier, load_dossier, load_dossiers, load_program
from kaieval.spec.program import ComponentKind, Program, Stage

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from kaieval.store import Store

BANNER = ("DEMO — synthetic stand-in models and simulated committee sheets, user votes and "
          "repechage votes. Not a measurement of the real companies' models.")
FOREIGN_BASE = "foreign-base"
DEMO_SEED = 20250804
STAGES = ("selection", "stage1")
EXPERTS = 10  # stage 1 had ten outside experts
USERS = 49  # and 49 expert users
HELDOUT_CHARS = 6000
_R = TypeVar("_R", bound=Record)


@dataclass(frozen=True)
class DemoOutcome:
    results: list[StageResult]
    reports: list[Path]
    db_url: str
    seconds: float


def default_cache_dir() -> Path:
    env = os.environ.get("KAI_CACHE_DIR")
    base = Path(env) if env else Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return (base if env else base / "kaieval") / "demo"


def lay_out_scenario(scenario: Path) -> list[Path]:
    """Copy the bundled dossiers into ``scenario`` and write each team's technical report."""
    scenario.mkdir(parents=True, exist_ok=True)
    (scenario / "reports").mkdir(exist_ok=True)
    paths = []
    src = resources.files("kaieval.demo") / "data" / "teams"
    for entry in sorted(src.iterdir(), key=lambda e: e.name):
        if not entry.name.endswith(".yaml"):
            continue
        text = entry.read_text("utf-8")
        dest = scenario / entry.name
        if not dest.exists() or dest.read_text("utf-8") != text:
            dest.write_text(text, "utf-8")
        paths.append(dest)
    _copy_tree(resources.files("kaieval.demo") / "data" / "releases", scenario / "releases")
    return paths


def _copy_tree(src: Traversable, dest: Path) -> None:
    """Copy bundled release files (LICENSE texts the audit reads), rewriting only changes."""
    if not src.is_dir():
        return
    for entry in src.iterdir():
        target = dest / entry.name
        if entry.is_dir():
            _copy_tree(entry, target)
            continue
        data = entry.read_bytes()
        if not target.exists() or target.read_bytes() != data:
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)


def _write_reports_md(dossiers: Sequence[LoadedDossier], scenario: Path) -> None:
    for ld in dossiers:
        d = ld.dossier
        for sub in d.submissions.values():
            if sub.technical_report:
                p = scenario / sub.technical_report
                p.parent.mkdir(parents=True, exist_ok=True)
                text = (f"# {d.team.name} — technical report (demo stand-in)\n\n"
                        f"{sub.approach}\n\nThis report accompanies a synthetic stand-in model "
                        "built by kaieval's demo; see docs/standins.md.\n")
                if not p.exists() or p.read_text("utf-8") != text:
                    p.write_text(text, "utf-8")


def _measure(stage: Stage, teams: Sequence[LoadedDossier], models: dict[str, Path],
             heldout: str, cache: RecordCache, say: Callable[[str], None]) -> list[Record]:
    """Held-out loss and independence of each team's stand-in; cached by input content."""
    from kaieval.bench.heldout import heldout_measurement
    from kaieval.provenance.verdict import check_independence

    out: list[Record] = []
    ref = models[FOREIGN_BASE]
    ref_hash = model_hash(ref)
    text_hash = sha256_json(heldout)
    for ld in teams:
        tid = ld.dossier.team.id
        sub = ld.dossier.submissions[stage.id]
        if sub.model is None or sub.model.path is None:
            continue
        mdir = ld.resolve(sub.model.path)
        mhash = model_hash(mdir)

        def rebind(r: _R, tid: str = tid) -> _R:
            return r.model_copy(update={"stage_id": stage.id, "team_id": tid})

        m = cache.get_or_measure(
            {"kind": "heldout", "model": mhash, "text": text_hash},
            functools.partial(heldout_measurement, mdir, heldout, stage_id=stage.id,
                              team_id=tid), rebind)
        v = cache.get_or_measure(
            {"kind": "independence", "model": mhash, "refs": [ref_hash], "alpha": 0.01},
            functools.partial(check_independence, mdir, [ref], alpha=0.01, stage_id=stage.id,
                              team_id=tid), rebind)
        out += [m, v]
        say(f"  {stage.id}: {tid}: held-out {m.value:.3f} bits/char; independence "
            f"{v.verdict.replace('_', ' ')}")
    return out


def _benchmarks(stage: Stage, teams: Sequence[LoadedDossier], cache_dir: Path,
                say: Callable[[str], None]) -> list[Record]:
    """Run the stage's benchmarks on each stand-in and on its declared target's stand-in.

    Uses the bundled samples of the catalogue (no downloads); the request cache makes a
    rerun cost nothing. Result ids follow the programme's benchmark ids.
    """
    refs = [b for c in stage.leaves() if c.kind is ComponentKind.BENCHMARKS
            for b in c.benchmarks]
    if not refs:
        return []
    from kaieval.bench.run import evaluate, to_benchmark_results

    out: list[Record] = []
    for ld in teams:
        tid = ld.dossier.team.id
        sub = ld.dossier.submissions[stage.id]
        runs: list[tuple[str, Path]] = []
        if sub.model is not None and sub.model.path is not None:
            runs.append(("candidate", ld.resolve(sub.model.path)))
        if sub.target is not None and sub.target.path is not None:
            runs.append(("target", ld.resolve(sub.target.path)))
        for role, mdir in runs:
            usable = [r for r in refs if _has_chat_template(mdir) or not _needs_chat(r.task)]
            for r in refs:
                if r not in usable:
                    say(f"  {stage.id}: {tid}: {role} {r.id}: not measured (the task is a chat "
                        "task and the model has no chat template)")
            tasks = sorted({r.task for r in usable})
            run = evaluate(str(mdir), tasks, backend="hf", batch_size=16, cache_dir=cache_dir,
                           progress=False)
            by_task = {r.task: r for r in to_benchmark_results(
                run, stage_id=stage.id, team_id=tid, role=role)}  # type: ignore[arg-type]
            scores = []
            for ref in usable:
                res = by_task[ref.task]
                out.append(res.model_copy(update={"benchmark_id": ref.id}))
                scores.append(res.score)
            mean = sum(scores) / max(len(scores), 1)
            say(f"  {stage.id}: {tid}: {role} {mdir.name}: {len(scores)} of {len(refs)} "
                f"benchmarks measured, mean score {mean:.3f}")
    return out


def _audit(program: Program, stage: Stage, teams: Sequence[LoadedDossier],
           measured: Sequence[Record], reference: Path, out_dir: Path,
           say: Callable[[str], None]) -> list[Record]:
    """Audit each team's dossier and files (``kai audit``); keep the audit items as records
    and each full audit (figures, evidence, flags) as JSON beside the reports."""
    from kaieval.audit.engine import audit_dossier
    from kaieval.io import atomic_write_text

    verdicts = {r.team_id: r for r in measured if isinstance(r, IndependenceVerdict)}
    out: list[Record] = []
    folder = out_dir / "audit"
    folder.mkdir(parents=True, exist_ok=True)
    for ld in teams:
        tid = ld.dossier.team.id
        rep = audit_dossier(ld, program, stage.id, verdict=verdicts.get(tid),
                            reference_tokenizer=reference)
        atomic_write_text(folder / f"{stage.id}-{tid}.json", rep.model_dump_json(indent=2) + "\n")
        out += rep.items
        got: dict[str, list[float]] = {}
        for it in rep.items:
            got.setdefault(it.component_id, [0.0, 0.0])
            got[it.component_id][0] += it.points
            got[it.component_id][1] += it.max_points
        parts = [f"{c} {p:g}/{m:g}" for c, (p, m) in got.items()]
        say(f"  {stage.id}: {tid}: audit: " + ("; ".join(parts) or "measures only")
            + f"; {len(rep.flags)} flag(s)"
            + (f", {len(rep.not_scored)} item(s) not measured" if rep.not_scored else ""))
    return out


def _has_chat_template(model_dir: Path) -> bool:
    cfg = model_dir / "tokenizer_config.json"
    try:
        has = "chat_template" in json.loads(cfg.read_text("utf-8"))
    except (OSError, ValueError):
        has = False
    return has or (model_dir / "chat_template.jinja").is_file()


@functools.cache
def _needs_chat(task: str) -> bool:
    """Whether a catalogue task sends its prompts as chat messages (IFEval-style tasks do)."""
    from kaieval.bench.api import GenerationRequest
    from kaieval.bench.tasks import load_task

    t = load_task(task)
    docs = t.docs(limit=1)
    return any(isinstance(r, GenerationRequest) and r.chat
               for d in docs for b in t.build(d) for r in b.requests)


def _facts(stage: Stage, teams: Sequence[LoadedDossier], records: Sequence[Record],
           field: Sequence[LoadedDossier] | None = None) -> list[TeamFacts]:
    """What simulated evaluators see; quality is judged relative to ``field`` (default: teams)."""
    loss = {r.team_id: r.value for r in records
            if isinstance(r, Measurement) and r.name == "heldout_bits_per_char"}
    quality = quality_from_loss({t.dossier.team.id: loss[t.dossier.team.id]
                                 for t in (field or teams) if t.dossier.team.id in loss})
    verdicts = {r.team_id: r for r in records if isinstance(r, IndependenceVerdict)}
    return [TeamFacts(team_id=t.dossier.team.id, dossier=t.dossier,
                      submission=t.dossier.submissions[stage.id],
                      quality=quality.get(t.dossier.team.id),
                      verdict=verdicts.get(t.dossier.team.id)) for t in teams]


def run_demo(out_dir: Path, *, cache_dir: Path | None = None, db_url: str | None = None,
             seed: int = DEMO_SEED, replicates: int | None = None,
             console: Console | None = None) -> DemoOutcome:
    from kaieval.demo.standins import build_standins
    from kaieval.report import print_summary, write_reports
    from kaieval.store import Store
    from kaieval.synth.corpus import corpus_text

    t0 = time.perf_counter()
    console = console or Console()
    say = console.print
    console.rule("[bold]kai demo")
    say(f"[bold yellow]{BANNER}")
    cache = cache_dir or default_cache_dir()
    scenario = cache / "scenario"
    program, program_hash = load_program("k-ai-2025")
    paths = lay_out_scenario(scenario)
    say(f"building stand-in models in {scenario / 'models'} (cached after the first run)")
    models = build_standins(scenario / "models", progress=lambda m: say(f"  {m}"))
    _write_reports_md([load_dossier(p, check_files=False) for p in paths], scenario)
    dossiers = load_dossiers(paths, program)
    out_dir.mkdir(parents=True, exist_ok=True)
    url = db_url or f"sqlite:///{(out_dir / 'kaieval.sqlite').resolve()}"
    store = Store(url)
    heldout = corpus_text("heldout", HELDOUT_CHARS)
    results: list[StageResult] = []
    advancing: list[str] | None = None
    measured_cache = RecordCache(scenario / "measurements.json")
    for sid in STAGES:
        stage = program.stage(sid)
        in_stage = [d for d in dossiers if sid in d.dossier.submissions
                    and d.dossier.submissions[sid].applies_to == "stage"
                    and (advancing is None or d.dossier.team.id in advancing)]
        applicants = [d for d in dossiers if sid in d.dossier.submissions
                      and d.dossier.submissions[sid].applies_to == "repechage"]
        say(f"[bold]{stage.name}[/] ({stage.date}): {len(in_stage)} teams"
            + (f", {len(applicants)} repechage applicant(s)" if applicants else ""))
        measured = _measure(stage, [*in_stage, *applicants], models, heldout, measured_cache, say)
        measured += _benchmarks(stage, in_stage, scenario / "requests", say)
        measured += _audit(program, stage, [*in_stage, *applicants], measured,
                           models[FOREIGN_BASE], out_dir, say)
        facts = _facts(stage, in_stage, measured)
        simulated: list[Record] = list(simulate_sheets(stage, facts, evaluators=EXPERTS,
                                                       seed=seed))
        if any(c.kind and c.kind.value == "users" for c in stage.leaves()):
            simulated.append(simulate_votes(stage, facts, users=USERS, battles=20, seed=seed))
        store.put([*measured, *simulated], actor="kai demo")
        result = _score(program, program_hash, stage, in_stage, applicants, store, seed,
                        replicates, say)
        save_stage_result(store, result, "demo", actor="kai demo")
        results.append(result)
        print_summary(result, console)
        advancing = result.advancing()
    reports = write_reports(results, out_dir, title="kaieval demo: K-AI programme selection "
                            "and stage 1", banner=BANNER)
    for p in reports:
        say(f"wrote {p}")
    return DemoOutcome(results=results, reports=reports, db_url=url,
                       seconds=time.perf_counter() - t0)


def _score(program: Program, program_hash: str, stage: Stage, in_stage: Sequence[LoadedDossier],
           applicants: Sequence[LoadedDossier], store: Store, seed: int,
           replicates: int | None, say: Callable[[str], None]) -> StageResult:
    """Score from the store; if the stage has a repechage, simulate its vote on the cut."""
    records = store.records(stage_id=stage.id)
    ent = [Entrant(d.dossier.team.id, d.dossier.team.name, d.dossier.submissions[stage.id],
                   d.sha256) for d in in_stage]
    app = [Entrant(d.dossier.team.id, d.dossier.team.name, d.dossier.submissions[stage.id],
                   d.sha256) for d in applicants]
    hashes = {"program": program_hash}
    result = run_stage(program, stage, ent, records, seed=seed, applicants=app,
                       replicates=replicates, banner=BANNER, extra_hashes=hashes)
    if stage.repechage is None:
        return result
    cut = {t.team_id for t in result.teams if t.decision == "cut"}
    pool = [d for d in in_stage if d.dossier.team.id in cut] + list(applicants)
    facts = _facts(stage, pool, records, field=[*in_stage, *applicants])
    votes = simulate_repechage(stage, facts, evaluators=EXPERTS, seed=seed,
                               disallow=_disallowed(stage))
    store.put(votes, actor="kai demo")
    records = store.records(stage_id=stage.id)
    say(f"  repechage: {len(votes)} simulated evaluator votes among {len(pool)} candidates")
    return run_stage(program, stage, ent, records, seed=seed, applicants=app,
                     replicates=replicates, banner=BANNER, extra_hashes=hashes)


def _disallowed(stage: Stage) -> tuple[str, ...]:
    for g in stage.gates:
        if g.kind.value == "independence":
            return tuple(g.disallow)
    return ()


def clear_cache(cache_dir: Path) -> None:
    shutil.rmtree(cache_dir, ignore_errors=True)


__all__ = ["BANNER", "DemoOutcome", "run_demo"]
