"""``kai serve``: the web app for the office, evaluators, teams and the public."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

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
    workers: Annotated[int, typer.Option(
        min=1, max=64, help="Server processes (see docs/cmd-serve.md).")] = 1,
) -> None:
    """Serve the web app (pages and /api/v1) over the store, on 127.0.0.1:8000 by default."""
    import uvicorn

    if workers > 1:
        import json
        import os

        from kaieval.web.secret import session_secret

        _context(program, teams, db, secure_cookies).store.close()  # bad input: refused once
        session_secret()  # made before the workers start, so they share it
        os.environ[_CONFIG_ENV] = json.dumps({
            "program": program, "teams": [str(t.resolve()) for t in teams or []], "db": db,
            "secure_cookies": secure_cookies})
        err_console.print(f"kai serve: {workers} workers · http://{host}:{port}/",
                          markup=False)
        uvicorn.run("kaieval.cli.serve:worker_app", factory=True, workers=workers,
                    host=host, port=port, log_level="warning")
        return
    from kaieval.web.app import create_app
    from kaieval.web.routes.public import public_view

    ctx = _context(program, teams, db, secure_cookies)
    app = create_app(ctx)
    public_view(ctx)  # parsed and drawn now, not by the first visitors
    err_console.print(f"kai serve: {ctx.program.name} · {len(ctx.dossiers)} team(s) · store "
                      f"{ctx.store.url} · http://{host}:{port}/", markup=False)
    uvicorn.run(app, host=host, port=port, log_level="warning")


_CONFIG_ENV = "KAI_SERVE_WORKER_CONFIG"


def worker_app() -> Any:
    """The app of one worker process of ``kai serve --workers N`` (uvicorn's factory)."""
    import json
    import os

    from kaieval.web.app import create_app
    from kaieval.web.routes.public import public_view

    cfg = json.loads(os.environ[_CONFIG_ENV])
    ctx = _context(cfg["program"], [Path(t) for t in cfg["teams"]] or None, cfg["db"],
                   cfg["secure_cookies"])
    ctx.shared = True  # uploads taken by another worker must be seen here
    app = create_app(ctx)
    public_view(ctx)
    return app


def _context(program: str | None, teams: list[Path] | None, db: str | None,
             secure_cookies: bool) -> Any:
    from kaieval.errors import KaiError
    from kaieval.spec.load import load_dossiers, load_program
    from kaieval.store import Store
    from kaieval.web.context import WebContext
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
    return WebContext(store=store, program=prog, program_hash=phash, dossiers=dossiers,
                      secret=session_secret(), secure_cookies=secure_cookies)
