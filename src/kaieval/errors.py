"""User-facing errors.

Every problem caused by input (a file, a field, an artifact) is raised as a
``KaiError`` whose message is one line naming *what* and *where*. The CLI turns
it into that line on stderr and exit code 2 -- never a traceback.
"""

from __future__ import annotations


class KaiError(Exception):
    """An input problem the user can fix; ``str(err)`` is a complete one-line message."""

    def __init__(self, message: str, *, where: str | None = None) -> None:
        self.where = where
        self.detail = message
        super().__init__(f"{where}: {message}" if where else message)


class KaiErrors(KaiError):
    """Several input problems found in one pass (``kai validate`` reports them all)."""

    def __init__(self, errors: list[KaiError]) -> None:
        self.errors = errors
        super().__init__("; ".join(str(e) for e in errors))
