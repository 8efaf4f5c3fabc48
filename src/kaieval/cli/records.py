"""``kai records``: import result records into the store and list them."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kaieval.cli._common import DbOpt, user_errors

app = typer.Typer(no_args_is_help=True, help="Import and list stored result records.")


@app.command("import")
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


@app.command("list")
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
