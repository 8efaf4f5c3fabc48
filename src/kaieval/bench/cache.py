"""Persistent request cache: one SQLite file, request -> response, committed as it goes.

The key is ``sha256(backend fingerprint, request type, request fields)`` and
deliberately *not* the task: two tasks that send the same prompt share the
answer, and re-scoring with a new metric costs no inference. The fingerprint
covers everything that can change an answer (weights, tokenizer, dtype, chat
template), so a changed model never hits a stale entry.

Answers are written with ``put_many`` after every backend batch and committed
at once (SQLite WAL), so a ``kill -9`` loses at most the batch in flight and a
rerun recomputes nothing that finished. Values are JSON, never pickle.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol

from kaieval.bench.api import (
    GenerationRequest,
    GenerationResponse,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
    Request,
    Response,
)
from kaieval.errors import KaiError
from kaieval.sqlite_wal import enable_wal

SCHEMA = "kaieval/request-cache/v1"


def request_key(fingerprint: str, request: Request) -> str:
    """Stable cache key of one request for one model configuration."""
    fields = dataclasses.asdict(request)
    blob = json.dumps([SCHEMA, fingerprint, type(request).__name__, fields],
                      sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


def encode_response(response: Response) -> str:
    return json.dumps({"type": type(response).__name__, **dataclasses.asdict(response)},
                      ensure_ascii=False, sort_keys=True)


def decode_response(text: str) -> Response:
    data: dict[str, Any] = json.loads(text)
    kind = data.pop("type", None)
    if kind == "LoglikelihoodResponse":
        return LoglikelihoodResponse(logprob=float(data["logprob"]), greedy=bool(data["greedy"]),
                                     n_tokens=int(data["n_tokens"]))
    if kind == "GenerationResponse":
        return GenerationResponse(text=str(data["text"]))
    raise ValueError(f"unknown cached response type {kind!r}")


def response_matches(request: Request, response: Response) -> bool:
    """A cached value must have the type its request expects (guards against corruption)."""
    if isinstance(request, LoglikelihoodRequest):
        return isinstance(response, LoglikelihoodResponse)
    return isinstance(request, GenerationRequest) and isinstance(response, GenerationResponse)


class ResponseCache(Protocol):
    """What the engine needs of a request cache: the SQLite file here, or the table in a
    shared database (``bench.cache_db``) that Ray workers on several machines share."""

    def get_many(self, keys: Sequence[str]) -> dict[str, Response]: ...

    def put_many(self, fingerprint: str, items: Iterable[tuple[str, Response]]) -> None: ...

    def close(self) -> None: ...


class RequestCache:
    """SQLite-backed map from request key to JSON response."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=30.0)
            enable_wal(self._db)  # retried: jobs may open a fresh cache at once
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("CREATE TABLE IF NOT EXISTS responses ("
                             "key TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, "
                             "value TEXT NOT NULL)")
            self._db.commit()
        except sqlite3.DatabaseError as exc:
            raise KaiError(f"cannot open request cache: {exc}", where=str(self.path)) from exc

    def get_many(self, keys: Sequence[str]) -> dict[str, Response]:
        """The cached responses among ``keys`` (unreadable rows count as misses)."""
        found: dict[str, Response] = {}
        for start in range(0, len(keys), 500):
            chunk = list(keys[start:start + 500])
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT key, value FROM responses WHERE key IN ({marks})", chunk).fetchall()
            for key, value in rows:
                try:
                    found[key] = decode_response(value)
                except (ValueError, KeyError, TypeError):
                    continue
        return found

    def put_many(self, fingerprint: str, items: Iterable[tuple[str, Response]]) -> None:
        """Store and commit at once: what returns from here survives a kill -9."""
        rows = [(k, fingerprint, encode_response(r)) for k, r in items]
        with self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO responses (key, fingerprint, value) VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM responses").fetchone()[0])

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> RequestCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def default_request_cache() -> Path:
    """``$KAI_CACHE_DIR/requests``, else ``$XDG_CACHE_HOME/kaieval/requests`` or
    ``~/.cache/kaieval/requests``: benchmark answers kept across runs and stages."""
    import os

    env = os.environ.get("KAI_CACHE_DIR")
    if env:
        return Path(env) / "requests"
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "kaieval" / "requests"
