"""``kai``: the command line. A thin shell over library calls; no logic lives here.

Every command turns a ``KaiError`` (bad input) into one line on stderr and exit
code 2. Heavy imports (torch, SQLAlchemy, the report renderer) happen inside the
command that needs them, so ``kai --help`` and ``kai validate`` stay fast.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from kaieval.errors import KaiError, KaiErrors

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="kaieval: evaluate and select models in a sovereign-AI programme.")
audit_app = typer.Typer(no_args_is_help=True, help="Inspect and verify the store's audit log.")
records_app = typer.Typer(no_args_is_help=True, help="Import and list stored result records.")
stage_app = typer.Typer(no_args_is_help=True, help="Score a stage from stored records.")
program_app = typer.Typer(no_args_is_help=True, help="Built-in programme templates.")
app.add_typer(audit_app, name="audit-log")
app.add_typer(records_app, name="records")
app.add_typer(stage_app, name="stage")
app.add_typer(program_app, name="program")

F = TypeVar("F", bound=Callable[..., Any])
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

DbOpt = Annotated[str | None, typer.Option("--db", help="Database URL (default: "
                                            "$KAI_DATABASE_URL or sqlite:///kaieval.sqlite).")]


def _fail(lines: list[str]) -> None:
    for line in lines:
        err_console.print(f"error: {line}", markup=False)
    raise typer.Exit(2)


def user_errors(fn: F) -> F:
    """Turn input errors into one line each on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KaiErrors as e:
            _fail([str(x) for x in e.errors])
        except KaiError as e:
            _fail([str(e)])
        except KeyboardInterrupt:
            err_console.print("interrupted; nothing half-written was kept")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


@app.command()
@user_errors
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the reports and the demo database.")] = Path(
        "kai-demo"),
    cache_dir: Annotated[Path | None, typer.Option(help="Where stand-in models are built and "
                                                   "cached (default: $KAI_CACHE_DIR/demo or "
                                                   "~/.cache/kaieval/demo).")] = None,
    db: DbOpt = None,
    seed: Annotated[int, typer.Option(help="Seed for simulated inputs and the bootstrap.")] = (
        20250804),
    replicates: Annotated[int | None, typer.Option(help="Bootstrap replicates (default: the "
                                                   "programme's).")] = None,
) -> None:
    """Run the embedded scenario: selection (7 -> 5) and stage 1 on synthetic stand-ins."""
    from kaieval.demo.run import run_demo

    outcome = run_demo(out, cache_dir=cache_dir, db_url=db, seed=seed, replicates=replicates)
    Console().print(f"demo finished in {outcome.seconds:.1f} s; open {out / 'report.html'}")


@app.command()
@user_errors
def validate(paths: Annotated[list[Path], typer.Argument(help="Programme and dossier YAML "
                                                         "files.")]) -> None:
    """Check programme and dossier files; one line per problem, exit 2 if any. Writes nothing."""
    from kaieval.spec.load import validate_paths

    ok, errs = validate_paths(paths)
    for line in ok:
        typer.echo(f"ok: {line}")
    if errs:
        _fail([str(e) for e in errs])


@app.command("eval")
@user_errors
def eval_(
    model: Annotated[str, typer.Option("--model", help="Local model folder or endpoint URL.")],
    tasks: Annotated[str, typer.Option(help="Comma-separated catalogue names or task YAML "
                                       "paths (ours or lm-eval's).")],
    backend: Annotated[str, typer.Option(help="hf, openai or vllm.")] = "hf",
    model_name: Annotated[str | None, typer.Option(help="Served model name (openai).")] = None,
    num_fewshot: Annotated[int | None, typer.Option(help="Override the tasks' few-shot "
                                                    "count.")] = None,
    batch_size: Annotated[int, typer.Option(help="Batch size (results do not depend on "
                                            "it).")] = 8,
    limit: Annotated[int | None, typer.Option(help="Only the first N documents per "
                                              "task.")] = None,
    log_samples: Annotated[Path | None, typer.Option(help="Write per-sample JSONL here.")] = None,
    output: Annotated[Path | None, typer.Option(help="Write the run record (JSON) here.")] = None,
    cache_dir: Annotated[Path | None, typer.Option(help="Request cache folder (default "
                                                   "~/.cache/kaieval/requests).")] = None,
    chat_template: Annotated[bool, typer.Option(help="Apply the model's chat template.")] = False,
    trust_remote_code: Annotated[bool, typer.Option(help="Allow the model repository's own "
                                                    "code to run (off by default).")] = False,
) -> None:
    """Run benchmarks on a local model or an OpenAI-compatible endpoint."""
    from kaieval.bench.run import evaluate

    names = [t.strip() for t in tasks.split(",") if t.strip()]
    if not names:
        raise KaiError("--tasks is empty")
    kwargs: dict[str, Any] = {}
    if backend == "openai":
        if not model_name:
            raise KaiError("--backend openai needs --model-name")
        kwargs["model_name"] = model_name
    if trust_remote_code:
        kwargs["trust_remote_code"] = True
    run = evaluate(model, names, backend=backend, num_fewshot=num_fewshot,
                   batch_size=batch_size, limit=limit, cache_dir=cache_dir,
                   log_samples=log_samples, chat_template=chat_template, **kwargs)
    text = run.model_dump_json(indent=2)
    if output is not None:
        from kaieval.io import atomic_write_text

        atomic_write_text(output, text + "\n")
        typer.echo(f"wrote {output}")
    for tr in run.tasks:
        for metric, summary in tr.metrics.items():
            typer.echo(f"{tr.name:24} {metric:14} {summary.value:.4f} ± {summary.stderr:.4f} "
                       f"(95% CI {summary.ci_low:.4f}–{summary.ci_high:.4f}, n={summary.n})")


