"""``kai demo``: the embedded scenario, end to end."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kaieval.cli._common import DbOpt, user_errors

app = typer.Typer()


@app.command()
@user_errors
def demo(
    out: Annotated[Path, typer.Option(help="Folder for the reports and the demo database.")] = Path(
        "kai-demo"),
    cache_dir: Annotated[Path | None, typer.Option(help="Where stand-in models are built and "
                                                   "cached (default: $KAI_CACHE_DIR/demo or "
                                                   "~/.cache/kaieval/demo).")] = None,
    db: DbOpt = None,
    seed: Annotated[int, typer.Option(help="Seed for simulated inputs and the bootstrap.")] = (
        20250804),
    replicates: Annotated[int | None, typer.Option(help="Bootstrap replicates (default: the "
                                                   "programme's).")] = None,
) -> None:
    """Run the embedded scenario: selection (7 -> 5) and stage 1 on synthetic stand-ins."""
    from rich.console import Console

    from kaieval.demo.run import run_demo

    outcome = run_demo(out, cache_dir=cache_dir, db_url=db, seed=seed, replicates=replicates)
    Console().print(f"demo finished in {outcome.seconds:.1f} s; open {out / 'report.html'}")
