"""``kai serve``: the web app for the office, evaluators, teams and the public."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from kaieval.cli._common import DbOpt, err_console, user_errors

app = typer.Typer(no_args_is_help=True)


@app.command("serve")
@user_errors
def serve(
    program: Annotated[str | None, typer.Option(
        help="Programme YAML or template name (default: the programme the store holds, "
             "e.g. after `kai demo`).")] = None,
    teams: Annotated[list[Path] | None, typer.Argument(
        help="Team dossier YAML files (with --program).")] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    db: DbOpt = None,
    secure_cookies: Annotated[bool, typer.Option(
        "--secure-cookies", help="Mark the session cookie Secure (behind https).")] = False,
) -> None:
    """Serve the web app (pages and /api/v1) over the store, on 127.0.0.1:8000 by default."""
    import uvicorn

    from kaieval.errors import KaiError
    from kaieval.spec.load import load_dossiers, load_program
    from kaieval.store import Store
    from kaieval.web.app import create_app
    from kaieval.web.context import WebContext
    from kaieval.web.routes.public import public_view
    from kaieval.web.secret import session_secret
    from kaieval.web.stored import load_stored

    store = Store(db)
    store.migrate()
    if program is not None:
        prog, phash = load_program(program)
        dossiers = [d.dossier for d in load_dossiers(teams or [], prog, check_files=False)]
    elif teams:
        raise KaiError("dossiers need --program (without it, the store's programme is served)")
    else:
        stored = load_stored(store)
        if stored is None:
            raise KaiError("no --program given and the store holds none (run `kai demo`, or "
                           "give --program and the dossiers)", where=store.url)
        prog, phash, dossiers = stored
    ctx = WebContext(store=store, program=prog, program_hash=phash, dossiers=dossiers,
                     secret=session_secret(), secure_cookies=secure_cookies)
    app = create_app(ctx)
    public_view(ctx)  # parsed and drawn now, not by the first visitors
    err_console.print(f"kai serve: {prog.name} · {len(dossiers)} team(s) · store {store.url} · "
                      f"http://{host}:{port}/", markup=False)
    uvicorn.run(app, host=host, port=port, log_level="warning")
