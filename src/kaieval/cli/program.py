"""``kai program``: the built-in programme templates."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from kaieval.cli._common import user_errors

app = typer.Typer(no_args_is_help=True, help="Built-in programme templates.")


@app.command("show")
@user_errors
def program_show(name: Annotated[str, typer.Argument(help="Template name, e.g. k-ai-2025.")]
                 ) -> None:
    """Print a built-in programme template (YAML), to copy and adapt."""
    from kaieval.spec.load import template_text

    sys.stdout.write(template_text(name))
