"""``kai users``: accounts of the web app (office, experts, user evaluators, teams)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from kaieval.cli._common import DbOpt, err_console, user_errors

app = typer.Typer(no_args_is_help=True, help="Create, list and disable web-app accounts.")


@app.command("add")
@user_errors
def users_add(
    name: Annotated[str, typer.Argument(help="Login name (letters, digits, . _ @ -).")],
    role: Annotated[str, typer.Option(help="admin, expert, user or team.")],
    team: Annotated[str | None, typer.Option(help="The team a team account speaks for.")]
    = None,
    affiliation: Annotated[str, typer.Option(
        help="The person's organisation (conflicts of interest are computed from it).")] = "",
    token_out: Annotated[Path | None, typer.Option(
        help="Write the API token to this file (mode 0600) instead of printing it.")] = None,
    token_only: Annotated[bool, typer.Option(
        "--token-only", help="No password: the account is used through its API token only "
                             "(scripts).")] = False,
    db: DbOpt = None,
    actor: Annotated[str, typer.Option(help="Who is creating it (audit log).")] = "cli",
) -> None:
    """Create an account; prints its one-time password (and API token) once."""
    import os

    from kaieval.errors import KaiError
    from kaieval.store import Store
    from kaieval.web.accounts import Role, create_account

    try:
        parsed = Role(role)
    except ValueError:
        raise KaiError(f"--role {role!r}: expected one of "
                       f"{', '.join(r.value for r in Role)}") from None
    account, password, token = create_account(Store(db), name, parsed, team_id=team,
                                              affiliation=affiliation, actor=actor,
                                              password_login=not token_only)
    typer.echo(f"created {account.name} ({account.role.value}); "
               + (f"one-time password: {password}" if password else "token only, no password"))
    if token_out is None:
        typer.echo(f"API token: {token}")
        return
    try:
        fd = os.open(token_out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    except OSError as e:
        raise KaiError(f"cannot write the token: {e.strerror or e}", where=str(token_out)) \
            from None
    with os.fdopen(fd, "w", encoding="ascii") as f:
        f.write(token + "\n")
    err_console.print(f"wrote the API token to {token_out}", markup=False)


@app.command("list")
@user_errors
def users_list(db: DbOpt = None) -> None:
    """Every account as JSON Lines (never a password or token hash)."""
    from kaieval.store import Store
    from kaieval.web.accounts import accounts

    for a in accounts(Store(db)):
        typer.echo(json.dumps(a.public(), ensure_ascii=False))


@app.command("disable")
@user_errors
def users_disable(
    name: Annotated[str, typer.Argument(help="Login name.")],
    reason: Annotated[str, typer.Option(help="Why (audit log).")] = "",
    db: DbOpt = None,
    actor: Annotated[str, typer.Option(help="Who is disabling it (audit log).")] = "cli",
) -> None:
    """Disable an account: no more logins or API calls with its token."""
    from kaieval.store import Store
    from kaieval.web.accounts import disable

    disable(Store(db), name, actor=actor, reason=reason)
    typer.echo(f"disabled {name}")
