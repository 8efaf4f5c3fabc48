"""A fresh SQLite file switched to WAL by several connections at once: nobody is refused."""

from __future__ import annotations

import multiprocessing as mp
import sqlite3
import threading
import time
from pathlib import Path

import pytest

from kaieval.sqlite_wal import enable_wal


def test_the_switch_waits_for_a_lock_held_elsewhere(tmp_path: Path) -> None:
    """A connection that does not wait (timeout 0) is refused at once by a held lock; the
    switch retries until the holder lets go."""
    path = tmp_path / "x.sqlite"
    holder = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False)
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(str(path), timeout=0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        other.execute("PRAGMA journal_mode=WAL")
    threading.Timer(0.3, lambda: holder.execute("COMMIT")).start()
    start = time.monotonic()
    enable_wal(other, wait_s=10)
    assert time.monotonic() - start >= 0.2
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    other.close()
    holder.close()


def test_a_lock_that_outlasts_the_wait_is_raised(tmp_path: Path) -> None:
    path = tmp_path / "x.sqlite"
    holder = sqlite3.connect(str(path), isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")
    other = sqlite3.connect(str(path), timeout=0)
    with pytest.raises(sqlite3.OperationalError, match="locked"):
        enable_wal(other, wait_s=0.2)
    holder.execute("COMMIT")
    holder.close()
    other.close()


def test_other_errors_are_not_retried(tmp_path: Path) -> None:
    conn = sqlite3.connect(str(tmp_path / "x.sqlite"))
    conn.close()
    with pytest.raises(sqlite3.ProgrammingError):
        enable_wal(conn, wait_s=10)


def _open_cache(path: str, start: float, out: mp.Queue) -> None:  # type: ignore[type-arg]
    from kaieval.bench.cache import RequestCache
    from kaieval.errors import KaiError

    while time.time() < start:
        pass
    try:
        RequestCache(Path(path)).close()
        out.put("")
    except KaiError as exc:
        out.put(str(exc))


def test_four_processes_open_one_fresh_request_cache(tmp_path: Path) -> None:
    """Before the retry, 4 trials in 30 refused one process ("database is locked")."""
    ctx = mp.get_context("fork")
    for trial in range(6):
        path = str(tmp_path / f"t{trial}" / "requests.sqlite")
        out = ctx.Queue()
        start = time.time() + 0.2
        procs = [ctx.Process(target=_open_cache, args=(path, start, out)) for _ in range(4)]
        for p in procs:
            p.start()
        got = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=60)
        assert got == [""] * 4, got
