"""``kai validate``: check programme and dossier files, writing nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kaieval.cli._common import _fail, user_errors

app = typer.Typer()


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
