"""``kai audit-log``: verify and show the store's hash-chained audit log, sign checkpoints."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kaieval.cli._common import DbOpt, err_console, user_errors, write_json_file
from kaieval.cli.keys import KeyDirOpt

app = typer.Typer(no_args_is_help=True, help="Inspect and verify the store's audit log.")


@app.command("verify")
@user_errors
def audit_verify(db: DbOpt = None, key_dir: KeyDirOpt = None,
                 checkpoint: Annotated[list[Path] | None, typer.Option(
                     "--checkpoint", help="Also check against the checkpoint(s) in this file "
                     "(one JSON object, JSON Lines, or a stage report's JSON); repeatable.")
                 ] = None) -> None:
    """Check the hash chain, that stored rows match it, and that the log still extends
    every checkpoint given or written; exit 1 if anything was altered, cut or rolled back."""
    from kaieval.store import Store
    from kaieval.store.checkpoint import short, verify_store

    store = Store(db, key_dir=key_dir)
    report = verify_store(store, checkpoint or [])  # checkpoint files first, then the database
    problems = store.audit_verify() + report.problems
    for note in report.notes:
        typer.echo(f"note: {note}")
    if problems:
        for p in problems:
            err_console.print(f"audit: {p}", markup=False)
        raise typer.Exit(1)
    typer.echo("audit log intact")
    if report.newest is not None:
        newest = report.newest
        by = f"key {short(newest.key)}" if newest.key else "no key (unsigned)"
        typer.echo(f"the log extends all {report.checked} checkpoint(s); newest: "
                   f"{newest.size} entries at {newest.time}, signed by {by}")


@app.command("show")
@user_errors
def audit_show(db: DbOpt = None,
               limit: Annotated[int, typer.Option(help="Newest entries to show.")] = 20) -> None:
    """Show the newest audit-log entries."""
    from kaieval.store import Store

    for e in Store(db).audit_entries(limit=limit):
        typer.echo(e.to_json())


@app.command("checkpoint")
@user_errors
def audit_checkpoint(db: DbOpt = None, key_dir: KeyDirOpt = None,
                     out: Annotated[Path | None, typer.Option(
                         help="Write the checkpoint here (default: print it).")] = None) -> None:
    """Sign the current head after a full verify, for publishing outside this machine.

    Refuses (exit 1) if the log fails verification: signing it would vouch for the damage.
    """
    from kaieval.store import Store
    from kaieval.store.checkpoint import verify_store

    store = Store(db, key_dir=key_dir)
    if store.keys.signer() is None:  # before the full verify: a missing key is quick to tell
        from kaieval.errors import KaiError

        raise KaiError("no signing key: run `kai keys init`", where=str(store.keys.path))
    problems = verify_store(store).problems
    problems = store.audit_verify() + problems
    if problems:
        for p in problems:
            err_console.print(f"audit: {p}", markup=False)
        err_console.print("audit: not signed: the log fails verification", markup=False)
        raise typer.Exit(1)
    cp = store.audit_checkpoint(require_key=True)
    if out is None:
        typer.echo(cp.to_json())
    else:
        write_json_file(out, cp.to_json())
