"""The request cache in a shared database: what Ray workers on several machines share.

The SQLite request cache (``bench.cache``) is a file on one machine; a worker on
another node cannot see it, so a job retried there would compute every answer
again. This is the same map (request key -> JSON response, the same keys and the
same encoding) as one table in the database the store lives in (PostgreSQL for a
cluster; a SQLite store works on one machine). It sits beside the store's tables,
not inside them: answers are a cache, not audited results, so they are not
logged or migrated.

Writes are idempotent: a key already present is left as it is (``ON CONFLICT DO
NOTHING``), so two workers answering the same request, or a retried job, never
fail and never duplicate a row. Every ``put_many`` commits at once, like the
SQLite cache: a worker killed mid-job loses at most the batch in flight.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import sqlalchemy.exc as sa_exc
from sqlalchemy import Column, Executable, MetaData, String, Table, Text, select
from sqlalchemy.dialects import postgresql, sqlite

from kaieval.bench.api import Response
from kaieval.bench.cache import decode_response, encode_response
from kaieval.errors import KaiError
from kaieval.store.database import create_store_engine, db_error, masked, parse_url

TABLE = "kai_request_cache"
_META = MetaData()
_CACHE = Table(TABLE, _META,
               Column("key", String(64), primary_key=True),
               Column("fingerprint", String(128), nullable=False),
               Column("value", Text, nullable=False))
_CHUNK = 500  # keys per IN (...) query


class DbRequestCache:
    """Request key -> response in table ``kai_request_cache`` of a database URL."""

    def __init__(self, url: str) -> None:
        self.shown = masked(url)
        parsed = parse_url(url)
        self._engine = create_store_engine(parsed)
        self._dialect = parsed.get_backend_name()
        try:
            _META.create_all(self._engine, checkfirst=True)
        except sa_exc.IntegrityError:
            pass  # another worker created it between the check and the CREATE
        except sa_exc.ProgrammingError as e:
            if "already exists" not in str(e):
                raise db_error(e, self.shown, "creating the request cache") from None
        except sa_exc.DBAPIError as e:
            raise db_error(e, self.shown, "creating the request cache") from None

    def get_many(self, keys: Sequence[str]) -> dict[str, Response]:
        """The cached responses among ``keys`` (unreadable rows count as misses)."""
        found: dict[str, Response] = {}
        try:
            with self._engine.connect() as conn:
                for start in range(0, len(keys), _CHUNK):
                    chunk = list(keys[start:start + _CHUNK])
                    rows = conn.execute(select(_CACHE.c.key, _CACHE.c.value)
                                        .where(_CACHE.c.key.in_(chunk))).all()
                    for key, value in rows:
                        try:
                            found[key] = decode_response(value)
                        except (ValueError, KeyError, TypeError):
                            continue
        except sa_exc.DBAPIError as e:
            raise db_error(e, self.shown, "reading the request cache") from None
        return found

    def put_many(self, fingerprint: str, items: Iterable[tuple[str, Response]]) -> None:
        """Store and commit at once; keys already present are kept (idempotent)."""
        rows = [{"key": k, "fingerprint": fingerprint, "value": encode_response(r)}
                for k, r in items]
        if not rows:
            return
        stmt: Executable
        if self._dialect == "postgresql":
            stmt = postgresql.insert(_CACHE).on_conflict_do_nothing(index_elements=["key"])
        elif self._dialect == "sqlite":
            stmt = sqlite.insert(_CACHE).on_conflict_do_nothing(index_elements=["key"])
        else:  # pragma: no cover - parse_url admits only these two
            raise KaiError(f"no request cache for database {self._dialect}",
                           where=f"database {self.shown}")
        try:
            with self._engine.begin() as conn:
                conn.execute(stmt, rows)
        except sa_exc.DBAPIError as e:
            raise db_error(e, self.shown, "writing the request cache") from None

    def __len__(self) -> int:
        with self._engine.connect() as conn:
            return len(conn.execute(select(_CACHE.c.key)).all())

    def close(self) -> None:
        self._engine.dispose()
