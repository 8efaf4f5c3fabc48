"""``kai stage``: score a stage from the records in the store.

``kai stage measure`` (measuring a stage's submissions into the store) belongs here too,
as another ``@app.command("measure")``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kaieval.cli._common import DbOpt, user_errors

app = typer.Typer(no_args_is_help=True, help="Score a stage from stored records.")


@app.command("run")
@user_errors
def stage_run(
    program: Annotated[str, typer.Option(help="Programme YAML or template name.")],
    stage: Annotated[str, typer.Option(help="Stage id.")],
    teams: Annotated[list[Path], typer.Argument(help="Team dossier YAML files.")],
    db: DbOpt = None,
    out: Annotated[Path | None, typer.Option(help="Write HTML/JSON reports here.")] = None,
    seed: Annotated[int, typer.Option(help="Bootstrap seed (recorded).")] = 0,
    replicates: Annotated[int | None, typer.Option(help="Bootstrap replicates.")] = None,
) -> None:
    """Score one stage from the records in the store and decide the cut."""
    from rich.console import Console

    from kaieval.pipeline import program_stage, save_stage_result, stage_entrants
    from kaieval.report import print_summary, write_reports
    from kaieval.scoring.stage import run_stage
    from kaieval.spec.load import load_dossiers, load_program
    from kaieval.store import Store

    prog, phash = load_program(program)
    st = program_stage(prog, stage)
    entrants, applicants = stage_entrants(load_dossiers(teams, prog), stage)
    store = Store(db)
    result = run_stage(prog, st, entrants, store.records(stage_id=stage), seed=seed,
                       applicants=applicants, replicates=replicates,
                       extra_hashes={"program": phash})
    save_stage_result(store, result, "main", actor="kai stage run")
    print_summary(result, Console())
    if out is not None:
        for p in write_reports([result], out, title=f"{prog.name}: {st.name}", banner=None):
            typer.echo(f"wrote {p}")
