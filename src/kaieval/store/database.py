"""Database URLs, engines and schema migration for the store.

Why a module of its own: the rules for *which* database (argument, then
``KAI_DATABASE_URL``, then ``kaieval.sqlite`` in the working directory), how a
URL is shown to a user (password masked) and how the schema is brought to the
newest Alembic revision are shared by the store, the CLI and the web app, and
none of them should need an ``alembic.ini`` in the working directory.
"""

from __future__ import annotations

import functools
import os
import time
from pathlib import Path
from typing import Any

import sqlalchemy.exc as sa_exc
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import URL, Connection, Engine, create_engine, event, make_url, text

from kaieval.errors import KaiError
from kaieval.sqlite_wal import enable_wal

ENV_VAR = "KAI_DATABASE_URL"
DEFAULT_URL = "sqlite:///kaieval.sqlite"
_ALEMBIC_DIR = Path(__file__).resolve().parent / "alembic"
_PG_MIGRATION_LOCK = 0x6B61_6576  # "kaev": advisory lock id serialising migrations
_PG_CONNECT_TIMEOUT_S = 10
_PG_POOL = 20
PG_PING_IDLE_S = 10.0
"""A pooled PostgreSQL connection idle longer than this is pinged before use."""
"""Pooled PostgreSQL connections kept open, and as many more opened when needed."""
_SQLITE_BUSY_TIMEOUT_S = 30.0
SQLITE_BEGIN_OPTION = "kai_sqlite_begin"
"""Execution option: ``"DEFERRED"`` for read-only work, so reads don't queue behind writers."""


def resolve_url(url: str | None) -> str:
    """The URL to use: the argument, else ``$KAI_DATABASE_URL``, else a SQLite file in cwd."""
    if url:
        return url
    return os.environ.get(ENV_VAR) or DEFAULT_URL


def parse_url(url: str) -> URL:
    """Parse ``url``; plain ``postgresql://``/``postgres://`` get the psycopg 3 driver.

    SQLAlchemy's default PostgreSQL driver is psycopg2, which kaieval does not
    depend on, so a URL copied from ``psql`` or a hosting dashboard would fail
    with a confusing missing-module error without this rewrite.
    """
    try:
        parsed = make_url(url)
    except sa_exc.ArgumentError:
        raise KaiError("not a valid database URL (expected e.g. sqlite:///file.sqlite or "
                       "postgresql://user:pw@host/db)", where=f"database {masked(url)}") from None
    if parsed.drivername in ("postgresql", "postgres"):
        parsed = parsed.set(drivername="postgresql+psycopg")
    return parsed


def masked(url: str | URL) -> str:
    """``url`` as it may be shown to a user: any password replaced by ``***``."""
    if isinstance(url, URL):
        return url.render_as_string(hide_password=True)
    try:
        return make_url(url).render_as_string(hide_password=True)
    except sa_exc.ArgumentError:
        # Unparseable: hide anything between "user:" and "@" to be safe.
        head, sep, tail = url.rpartition("@")
        if not sep or ":" not in head.partition("://")[2]:
            return url
        scheme, _, cred = head.partition("://")
        return f"{scheme}://{cred.partition(':')[0]}:***@{tail}"


def one_line(exc: BaseException) -> str:
    """The first meaningful line of a driver error (psycopg messages span several)."""
    inner = getattr(exc, "orig", None) or exc
    lines = [ln.strip() for ln in str(inner).splitlines() if ln.strip()]
    return lines[0] if lines else type(inner).__name__


def db_error(exc: BaseException, shown_url: str, doing: str) -> KaiError:
    """Wrap a SQLAlchemy/driver error as a one-line ``KaiError`` naming the database."""
    return KaiError(f"{doing} failed: {one_line(exc)}", where=f"database {shown_url}")


def create_store_engine(url: URL) -> Engine:
    """An engine tuned per backend; raises ``KaiError`` for an unknown driver.

    SQLite: Python's sqlite3 module opens transactions lazily and never for DDL,
    which would make a batch or a migration only partly atomic, and two writers
    could both read the same audit head. We take over transaction control and
    start every transaction with ``BEGIN IMMEDIATE`` (the database write lock),
    so batches are all-or-nothing and writers queue up instead of racing.
    Read-only sessions ask for ``BEGIN DEFERRED`` via ``SQLITE_BEGIN_OPTION``:
    still one consistent snapshot, but no wait for a running writer.

    A SQLite file is put in WAL mode (write-ahead log, ``<file>-wal`` beside it while in
    use) with ``synchronous=FULL``. WAL: readers never wait for a writer, nor a writer
    for readers, which is what a web server with many readers needs; a commit appends to
    the log instead of rewriting pages through a rollback journal. ``FULL``, not the
    usual WAL pairing ``NORMAL``: the store promises that nothing acknowledged is lost,
    and only ``FULL`` syncs the log on every commit (one fsync per commit; ``NORMAL``
    may drop the last commits on a power cut). The mode is stored in the file, so every
    connection -- another process, the ``sqlite3`` shell -- sees it. While a store is open,
    recent commits may be only in the ``-wal`` file: copy a live store with SQLite's
    backup (``sqlite3 kaieval.sqlite ".backup copy.sqlite"``), not ``cp``; when the last
    connection closes (``Store.close``, the end of a ``kai`` command) SQLite folds the log
    back into the file and removes it, so a closed store is one file again.
    """
    kwargs: dict[str, Any] = {"future": True}
    if url.get_backend_name() == "postgresql":
        kwargs["connect_args"] = {"connect_timeout": _PG_CONNECT_TIMEOUT_S}
        # SQLAlchemy's default pool (5 + 10 overflow) made most of the web server's 40
        # request threads wait for a connection under load: the submission p95 went from
        # 716 to 505 ms with 20 + 20 (docs/performance.md). A server with --workers N may
        # open up to 40 N connections: PostgreSQL's max_connections must allow it.
        kwargs["pool_size"], kwargs["max_overflow"] = _PG_POOL, _PG_POOL
    elif url.get_backend_name() == "sqlite":
        kwargs["connect_args"] = {"timeout": _SQLITE_BUSY_TIMEOUT_S}
    try:
        engine = create_engine(url, **kwargs)
    except (sa_exc.ArgumentError, sa_exc.NoSuchModuleError, ImportError) as exc:
        raise KaiError(f"unsupported database driver: {one_line(exc)}",
                       where=f"database {masked(url)}") from None
    if engine.dialect.name == "sqlite":
        _sqlite_explicit_transactions(engine)
    elif engine.dialect.name == "postgresql":
        _ping_when_idle(engine)
    return engine


