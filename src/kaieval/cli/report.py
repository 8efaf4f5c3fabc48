"""``kai report``: re-render reports from stage results already in the store."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kaieval.cli._common import DbOpt, user_errors

app = typer.Typer()


@app.command()
@user_errors
def report(
    out: Annotated[Path, typer.Option(help="Folder for report.html and the JSON files.")],
    stages: Annotated[list[str], typer.Argument(help="Stage ids, in order.")],
    db: DbOpt = None,
    run_label: Annotated[str, typer.Option(
        help="Which stored run ('main': decided, open to objections; 'final': confirmed; "
             "'provisional'; 'demo').")] = "main",
) -> None:
    """Re-render reports from stage results already in the store."""
    from kaieval.pipeline import load_stage_results
    from kaieval.report import write_reports
    from kaieval.report.wording import run_banner
    from kaieval.store import Store

    results = load_stage_results(Store(db), stages, run_label)
    banner = run_banner(run_label, results[0].banner)
    for p in write_reports(results, out, title=f"kaieval report ({run_label})", banner=banner):
        typer.echo(f"wrote {p}")
