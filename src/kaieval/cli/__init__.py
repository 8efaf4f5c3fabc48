"""``kai``: the command line. A thin shell over library calls; no logic lives here.

Layout: one module per command group, each holding its own ``app = typer.Typer(...)``
and the commands on it; this file only creates the root ``app`` and registers them.
Shared helpers (the error contract, ``--db``, stderr) are in :mod:`kaieval.cli._common`.

Every command turns a ``KaiError`` (bad input) into one line on stderr and exit
code 2. Heavy imports (torch, SQLAlchemy, the report renderer) happen inside the
command that needs them, so ``kai --help`` and ``kai validate`` stay fast.

Adding a command group ``kai NAME``: write ``cli/NAME.py`` with
``app = typer.Typer(no_args_is_help=True, help="...")`` and its commands (each
``@app.command("verb")`` then ``@user_errors``), then add one line below:
``app.add_typer(NAME.app, name="NAME")``. A top-level command (``kai NAME`` with no
sub-command) is the same with ``app = typer.Typer()`` and no ``name=``: its commands are
merged into ``kai``. The order of the lines is the order of ``kai --help``.
"""

from __future__ import annotations

import typer

from kaieval.cli import (
    arena,
    audit,
    auditlog,
    demo,
    keys,
    program,
    provenance,
    records,
    registry,
    remote,
    report,
    serve,
    stage,
    tokenizer,
    users,
    validate,
)
from kaieval.cli import eval as eval_  # the module; ``eval_`` so the builtin keeps its name

app = typer.Typer(no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
                  help="kaieval: evaluate and select models in a sovereign-AI programme.")

# top-level commands: kai demo, kai validate, ...
app.add_typer(demo.app)
app.add_typer(validate.app)
app.add_typer(eval_.app)
app.add_typer(report.app)
app.add_typer(audit.app)
app.add_typer(tokenizer.app)
app.add_typer(serve.app)
# command groups: kai audit-log verify, kai records import, ...
app.add_typer(auditlog.app, name="audit-log")
app.add_typer(records.app, name="records")
app.add_typer(stage.app, name="stage")
app.add_typer(registry.app, name="registry")
app.add_typer(program.app, name="program")
app.add_typer(provenance.app, name="provenance")
app.add_typer(keys.app, name="keys")
app.add_typer(users.app, name="users")
app.add_typer(arena.app, name="arena")
app.add_typer(remote.app, name="remote")


def main() -> None:
    from kaieval.cli._exit import leave

    try:
        app()
    except SystemExit as done:
        leave(done.code)
    leave(0)
