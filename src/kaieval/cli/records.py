"""``kai records``: import checked records into the store, list them, retract and restore."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kaieval.cli._common import DbOpt, err_console, user_errors

app = typer.Typer(no_args_is_help=True, help="Import, list, retract and restore stored records.")

ActorOpt = Annotated[str, typer.Option(help="Who is writing (kept in the audit log).")]
ReasonOpt = Annotated[str, typer.Option(help="Why (kept in the audit log).")]


@app.command("import")
@user_errors
def records_import(
    file: Annotated[Path, typer.Argument(help="JSON Lines file, one result record per line.")],
    teams: Annotated[list[Path], typer.Argument(help="Team dossier YAML files (the teams the "
                                                    "records may name).")],
    program: Annotated[str, typer.Option(help="Programme YAML or template name the records "
                                              "are checked against.")],
    db: DbOpt = None,
    actor: ActorOpt = "cli",
    replace: Annotated[bool, typer.Option(
        "--replace", help="Supersede stored records that this file changes (needs --reason); "
                          "the old versions stay in the history.")] = False,
    reason: Annotated[str, typer.Option(help="Why records are superseded (with --replace).")]
    = "",
    allow_simulated: Annotated[bool, typer.Option(
        "--allow-simulated", help="Rehearsal: accept simulated sheets and votes "
                                  "(reports label them simulated).")] = False,
) -> None:
    """Check records against the programme and dossiers, then store them in one transaction.

    Any bad record refuses the whole file (one line per problem, file:line and field);
    a record that would change a stored one is refused unless --replace --reason.
    """
    from kaieval.errors import KaiError, KaiErrors
    from kaieval.intake import Intake
    from kaieval.records import load_records_jsonl
    from kaieval.spec.load import load_dossiers, load_program
    from kaieval.store import Store, Superseding

    if replace and not reason.strip():
        raise KaiError("--replace needs --reason (kept in the audit log with each superseded "
                       "record)")
    prog, _ = load_program(program)
    dossiers = load_dossiers(teams, prog, check_files=False)
    rows = load_records_jsonl(file)
    checked = Intake(prog, [d.dossier for d in dossiers], allow_simulated).check(rows)
    try:
        summary = Store(db).put(checked.records, actor=actor, replace=replace, reason=reason)
    except Superseding as e:
        raise KaiErrors([KaiError(f"{key}: already stored with different content; supersede "
                                  "it with --replace --reason", where=checked.where[i])
                         for i, key in e.records]) from None
    for note in checked.notes:
        err_console.print(f"note: {note}", markup=False)
    typer.echo(f"{len(rows)} lines, {len(checked.records)} records: {summary.inserted} "
               f"inserted, {summary.replaced} replaced, {summary.unchanged} unchanged")


@app.command("list")
@user_errors
def records_list(
    db: DbOpt = None,
    stage: Annotated[str | None, typer.Option(help="Only this stage.")] = None,
    kind: Annotated[str | None, typer.Option(help="Only this kind (sheet, vote, ...).")] = None,
    retracted: Annotated[bool, typer.Option(
        "--include-retracted", help="Also list records that are retracted.")] = False,
) -> None:
    """List stored records as JSON Lines (retracted ones only with --include-retracted)."""
    from kaieval.store import Store

    for r in Store(db).records(stage_id=stage, kind=kind, include_retracted=retracted):
        typer.echo(r.model_dump_json())


@app.command("retract")
@user_errors
def records_retract(
    key: Annotated[str, typer.Argument(help="Natural key of the record, as `kai records "
                                            "list` shows it (e.g. sheet/stage1/tech/lg/e03).")],
    reason: ReasonOpt,
    db: DbOpt = None,
    actor: ActorOpt = "cli",
) -> None:
    """Take one record out of scoring; it stays stored, and `restore` brings it back."""
    from kaieval.store import Store

    Store(db).retract(key, actor=actor, reason=reason)
    typer.echo(f"retracted {key}")


@app.command("restore")
@user_errors
def records_restore(
    key: Annotated[str, typer.Argument(help="Natural key of a retracted record.")],
    reason: ReasonOpt,
    db: DbOpt = None,
    actor: ActorOpt = "cli",
) -> None:
    """Undo a retraction: the record counts in scoring again."""
    from kaieval.store import Store

    Store(db).restore(key, actor=actor, reason=reason)
    typer.echo(f"restored {key}")


@app.command("history")
@user_errors
def records_history(
    key: Annotated[str, typer.Argument(help="Natural key of a record.")],
    db: DbOpt = None,
) -> None:
    """Every version of a record: audit entry (who, when, why) and that version's JSON."""
    import json

    from kaieval.store import Store

    for entry, payload in Store(db).history(key):
        line = {"seq": entry.seq, "at": entry.at, "actor": entry.actor, "action": entry.action,
                "reason": entry.note, "record": json.loads(payload) if payload else None}
        typer.echo(json.dumps(line, ensure_ascii=False))
