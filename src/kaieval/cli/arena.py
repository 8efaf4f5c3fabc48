"""``kai arena``: the blind arena's prompt set and the teams' responses to it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kaieval.cli._common import DbOpt, err_console, user_errors

app = typer.Typer(no_args_is_help=True, help="Prepare the user arena of a stage.")


@app.command("generate")
@user_errors
def arena_generate(
    dossiers: Annotated[list[Path], typer.Argument(help="Team dossiers (YAML).")],
    program: Annotated[Path, typer.Option(help="Programme YAML.")],
    stage: Annotated[str, typer.Option(help="Stage id (it must have an arena).")],
    prompts: Annotated[Path, typer.Option(help="Prompt set: JSONL, {\"id\", \"prompt\"} a line.")],
    max_tokens: Annotated[int, typer.Option(help="Longest response, in tokens.")] = 256,
    chat: Annotated[bool, typer.Option(help="Send prompts through the chat template.")] = True,
    device: Annotated[str, typer.Option(help="Device for local models.")] = "cpu",
    cache_dir: Annotated[Path | None, typer.Option(help="Request cache folder (default "
                                                   "~/.cache/kaieval/requests).")] = None,
    db: DbOpt = None,
    actor: Annotated[str, typer.Option(help="Who generates (audit log).")] = "cli",
) -> None:
    """Answer the prompt set with every entrant's model (cached) and store the responses."""
    from kaieval.arena import responses as rs
    from kaieval.errors import KaiError
    from kaieval.spec.load import load_dossiers, load_program
    from kaieval.store import Store

    prog, _ = load_program(program)
    st = next((s for s in prog.stages if s.id == stage), None)
    if st is None or not any(c.kind is not None and c.kind.value == "users" and c.mode == "arena"
                             for c in st.leaves()):
        raise KaiError(f"stage {stage!r} has no arena (a users component in arena mode)",
                       where=str(program))
    loaded = [ld for ld in load_dossiers(dossiers, prog) if stage in ld.dossier.submissions]
    if len(loaded) < 2:
        raise KaiError(f"an arena needs at least two teams entered in stage {stage!r}")
    items = rs.load_prompts(prompts)
    backends = {ld.dossier.team.id: rs.backend_for(ld.folder, ld.dossier, stage, chat=chat,
                                                   device=device) for ld in loaded}
    from kaieval.bench.cache import default_request_cache

    cache = cache_dir or default_request_cache()
    n = rs.generate(Store(db), stage, backends, items, cache_dir=cache, max_tokens=max_tokens,
                    chat=chat, actor=actor)
    typer.echo(f"stored {n} responses ({len(items)} prompts x {len(backends)} teams) "
               f"for stage {stage}")
    hidden = rs.withheld(Store(db), stage, [ld.dossier for ld in loaded])
    if hidden:
        err_console.print(f"{len(hidden)} responses name their team or model and will not be "
                          "shown in battles", markup=False)
