"""Switching a SQLite file to WAL when other connections may be doing the same.

Why: the first switch of a new file to write-ahead logging takes an exclusive lock, and
when two connections race for it SQLite does not wait (each holds the shared lock the
other needs, so the busy handler is skipped to avoid a deadlock): one of them gets
"database is locked" at once, whatever its timeout. Two benchmark jobs of ``kai stage
measure --jobs 2`` opening a fresh request cache hit this (4 trials in 30 with four
processes). Once the file is in WAL the pragma takes no such lock, so a short retry
settles it.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Any

WAL_WAIT_S = 30.0
"""How long to keep retrying the switch (the same as the request cache's busy timeout)."""


def enable_wal(conn: Any, *, wait_s: float = WAL_WAIT_S) -> None:
    """``PRAGMA journal_mode=WAL`` on a DB-API SQLite connection, retried while another
    connection is switching the same file; other errors, and a lock that outlasts
    ``wait_s``, are raised as they are."""
    pause, end = 0.005, time.monotonic() + wait_s
    while True:
        try:
            conn.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            text = str(exc).lower()
            if ("locked" not in text and "busy" not in text) or time.monotonic() >= end:
                raise
        time.sleep(pause)
        pause = min(2 * pause, 0.25)