@program_app.command("show")
@user_errors
def program_show(name: Annotated[str, typer.Argument(help="Template name, e.g. k-ai-2025.")]
                 ) -> None:
    """Print a built-in programme template (YAML), to copy and adapt."""
    from kaieval.spec.load import template_text

    sys.stdout.write(template_text(name))


@records_app.command("import")
@user_errors
def records_import(
    file: Annotated[Path, typer.Argument(help="JSON Lines file, one result record per line.")],
    db: DbOpt = None,
    actor: Annotated[str, typer.Option(help="Who is importing (kept in the audit log).")] = "cli",
) -> None:
    """Import result records (sheets, votes, benchmark results, verdicts) in one transaction."""
    from kaieval.records import load_records_jsonl
    from kaieval.store import Store

    recs = load_records_jsonl(file)
    summary = Store(db).put(recs, actor=actor)
    typer.echo(f"{len(recs)} records: {summary.inserted} inserted, {summary.replaced} replaced, "
               f"{summary.unchanged} unchanged")


@records_app.command("list")
@user_errors
def records_list(
    db: DbOpt = None,
    stage: Annotated[str | None, typer.Option(help="Only this stage.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind (sheet, votes, ...).")] = None,
) -> None:
    """List stored records as JSON Lines."""
    from kaieval.store import Store

    for r in Store(db).records(stage_id=stage, kind=kind):
        typer.echo(r.model_dump_json())


@stage_app.command("run")
@user_errors
def stage_run(
    program: Annotated[str, typer.Option(help="Programme YAML or template name.")],
    stage: Annotated[str, typer.Option(help="Stage id.")],
    teams: Annotated[list[Path], typer.Argument(help="Team dossier YAML files.")],
    db: DbOpt = None,
    out: Annotated[Path | None, typer.Option(help="Write HTML/JSON reports here.")] = None,
    seed: Annotated[int, typer.Option(help="Bootstrap seed (recorded).")] = 0,
    replicates: Annotated[int | None, typer.Option(help="Bootstrap replicates.")] = None,
) -> None:
    """Score one stage from the records in the store and decide the cut."""
    from kaieval.pipeline import save_stage_result
    from kaieval.report import print_summary, write_reports
    from kaieval.scoring.stage import Entrant, run_stage
    from kaieval.spec.load import load_dossiers, load_program
    from kaieval.store import Store

    prog, phash = load_program(program)
    try:
        st = prog.stage(stage)
    except KeyError:
        raise KaiError(f"no stage '{stage}' in programme '{prog.id}'") from None
    dossiers = load_dossiers(teams, prog)
    entrants: list[Entrant] = []
    applicants: list[Entrant] = []
    for d in dossiers:
        sub = d.dossier.submissions.get(stage)
        if sub is None:
            continue
        e = Entrant(d.dossier.team.id, d.dossier.team.name, sub, d.sha256)
        (applicants if sub.applies_to == "repechage" else entrants).append(e)
    if not entrants:
        raise KaiError(f"none of the dossiers has a submission for stage '{stage}'")
    store = Store(db)
    result = run_stage(prog, st, entrants, store.records(stage_id=stage), seed=seed,
                       applicants=applicants, replicates=replicates,
                       extra_hashes={"program": phash})
    save_stage_result(store, result, "main", actor="kai stage run")
    print_summary(result, Console())
    if out is not None:
        for p in write_reports([result], out, title=f"{prog.name}: {st.name}", banner=None):
            typer.echo(f"wrote {p}")


@app.command()
@user_errors
def report(
    out: Annotated[Path, typer.Option(help="Folder for report.html and the JSON files.")],
    stages: Annotated[list[str], typer.Argument(help="Stage ids, in order.")],
    db: DbOpt = None,
    run_label: Annotated[str, typer.Option(help="Which stored run ('main', 'demo').")] = "main",
) -> None:
    """Re-render reports from stage results already in the store."""
    from kaieval.report import write_reports
    from kaieval.scoring.results import StageResult
    from kaieval.store import Store

    store = Store(db)
    results = []
    for sid in stages:
        payload = store.stage_result(sid, run_label)
        if payload is None:
            raise KaiError(f"no stored result for stage '{sid}' (run '{run_label}')")
        results.append(StageResult.model_validate(payload))
    banner = results[0].banner
    for p in write_reports(results, out, title=f"kaieval report ({run_label})", banner=banner):
        typer.echo(f"wrote {p}")


@audit_app.command("verify")
@user_errors
def audit_verify(db: DbOpt = None) -> None:
    """Check the hash chain and that stored rows match it; exit 1 if anything was altered."""
    from kaieval.store import Store

    problems = Store(db).audit_verify()
    if problems:
        for p in problems:
            err_console.print(f"audit: {p}", markup=False)
        raise typer.Exit(1)
    typer.echo("audit log intact")


@audit_app.command("show")
@user_errors
def audit_show(db: DbOpt = None,
               limit: Annotated[int, typer.Option(help="Newest entries to show.")] = 20) -> None:
    """Show the newest audit-log entries."""
    from kaieval.store import Store

    for e in Store(db).audit_entries(limit=limit):
        typer.echo(json.dumps(dataclasses.asdict(e), default=str, ensure_ascii=False))


# Commands that live in their own modules register themselves on ``app`` when imported.
from kaieval import cli_audit as _cli_audit  # noqa: E402,F401
from kaieval import cli_provenance as _cli_provenance  # noqa: E402,F401


def main() -> None:
    app()


if __name__ == "__main__":
    # ``python -m kaieval.cli``: the command modules register on ``kaieval.cli.app``, not on
    # this ``__main__`` copy, so run that one.
    from kaieval.cli import main as _main

    _main()
