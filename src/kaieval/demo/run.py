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
from kaieval.pipeline import quote_checkpoint, save_stage_result
from kaieval.records import IndependenceVerdict, Measurement, Record
from kaieval.scoring.decidable import mark_provisional, undecided
from kaieval.scoring.results import StageResult
from kaieval.scoring.stage import Entrant, run_stage
from kaieval.spec.load import LoadedDossier, load_dossier, load_dossiers, load_program
from kaieval.spec.program import Program, Stage

if TYPE_CHECKING:
    from importlib.resources.abc import Traversable

    from kaieval.pipeline import StageMeasurement
    from kaieval.store import Store

BANNER = ("DEMO — synthetic stand-in models and simulated committee sheets, user votes and "
          "repechage votes. Not a measurement of the real companies' models.")
FOREIGN_BASE = "foreign-base"
DEMO_SEED = 20250804
STAGES = ("selection", "stage1", "stage2")
# Stages whose real outcome is not public: the demo projects them on its stand-ins.
PLANNED = {"stage2": ("PLANNED STAGE — stage 2 (models due end of July 2026, evaluated in August "
                      "2026) as publicly planned; its real outcome is not public. Projected here "
                      "on the stand-ins with simulated people.")}
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


def _heldout(stage: Stage, teams: Sequence[LoadedDossier], models: dict[str, Path],
             heldout: str, cache: RecordCache) -> list[Record]:
    """Held-out loss of each team's stand-in: the demo's quality signal for its simulated
    people (not a programme measure), cached by input content."""
    from kaieval.bench.heldout import heldout_measurement

    out: list[Record] = []
    text_hash = sha256_json(heldout)
    for ld in teams:
        tid = ld.dossier.team.id
        sub = ld.dossier.submissions[stage.id]
        if sub.model is None or sub.model.path is None:
            continue
        mdir = ld.resolve(sub.model.path)

        def rebind(r: _R, tid: str = tid) -> _R:
            return r.model_copy(update={"stage_id": stage.id, "team_id": tid})

        out.append(cache.get_or_measure(
            {"kind": "heldout", "model": model_hash(mdir), "text": text_hash},
            functools.partial(heldout_measurement, mdir, heldout, stage_id=stage.id,
                              team_id=tid), rebind))
    return out


def _registry(scenario: Path, models: dict[str, Path]) -> Path:
    """The demo's reference registry: the foreign base, linked as a folder (full power),
    added the way a user adds one (``kai registry add --link``)."""
    from kaieval.registry import add_reference, load_registry

    folder = scenario / "registry"
    reg = load_registry(folder)
    entry = reg.find(FOREIGN_BASE)
    if (entry is None or Path(entry.file) != models[FOREIGN_BASE].resolve()
            or reg.current_hash(entry) != entry.sha256):
        add_reference(folder, models[FOREIGN_BASE], name=FOREIGN_BASE, origin="unknown",
                      licence="demo stand-in", family="llama", link=True, replace=True)
    return folder


