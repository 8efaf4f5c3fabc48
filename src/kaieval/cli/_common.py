"""What every command module shares: the error contract, the ``--db`` option, stderr.

The contract: bad input (a ``KaiError``) is one line per problem on stderr, prefixed
``error:``, and exit code 2; Ctrl-C is exit 130. Wrap every command in
:func:`user_errors` (below ``@app.command``) to get it. Only Typer, Rich and
:mod:`kaieval.errors` are imported here, so importing the CLI stays fast.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console

from kaieval.errors import KaiError, KaiErrors

F = TypeVar("F", bound=Callable[..., Any])
Progress = Callable[[int, int, str], None]
"""A progress callback as engines take it: ``(done, total, label)``."""

err_console = Console(stderr=True, highlight=False, soft_wrap=True)

DbOpt = Annotated[str | None, typer.Option("--db", help="Database URL (default: "
                                            "$KAI_DATABASE_URL or sqlite:///kaieval.sqlite).")]


def _fail(lines: list[str]) -> None:
    for line in lines:
        err_console.print(f"error: {line}", markup=False)
    raise typer.Exit(2)


def user_errors(fn: F) -> F:
    """Turn input errors into one line each on stderr and exit code 2 (no traceback)."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except KaiErrors as e:
            _fail([str(x) for x in e.errors])
        except KaiError as e:
            _fail([str(e)])
        except KeyboardInterrupt:
            err_console.print("interrupted; nothing half-written was kept")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def optional_module(module: str, what: str) -> Any:
    """Import an engine module written separately; its absence is a one-line error, not a crash."""
    if importlib.util.find_spec(module) is None:
        raise KaiError(f"{what} is not available in this build (module {module} is missing)")
    return importlib.import_module(module)


def write_json_file(path: Path, text: str) -> None:
    """Write ``text`` atomically (a failure is a one-line error) and say so on stderr."""
    from kaieval.io import atomic_write_text

    try:
        atomic_write_text(path, text + "\n")
    except OSError as err:
        raise KaiError(f"cannot write: {err.strerror or err}", where=str(path)) from None
    err_console.print(f"wrote {path}", markup=False)


@contextmanager
def progress_bar(label: str) -> Iterator[Progress | None]:
    """A transient progress bar on stderr for an engine's ``progress`` callback.

    Yields ``None`` when stderr is not a terminal (pipes, CI, tests): pass nothing to the
    engine then, so logs stay clean.
    """
    if not err_console.is_terminal:
        yield None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.progress import Progress as Bar

    with Bar(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
             TimeElapsedColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=None)

        def update(done: int, total: int, text: str) -> None:
            bar.update(task, completed=done, total=total, description=text)

        yield update
