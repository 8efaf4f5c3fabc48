"""Files in and out: the one atomic write, the one JSON Lines reader, and opening an
untrusted file only when it is a regular file.

Atomic: a temp file in the target's folder, flushed to disk, then ``os.replace``d
over the target, so readers see the old file or the new one, never half (the
rename is atomic on one filesystem on POSIX and Windows); the temp file is
removed if anything fails.

JSON Lines: one JSON object per line, blank lines skipped; a bad line is a
one-line :class:`KaiError` naming ``file:line``. Each row comes back with that
location, so a caller that validates it further can point at the same line.
Lines are split on line breaks only (a raw U+2028 inside a JSON string stays).

Untrusted files: a FIFO named ``model.safetensors`` would block a reader forever, and a
device file would never end. :func:`open_regular` opens without blocking, checks the
opened file (not the name, which could be swapped in between) and refuses anything but
a regular file, in one line.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from kaieval.errors import KaiError

JsonRow = tuple[str, dict[str, Any]]  # ("file:line", the line's object)


def open_regular(path: Path) -> io.BufferedReader:
    """``path`` opened for binary reading, if it is a regular file (symlinks followed).

    Opened with ``O_NONBLOCK`` so that a FIFO cannot hang the open, then checked with
    ``fstat`` on the opened descriptor; the flag is cleared again for normal reads.
    """
    where = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as err:
        raise KaiError(f"cannot read: {err.strerror or err}", where=where) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a folder" if stat.S_ISDIR(mode) else "not a regular file")
        raise KaiError(f"is {kind}, not a regular file: refused", where=where)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temp path beside ``path`` to write to; on a clean exit it replaces ``path``.

    For writers that want a file name (``safetensors.save_file``); text goes
    through :func:`atomic_write_text`.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8 with ``\\n`` line ends to ``path``: the old file or the new."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def read_jsonl(path: Path) -> list[JsonRow]:
    """Every object of a JSON Lines file, with its ``file:line``."""
    path = Path(path)
    try:
        with path.open(encoding="utf-8") as f:
            return _parse(f, str(path))
    except FileNotFoundError:
        raise KaiError("file not found", where=str(path)) from None
    except UnicodeDecodeError as e:
        raise KaiError(f"not UTF-8 ({e.reason} at byte {e.start})", where=str(path)) from None
    except OSError as e:
        raise KaiError(f"cannot read: {e.strerror or e}", where=str(path)) from None


def parse_jsonl(text: str, where: str) -> list[JsonRow]:
    """:func:`read_jsonl` for text already in memory (``where`` names its source)."""
    return _parse(io.StringIO(text), where)


def _parse(lines: Iterable[str], where: str) -> list[JsonRow]:
    rows: list[JsonRow] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise KaiError(f"not JSON: {e.msg} (column {e.colno})", where=f"{where}:{n}") from None
        if not isinstance(obj, dict):
            raise KaiError("expected a JSON object", where=f"{where}:{n}")
        rows.append((f"{where}:{n}", obj))
    return rows