def _measure(program: Program, program_hash: str, stage: Stage, dossiers: list[LoadedDossier],
             teams: Sequence[str], scenario: Path, models: dict[str, Path], out_dir: Path,
             store: Store, console: Console) -> StageMeasurement:
    """The stage measured exactly as ``kai stage measure`` measures it."""
    from kaieval.pipeline import measure_stage, plan_stage
    from kaieval.pipeline.inputs import stage_inputs
    from kaieval.report.progress import live_grid, print_measurement_summary

    inputs = stage_inputs(program, program_hash, stage.id, dossiers, teams=teams,
                          cache_dir=scenario / "requests",
                          registry=_registry(scenario, models),
                          reference_tokenizer=models[FOREIGN_BASE],
                          audit_dir=out_dir / "audit")
    plan = plan_stage(inputs)
    with live_grid(plan, f"{stage.id}: measuring", console) as grid:
        m = measure_stage(inputs, plan, store, actor="kai demo", listen=grid.update)
    print_measurement_summary(m, console)
    return m


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
    t_build = time.perf_counter()
    with console.status("stand-in models: checking the cache") as status:
        models = build_standins(scenario / "models",
                                progress=lambda m: status.update(f"stand-in models: {m}"))
    say(f"stand-in models ready in {scenario / 'models'} "
        f"({time.perf_counter() - t_build:.1f} s; built once, then cached)")
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
        if sid in PLANNED:
            say(f"[bold yellow]{PLANNED[sid]}")
        teams = [d.dossier.team.id for d in [*in_stage, *applicants]]
        _measure(program, program_hash, stage, dossiers, teams, scenario, models, out_dir,
                 store, console)
        store.put(_heldout(stage, [*in_stage, *applicants], models, heldout, measured_cache),
                  actor="kai demo")
        measured = store.records(stage_id=sid)
        facts = _facts(stage, in_stage, measured)
        simulated: list[Record] = list(simulate_sheets(stage, facts, evaluators=EXPERTS,
                                                       seed=seed))
        if any(c.kind and c.kind.value == "users" for c in stage.leaves()):
            simulated.extend(simulate_votes(stage, facts, users=USERS, battles=20, seed=seed))
        store.put(simulated, actor="kai demo")
        banner = f"{BANNER} {PLANNED[sid]}" if sid in PLANNED else BANNER
        result = _score(program, program_hash, stage, in_stage, applicants, store, seed,
                        replicates, say, banner)
        reasons = undecided(stage, result)  # the rule `kai stage run` applies, here too
        if reasons:
            say(f"  not decidable ({len(reasons)} reason(s)): labelled provisional")
            result = mark_provisional(result, reasons)
        result = quote_checkpoint(result, store)
        save_stage_result(store, result, "demo", actor="kai demo")
        results.append(result)
        print_summary(result, console)
        advancing = result.advancing()
    _serve_from_store(store, paths, say)
    reports = write_reports(results, out_dir, title="kaieval demo: K-AI programme selection, "
                            "stage 1 and the planned stage 2", banner=BANNER)
    for p in reports:
        say(f"wrote {p}")
    return DemoOutcome(results=results, reports=reports, db_url=url,
                       seconds=time.perf_counter() - t0)


def _serve_from_store(store: Store, paths: Sequence[Path], say: Callable[..., None]) -> None:
    """Store the programme and dossiers for ``kai serve``; make and print demo accounts."""
    from kaieval.demo.accounts import make_demo_accounts
    from kaieval.spec.load import template_text
    from kaieval.web.stored import store_programme

    loaded = [load_dossier(p, check_files=False) for p in paths]
    store_programme(store, template_text("k-ai-2025"),
                    {ld.dossier.team.id: p.read_text("utf-8") for ld, p in zip(loaded, paths,
                                                                              strict=True)},
                    actor="kai demo")
    made = make_demo_accounts(store, [ld.dossier for ld in loaded])
    say("[bold yellow]Demo web-app accounts (SIMULATED people; one-time passwords, shown "
        "once): `kai serve --db " + store.url + "`", soft_wrap=True)
    for name, role, detail, password in made:
        shown = password if password is not None else "(made by an earlier run; unchanged)"
        say(f"  {name:22} {role:7} {detail:32} {shown}", markup=False, highlight=False,
            soft_wrap=True)


def _score(program: Program, program_hash: str, stage: Stage, in_stage: Sequence[LoadedDossier],
           applicants: Sequence[LoadedDossier], store: Store, seed: int,
           replicates: int | None, say: Callable[[str], None], banner: str) -> StageResult:
    """Score from the store; if the stage has a repechage, simulate its vote on the cut."""
    records = store.records(stage_id=stage.id)
    ent = [Entrant(d.dossier.team.id, d.dossier.team.name, d.dossier.submissions[stage.id],
                   d.sha256) for d in in_stage]
    app = [Entrant(d.dossier.team.id, d.dossier.team.name, d.dossier.submissions[stage.id],
                   d.sha256) for d in applicants]
    hashes = {"program": program_hash}
    result = run_stage(program, stage, ent, records, seed=seed, applicants=app,
                       replicates=replicates, banner=banner, extra_hashes=hashes)
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
                     replicates=replicates, banner=banner, extra_hashes=hashes)


def _disallowed(stage: Stage) -> tuple[str, ...]:
    for g in stage.gates:
        if g.kind.value == "independence":
            return tuple(g.disallow)
    return ()


def clear_cache(cache_dir: Path) -> None:
    shutil.rmtree(cache_dir, ignore_errors=True)


__all__ = ["BANNER", "DemoOutcome", "run_demo"]