def _ping_when_idle(engine: Engine) -> None:
    """Check a pooled connection before use only if it sat idle for ``PG_PING_IDLE_S``.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: a round trip before each of
    the four or five short transactions of a web request, on the same two cores as the
    request (docs/performance.md). A connection used a moment ago is alive unless the
    server went down in that moment -- then the request fails with a one-line database
    error and SQLAlchemy drops the pool, so the next request reconnects. A connection
    that sat longer (a restart, a firewall's idle cut) is pinged, and replaced if dead.
    """
    @event.listens_for(engine, "checkin")
    def _checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["kai_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        since = record.info.get("kai_idle_since")
        if since is None or time.monotonic() - since < PG_PING_IDLE_S:
            return
        try:
            alive = engine.dialect.do_ping(dbapi_connection)
        except Exception:
            alive = False
        if not alive:
            raise sa_exc.DisconnectionError("pooled connection is no longer usable")


def _sqlite_explicit_transactions(engine: Engine) -> None:
    in_memory = engine.url.database in (None, "", ":memory:")

    @event.listens_for(engine, "connect")
    def _connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves
        if not in_memory:
            enable_wal(dbapi_connection)  # retried: processes may open a new store at once
        dbapi_connection.execute("PRAGMA synchronous=FULL")

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        mode = conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "IMMEDIATE")
        conn.exec_driver_sql(f"BEGIN {'DEFERRED' if mode == 'DEFERRED' else 'IMMEDIATE'}")


def alembic_config(connection: Connection | None = None) -> Config:
    """Alembic configuration pointing at the migrations shipped inside the package."""
    cfg = Config()
    cfg.set_main_option("script_location", str(_ALEMBIC_DIR))
    if connection is not None:
        cfg.attributes["connection"] = connection
    return cfg


@functools.cache
def _script_heads() -> tuple[str, ...]:
    return tuple(ScriptDirectory.from_config(alembic_config()).get_heads())


def head_revision() -> str:
    """The newest schema revision this code knows (``0001``, ...)."""
    heads = _script_heads()
    return heads[0] if len(heads) == 1 else ",".join(heads)


def _known_revision(script: ScriptDirectory, rev: str) -> bool:
    try:
        return script.get_revision(rev) is not None
    except Exception:  # alembic raises ResolutionError/CommandError for unknown ids
        return False


def migrate(engine: Engine, shown_url: str) -> bool:
    """Bring the schema to the newest revision; True if anything was applied.

    Runs in one transaction under a lock (PostgreSQL advisory lock, SQLite write
    lock), so concurrent first uses of a fresh database don't race to create the
    same tables, and a failed migration leaves the previous schema intact.
    """
    try:
        # Fast path without the write lock: an up-to-date schema is the common case,
        # and a read-only command must not queue behind a long-running writer.
        with engine.connect().execution_options(**{SQLITE_BEGIN_OPTION: "DEFERRED"}) as conn, \
                conn.begin():
            if set(MigrationContext.configure(conn).get_current_heads()) == set(_script_heads()):
                return False
        with engine.begin() as conn:
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_MIGRATION_LOCK})
            current = set(MigrationContext.configure(conn).get_current_heads())
            known = set(_script_heads())
            if current == known:
                return False
            script = ScriptDirectory.from_config(alembic_config())
            unknown = [rev for rev in current if not _known_revision(script, rev)]
            if unknown:
                raise KaiError(f"schema revision {', '.join(sorted(unknown))} is newer than this "
                               "kaieval knows; upgrade kaieval", where=f"database {shown_url}")
            command.upgrade(alembic_config(conn), "head")
            return True
    except KaiError:
        raise
    except sa_exc.SQLAlchemyError as exc:
        raise db_error(exc, shown_url, "opening the store") from None
    except Exception as exc:  # alembic raises its own types for broken revision chains
        if type(exc).__module__.startswith("alembic"):
            raise KaiError(f"schema migration failed: {one_line(exc)}",
                           where=f"database {shown_url}") from None
        raise
