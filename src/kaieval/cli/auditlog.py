"""``kai audit-log``: verify and show the store's hash-chained audit log."""

from __future__ import annotations

from typing import Annotated

import typer

from kaieval.cli._common import DbOpt, err_console, user_errors

app = typer.Typer(no_args_is_help=True, help="Inspect and verify the store's audit log.")


@app.command("verify")
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


@app.command("show")
@user_errors
def audit_show(db: DbOpt = None,
               limit: Annotated[int, typer.Option(help="Newest entries to show.")] = 20) -> None:
    """Show the newest audit-log entries."""
    from kaieval.store import Store

    for e in Store(db).audit_entries(limit=limit):
        typer.echo(e.to_json())
