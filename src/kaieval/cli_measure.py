"""``kai stage measure`` and ``kai registry``: measuring a stage into the store."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from kaieval.cli import DbOpt, app, stage_app, user_errors

registry_app = typer.Typer(no_args_is_help=True,
                           help="Reference models the independence gate checks against.")
app.add_typer(registry_app, name="registry")

RegistryOpt = Annotated[Path | None, typer.Option(
    "--registry", help="Registry folder (default: $KAI_REGISTRY or ./registry).")]


@stage_app.command("measure")
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
    jobs: Annotated[int, typer.Option(help="Jobs run at once.")] = 1,
    cache_dir: Annotated[Path | None, typer.Option(
        help="Benchmark request cache (default ~/.cache/kaieval/requests).")] = None,
    reference_tokenizer: Annotated[Path | None, typer.Option(
        help="Tokenizer (file or model folder) that Korean efficiency is relative to.")] = None,
    audit_dir: Annotated[Path | None, typer.Option(
        help="Also write each team's full audit (figures, flags) as JSON here.")] = None,
    batch_size: Annotated[int, typer.Option(help="Benchmark batch size (results do not "
                                            "depend on it).")] = 16,
) -> None:
    """Measure every team's submission for a stage and store the results.

    Runs what the stage's composition and gates ask for: benchmarks of each candidate
    and its declared target (a shared target once), independence against the registry
    and declared base models, the dossier audit and tokenizer efficiency. A rerun
    measures only what changed. Exit 1 if anything could not be measured.
    """
    from kaieval.pipeline import measure_stage, parse_only, plan_stage
    from kaieval.pipeline.inputs import default_request_cache, stage_inputs
    from kaieval.report.progress import live_grid, print_measurement_summary
    from kaieval.spec.load import load_dossiers, load_program
    from kaieval.store import Store

    prog, phash = load_program(program)
    ppath = Path(program) if Path(program).exists() else None
    engines = parse_only(only)
    dossiers = load_dossiers(teams, prog, check_files=False)
    inputs = stage_inputs(prog, phash, stage, dossiers, program_path=ppath, registry=registry,
                          teams=team, cache_dir=cache_dir or default_request_cache(),
                          reference_tokenizer=reference_tokenizer, audit_dir=audit_dir,
                          batch_size=batch_size)
    plan = plan_stage(inputs, engines)
    store = Store(db)
    console = Console()
    console.print(f"registry: {inputs.registry.folder} ({len(inputs.registry.entries)} "
                  "reference(s))", markup=False, highlight=False)
    with live_grid(plan, f"kai stage measure {stage}", console) as grid:
        result = measure_stage(inputs, plan, store, actor="kai stage measure", jobs=jobs,
                               listen=grid.update)
    print_measurement_summary(result, console)
    if result.failures:
        raise typer.Exit(1)


@registry_app.command("add")
@user_errors
def registry_add(
    source: Annotated[Path, typer.Argument(help="A model folder or a fingerprint file.")],
    name: Annotated[str, typer.Option(help="Name of the reference (unique).")],
    origin: Annotated[str, typer.Option(help="Country of origin, ISO code (e.g. US, CN, KR), "
                                        "or 'unknown'.")],
    licence: Annotated[str, typer.Option(help="Licence of the weights.")] = "unknown",
    family: Annotated[str, typer.Option(help="Model family (e.g. llama, qwen).")] = "",
    released: Annotated[str, typer.Option(help="Release date (YYYY-MM[-DD]).")] = "",
    link: Annotated[bool, typer.Option(help="Keep a link to the model folder instead of "
                                       "writing a fingerprint (full power, slower).")] = False,
    replace: Annotated[bool, typer.Option(help="Supersede a reference of the same "
                                          "name.")] = False,
    registry: RegistryOpt = None,
) -> None:
    """Add a reference model (as a fingerprint, or a folder link) to the registry."""
    from kaieval.registry import add_reference, default_registry_dir

    folder = registry or default_registry_dir()
    e = add_reference(folder, source, name=name, origin=origin, licence=licence, family=family,
                      released=released, link=link, replace=replace)
    typer.echo(f"added {e.name} ({e.kind}, {e.sha256[:19]}…) to {folder}")


@registry_app.command("list")
@user_errors
def registry_list(
    registry: RegistryOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON, one object per "
                                          "reference.")] = False,
) -> None:
    """List the registry's references and their metadata."""
    from rich.table import Table

    from kaieval.registry import default_registry_dir, load_registry

    reg = load_registry(registry or default_registry_dir())
    if as_json:
        typer.echo(json.dumps([e.model_dump(mode="json") for e in reg.entries],
                              ensure_ascii=False, indent=2))
        return
    if not reg.entries:
        typer.echo(f"no references in {reg.folder}")
        return
    table = Table(title=f"registry {reg.folder}", title_justify="left")
    for col in ("name", "family", "origin", "licence", "released", "kind", "sha256"):
        table.add_column(col)
    for e in reg.entries:
        table.add_row(e.name, e.family, e.origin, e.licence, e.released, e.kind,
                      e.sha256[:19] + "…")
    Console().print(table)
