"""``kai stage``: measure a stage's submissions into the store, then score it from there."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kaieval.cli._common import DbOpt, err_console, user_errors

app = typer.Typer(no_args_is_help=True, help="Measure a stage into the store; score it from "
                  "the store.")


@app.command("measure")
@user_errors
def stage_measure(
    program: Annotated[str, typer.Option(help="Programme YAML or template name.")],
    stage: Annotated[str, typer.Option(help="Stage id.")],
    teams: Annotated[list[Path], typer.Argument(help="Team dossier YAML files.")],
    registry: Annotated[Path | None, typer.Option(
        help="Reference registry folder (default: the independence gate's 'registry' in the "
             "programme, else $KAI_REGISTRY or ./registry).")] = None,
    db: DbOpt = None,
    only: Annotated[str | None, typer.Option(
        help="Comma-separated engines to run: bench, provenance, audit, tokenizer.")] = None,
    team: Annotated[list[str] | None, typer.Option(
        "--team", help="Measure only this team (repeatable).")] = None,
    jobs: Annotated[int, typer.Option(help="Jobs run at once (with --executor ray and no "
                                      "address: the local Ray's CPUs).")] = 1,
    executor: Annotated[str, typer.Option(
        help="local (default), or ray[:ADDRESS]: (team x engine x task shard) jobs on a Ray "
             "cluster (HOST:PORT, ray://HOST:PORT or auto; none: $RAY_ADDRESS, else a Ray "
             "started for this run). Workers share the store (--db) and its request "
             "cache.")] = "local",
    cache_dir: Annotated[Path | None, typer.Option(
        help="Benchmark request cache (default ~/.cache/kaieval/requests).")] = None,
    reference_tokenizer: Annotated[Path | None, typer.Option(
        help="Tokenizer (file or model folder) that Korean efficiency is relative to.")] = None,
    audit_dir: Annotated[Path | None, typer.Option(
        help="Also write each team's full audit (figures, flags) as JSON here.")] = None,
    batch_size: Annotated[int, typer.Option(help="Benchmark batch size (results do not "
                                            "depend on it).")] = 16,
    backend: Annotated[str, typer.Option(
        help="Benchmark backend for submitted model folders: hf (default) or vllm "
             "(endpoints always use the openai backend). Part of each job's key.")] = "hf",
    tensor_parallel_size: Annotated[int, typer.Option(
        help="vllm backend: GPUs each model is split across (vLLM's tensor_parallel_size); "
             "with --executor ray, the GPUs on one node each model's engine asks "
             "for.")] = 1,
) -> None:
    """Measure every team's submission for a stage and store the results.

    Runs what the stage's composition and gates ask for: benchmarks of each candidate
    and its declared target (a shared target once), independence against the registry
    and declared base models, the dossier audit and tokenizer efficiency. A rerun
    measures only what changed. Exit 1 if anything could not be measured.
    """
    from rich.console import Console

    from kaieval.bench.cache import default_request_cache
    from kaieval.pipeline import measure_stage, parse_only, plan_stage
    from kaieval.pipeline.inputs import check_bench_backend, stage_inputs
    from kaieval.pipeline.ray_executor import check_reachable, measure_stage_ray, parse_executor
    from kaieval.report.progress import live_grid, print_measurement_summary
    from kaieval.spec.load import load_dossiers, load_program
    from kaieval.store import Store
    from kaieval.store.database import resolve_url

    check_bench_backend(backend, tensor_parallel_size)
    ray = parse_executor(executor)
    if ray is not None and ray.address is not None:
        check_reachable(ray.address)  # in seconds, before anything slow is loaded
    prog, phash = load_program(program)
    ppath = Path(program) if Path(program).exists() else None
    engines = parse_only(only)
    dossiers = load_dossiers(teams, prog, check_files=False)
    inputs = stage_inputs(prog, phash, stage, dossiers, program_path=ppath, registry=registry,
                          teams=team, cache_dir=cache_dir or default_request_cache(),
                          reference_tokenizer=reference_tokenizer, audit_dir=audit_dir,
                          batch_size=batch_size, bench_backend=backend,
                          tensor_parallel_size=tensor_parallel_size)
    plan = plan_stage(inputs, engines)
    store = Store(db)
    console = Console()
    console.print(f"registry: {inputs.registry.folder} ({len(inputs.registry.entries)} "
                  "reference(s))", markup=False, highlight=False)
    if ray is not None:
        console.print(f"executor: {ray.describe()}", markup=False, highlight=False)
    with live_grid(plan, f"kai stage measure {stage}", console) as grid:
        if ray is None:
            result = measure_stage(inputs, plan, store, actor="kai stage measure", jobs=jobs,
                                   listen=grid.update)
        else:
            result = measure_stage_ray(inputs, plan, resolve_url(db), actor="kai stage measure",
                                       executor=ray, workers=jobs, listen=grid.update)
    print_measurement_summary(result, console)
    if result.failures:
        raise typer.Exit(1)


@app.command("run")
@user_errors
def stage_run(
    program: Annotated[str, typer.Option(help="Programme YAML or template name.")],
    stage: Annotated[str, typer.Option(help="Stage id.")],
    teams: Annotated[list[Path], typer.Argument(help="Team dossier YAML files.")],
    db: DbOpt = None,
    out: Annotated[Path | None, typer.Option(help="Write HTML/JSON reports here.")] = None,
    seed: Annotated[int, typer.Option(help="Bootstrap seed (recorded).")] = 0,
    replicates: Annotated[int | None, typer.Option(help="Bootstrap replicates.")] = None,
    provisional: Annotated[bool, typer.Option(
        "--provisional", help="Score even when inputs are missing, tied or the store fails "
                              "verification; stored as run 'provisional' and labelled so "
                              "everywhere.")] = False,
) -> None:
    """Score one stage from the records in the store and decide the cut.

    No decision is taken on missing data: if a team's component or gate is not
    measured, the cut is a tie that only team ids would break, or the store fails
    verification, nothing is stored and the exit code is 1 (see --provisional).
    """
    from rich.console import Console

    from kaieval.pipeline import program_stage, save_stage_result, stage_entrants
    from kaieval.pipeline.results import quote_checkpoint
    from kaieval.report import print_summary, write_reports
    from kaieval.scoring.decidable import mark_provisional, undecided
    from kaieval.scoring.stage import run_stage
    from kaieval.spec.load import load_dossiers, load_program
    from kaieval.store import Store
    from kaieval.store.checkpoint import verify_store

    prog, phash = load_program(program)
    st = program_stage(prog, stage)
    # scores come from the store: the files a dossier names are the measuring step's concern
    entrants, applicants = stage_entrants(load_dossiers(teams, prog, check_files=False), stage)
    store = Store(db)
    # what `kai audit-log verify` checks, checkpoints included (their files read first)
    problems = verify_store(store).problems
    problems = store.audit_verify() + problems
    result = run_stage(prog, st, entrants, store.records(stage_id=stage), seed=seed,
                       applicants=applicants, replicates=replicates,
                       extra_hashes={"program": phash})
    reasons = undecided(st, result, problems)
    if reasons and not provisional:
        err_console.print(f"not decided: stage '{stage}' has inputs missing or in doubt; "
                          "nothing was stored", markup=False)
        for reason in reasons:
            err_console.print(f"  {reason}", markup=False)
        err_console.print("fix them, or pass --provisional for a result labelled provisional",
                          markup=False)
        raise typer.Exit(1)
    if reasons:
        result = mark_provisional(result, reasons)
    result = quote_checkpoint(result, store)  # the audit log as scored: stored and reported
    save_stage_result(store, result, "provisional" if reasons else "main",
                      actor="kai stage run")
    print_summary(result, Console())
    if out is not None:
        from kaieval.report.wording import run_banner

        banner = None if reasons else run_banner("main", result.banner)
        for p in write_reports([result], out, title=f"{prog.name}: {st.name}", banner=banner):
            typer.echo(f"wrote {p}")
