"""The store: typed result records and stage outcomes in SQLite or PostgreSQL, audited.

Why it looks like this:

* One class, a handful of verbs (``put``, ``records``, ``delete``,
  ``put_stage_result``, ``stage_result``, ``audit_verify``) so the CLI, the web
  app and the engines share exactly one write path -- the audited one.
* A batch is one transaction: a stage rerun that fails halfway leaves the store
  as it was, never a mix of old and new numbers.
* Writes are keyed by the record's natural key and compared by content hash, so
  rerunning a stage is idempotent: nothing changes and nothing is logged.
* The schema is migrated lazily on first use, so a fresh database just works.
"""

from __future__ import annotations

import collections
import contextlib
import datetime as dt
import json
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, TypeVar

import sqlalchemy.exc as sa_exc
from sqlalchemy import (
    Connection,
    Engine,
    bindparam,
    delete,
    func,
    insert,
    or_,
    select,
    update,
)
from sqlalchemy.orm import Session

from kaieval.errors import KaiError
from kaieval.hashing import canonical_json, sha256_bytes, sha256_json
from kaieval.records import ArenaVotes, Record, Retraction
from kaieval.spec.program import Source
from kaieval.store import log
from kaieval.store.chain import NEW_HEAD, Chain, Job, Ticket, WriteQueue
from kaieval.store.checkpoint import Checkpoint, KeyFolder, Signer, log_id, now_utc, resolve_key_dir
from kaieval.store.database import (
    SQLITE_BEGIN_OPTION,
    create_store_engine,
    db_error,
    masked,
    migrate,
    parse_url,
    resolve_url,
)
from kaieval.store.log import AuditEntry
from kaieval.store.models import (
    AuditHead,
    AuditRow,
    LoginAttempt,
    ObjectRow,
    ResultHistoryRow,
    ResultRow,
    StageResultRow,
)
from kaieval.store.rows import (
    EncodedRecord,
    as_utc,
    check_result_row,
    check_stage_row,
    decode_record,
    encode_record,
    encode_stage_payload,
    identify,
    stage_key,
)
from kaieval.version import code_version

_T = TypeVar("_T")
_TABLES = AuditHead.metadata.tables  # Core tables, for statements that skip the ORM
_HEAD = _TABLES[AuditHead.__tablename__]
_AUDIT = _TABLES[AuditRow.__tablename__]
_OBJECTS = _TABLES[ObjectRow.__tablename__]
_RESULTS = _TABLES[ResultRow.__tablename__]
_ATTEMPTS = _TABLES[LoginAttempt.__tablename__]
_PG_LOGIN_LOCK = 0x6B61_6C67  # "kalg": advisory lock id serialising login counts
_NO_LOCK = contextlib.nullcontext()
_READ_OPTIONS: dict[str, dict[str, Any]] = {
    "postgresql": {"isolation_level": "REPEATABLE READ"},
    "sqlite": {SQLITE_BEGIN_OPTION: "DEFERRED"},
}
_ONE_STATEMENT = {"isolation_level": "AUTOCOMMIT"}
_IN_CHUNK = 500  # keys per IN (...) query: well under every backend's parameter limit


@dataclass(frozen=True)
class PutSummary:
    """What one ``Store.put`` batch did."""

    inserted: int = 0
    replaced: int = 0
    unchanged: int = 0

    @property
    def changed(self) -> int:
        return self.inserted + self.replaced


class Superseding(KaiError):
    """``put(replace=False)`` found stored records that the batch would change.

    ``records`` lists ``(batch index, natural key)`` so a caller can name the
    file line of each; nothing was written.
    """

    def __init__(self, records: list[tuple[int, str]]) -> None:
        self.records = records
        first = records[0][1]
        more = f" and {len(records) - 1} more" if len(records) > 1 else ""
        super().__init__(f"{first}{more}: already stored with different content; "
                         "supersede with --replace --reason")


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Unsigned(KaiError):
    """The write was committed but its signed checkpoint could not be appended."""


class _FifoLock:
    """A lock handed to its waiters in the order they came (``threading.Lock`` lets any
    waiter -- or the releasing thread again -- take it, so under load a few writers wait
    many turns while others pass: the long tail of the submission latency)."""

    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._held = False
        self._waiting: collections.deque[threading.Lock] = collections.deque()

    def __enter__(self) -> None:
        with self._guard:
            if not self._held:
                self._held = True
                return
            turn = threading.Lock()
            turn.acquire()
            self._waiting.append(turn)
        turn.acquire()  # released by the holder before us: the lock is ours now

    def __exit__(self, *_: object) -> None:
        with self._guard:
            if self._waiting:
                self._waiting.popleft().release()  # hand over, still held
            else:
                self._held = False


class Store:
    """Results store over a SQLAlchemy URL (SQLite file or PostgreSQL via psycopg 3).

    ``url=None`` means ``$KAI_DATABASE_URL``, else ``sqlite:///kaieval.sqlite`` in
    the working directory. Nothing connects until the first call; that call
    migrates the schema to the newest revision.

    ``key_dir`` (else ``$KAI_KEY_DIR``, else ``~/.config/kaieval/keys``): if it holds
    a signing key, every write that adds audit entries also appends a signed
    checkpoint of the new head there (see :mod:`kaieval.store.checkpoint`).
    """

    def __init__(self, url: str | None = None, key_dir: Path | str | None = None) -> None:
        raw = resolve_url(url)
        self._url = parse_url(raw)
        self.url = masked(self._url)
        """The database URL with any password masked: safe to print."""
        self.log_id = log_id(self._url)
        """Names this database in checkpoints (a hash of where it lives)."""
        self.keys = KeyFolder(resolve_key_dir(key_dir))
        """The key folder: signing key, public keys, the checkpoints written here."""
        self._engine: Engine | None = None
        self._migrated = False
        self._write_lock = _FifoLock()
        """Write transactions of this store queue here, in-process, before the database's
        own lock (see ``_session``)."""
        self._writes = WriteQueue()
        """``put`` and ``put_objects`` queue here to share transactions (group commit)."""
        self.stage_result_writes = 0
        """Stage results this object stored (changed ones): a cache of what is built from
        them sees this process's own writes at once, without asking the database."""

    # -- lifecycle ---------------------------------------------------------------------

    def migrate(self) -> bool:
        """Run Alembic ``upgrade head`` (idempotent); True if a migration was applied."""
        applied = migrate(self._get_engine(), self.url)
        self._migrated = True
        return applied

    def close(self) -> None:
        """Release pooled connections (the store reconnects if used again)."""
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None
            self._migrated = False

    def __enter__(self) -> Store:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Store({self.url!r})"

    def _get_engine(self) -> Engine:
        if self._engine is None:
            self._engine = create_store_engine(self._url)
        return self._engine

    @contextmanager
    def _session(self, doing: str, *, write: bool) -> Iterator[Session]:
        """A session in one transaction; driver errors become a one-line ``KaiError``."""
        if not self._migrated:
            self.migrate()
        # a key that exists but cannot be used refuses the write before anything is written
        signer = self.keys.signer() if write else None
        engine = self._get_engine()
        # Writers are serialised anyway (one audit chain: SQLite's write lock, PostgreSQL's
        # lock on the chain head). Queueing this process's writers on our own lock first
        # hands the database lock on at once (SQLite's busy handler polls with sleeps of up
        # to 100 ms) and keeps waiting writers from holding pooled connections that readers
        # need; first come, first served (_FifoLock). Other processes queue on the database's.
        try:
            with self._write_lock if write else _NO_LOCK, \
                    Session(engine, expire_on_commit=False) as session, session.begin():
                if not write:
                    # One consistent snapshot for multi-table reads (audit_verify),
                    # without queueing behind writers.
                    session.connection(
                        execution_options=_READ_OPTIONS.get(engine.dialect.name, {}))
                yield session
        except KaiError:
            raise
        except sa_exc.SQLAlchemyError as exc:
            raise db_error(exc, self.url, doing) from None
        new_head = session.info.get(NEW_HEAD)
        if signer is not None and new_head is not None:
            self._append_checkpoint(signer, *new_head)

    def _append_checkpoint(self, signer: Signer, size: int, head: str) -> Checkpoint:
        """Sign ``(size, head)`` and append it to the key folder, after the commit.

        After, not inside: the file cannot take part in the database transaction, and
        a checkpoint of a head that then failed to commit would falsely accuse the
        log. The price is a window (docs/audit-log.md): a crash right here leaves the
        newest writes uncovered until the next write signs a later head.
        """
        checkpoint = signer.sign(self.log_id, size, head)
        try:
            self.keys.append(checkpoint)
        except KaiError as err:
            raise Unsigned(f"the write was stored, but its checkpoint was not: {err}") from None
        return checkpoint

    def _grouped(self, doing: str, actor: str, job: Job[_T]) -> _T:
        """Run a write ``job`` in a transaction it may share with writes queued beside it
        (group commit; see :mod:`kaieval.store.chain` for why and for the job's contract)."""
        return self._writes.run(job, actor, lambda group: self._run_group(doing, group))

    def _run_group(self, doing: str, group: list[Ticket[Any]]) -> None:
        """One transaction for ``group``; if the database fails it, each job alone."""
        try:
            with self._session(doing, write=True) as session:
                chain = Chain(session, group[0].actor)
                chain.deferred = True
                for ticket in group:
                    mark, chain.actor = chain.mark(), ticket.actor
                    try:
                        ticket.result = ticket.job(session, chain)
                    except KaiError as err:  # refused before writing: only this job
                        chain.reset(mark)
                        ticket.error = err
                chain.finish()
                session.flush()
        except Unsigned as err:  # committed: every write that was not refused is stored
            for ticket in group:
                ticket.error = ticket.error or err
        except KaiError:
            if len(group) == 1:
                raise
            for ticket in group:  # the transaction is gone: each write on its own
                ticket.result = ticket.error = None
                try:
                    self._run_group(doing, [ticket])
                except KaiError as err:
                    ticket.error = err
        for ticket in group:
            ticket.done = True

    def _read(self, doing: str, fn: Callable[[Session], _T]) -> _T:
        with self._session(doing, write=False) as session:
            return fn(session)

    def _read_core(self, doing: str, fn: Callable[[Connection], _T], *,
                   one_statement: bool = False) -> _T:
        """``fn`` on a plain connection in one read transaction: for the small, frequent
        reads of the web app, without the ORM session's per-call cost.

        ``one_statement``: ``fn`` runs a single SELECT, which sees one consistent snapshot
        by itself; on PostgreSQL it then runs in autocommit, without the transaction's
        isolation setting, BEGIN and ROLLBACK (about 0.3 ms of a 1 ms read, measured;
        reads like these are most of what a web request does)."""
        if not self._migrated:
            self.migrate()
        engine = self._get_engine()
        options = _ONE_STATEMENT if one_statement and engine.dialect.name == "postgresql" \
            else _READ_OPTIONS.get(engine.dialect.name, {})
        try:
            with engine.connect() as conn:
                conn = conn.execution_options(**options)
                with conn.begin():
                    return fn(conn)
        except KaiError:
            raise
        except sa_exc.SQLAlchemyError as exc:
            raise db_error(exc, self.url, doing) from None

    # -- records -----------------------------------------------------------------------

    def put(self, records: Iterable[Record], actor: str, *, replace: bool = True,
            reason: str = "", objects: Mapping[str, Mapping[str, Any] | None] | None = None,
            ) -> PutSummary:
        """Insert or replace ``records`` in one transaction, logging each change.

        Same natural key and same ``content_hash()`` as stored: unchanged (no
        write, no audit entry). A changed record supersedes the stored one, which
        moves to the history with ``reason`` in its audit entry; with
        ``replace=False`` any change refuses the whole batch (``Superseding``),
        which is what an import wants: adding never overwrites by accident.
        ``objects`` are application documents written in the same transaction (as
        ``put_objects`` writes them), so a record and the state that goes with it --
        a vote and its battle, a sheet and its draft -- are stored together or not at all.
        Any error leaves the store exactly as before.
        """
        _check_actor(actor)
        batch = list(records)
        for index, record in enumerate(batch):
            if isinstance(record, ArenaVotes):
                raise KaiError(f"record {index}: a votes bundle is stored one vote per record "
                               "(ArenaVotes.split())")
        note = reason.strip() or f"replaced by {actor}"
        encoded_objects = _encode_objects(objects or {})

        def job(session: Session, chain: Chain) -> PutSummary:
            # the chain locked the head first: no writer can slip in between
            unchanged = 0
            stored = _stored_hashes(session, [_key_or_none(r) for r in batch])
            seen: dict[str, str] = {}
            new_rows: list[dict[str, Any]] = []
            changed: list[tuple[int, EncodedRecord]] = []
            refused: list[tuple[int, str]] = []
            for index, record in enumerate(batch):
                key, content_hash = identify(record, index)
                if key in seen:
                    if seen[key] != content_hash:
                        raise KaiError(f"record {index} ({key}): the batch holds two different "
                                       "records with this key")
                    unchanged += 1
                    continue
                seen[key] = content_hash
                old = stored.get(key)
                if old is not None and old[1] == content_hash:
                    unchanged += 1
                    continue
                if old is not None and not replace:
                    refused.append((index, key))
                    continue
                enc = encode_record(record, index)
                if old is None:
                    new_rows.append({"natural_key": key, **_columns(enc)})
                    chain.append(log.ACTION_INSERT, log.ENTITY_RESULT, key, enc.payload_hash)
                else:
                    changed.append((old[0], enc))
            if refused:
                raise Superseding(refused)
            history: list[dict[str, Any]] = []
            old_rows = _rows_by_id(session, [row_id for row_id, _ in changed])
            for row_id, enc in changed:
                seq = chain.append(log.ACTION_REPLACE, log.ENTITY_RESULT, enc.natural_key,
                                   enc.payload_hash, note)
                history.append(_history(old_rows[row_id], seq))
            _apply_objects(session, chain, encoded_objects, (), "")
            # Bulk statements (one executemany each) inside the same transaction: a
            # failure in any of them rolls back the whole batch.
            chain.write()
            if new_rows:
                session.execute(insert(_RESULTS), new_rows)
            if changed:
                session.execute(update(ResultRow), [{"id": row_id, **_columns(enc)}
                                                    for row_id, enc in changed])
                session.execute(insert(ResultHistoryRow), history)
            return PutSummary(inserted=len(new_rows), replaced=len(changed),
                              unchanged=unchanged)

        return self._grouped("storing results", actor, job)

    def records(self, stage_id: str | None = None, kind: str | None = None,
                team_id: str | None = None, *, include_retracted: bool = False,
                ) -> list[Record]:
        """Stored records matching every given filter, typed, ordered by natural key.

        Retracted records are left out (that is what retracting means) unless
        ``include_retracted``; a retracted row is not even decoded, so a record
        that no longer reads (e.g. a NaN from before scores were checked) stops
        blocking a stage once it is retracted.
        """
        query = select(ResultRow).order_by(ResultRow.natural_key)
        if stage_id is not None:
            query = query.where(ResultRow.stage_id == stage_id)
        if kind is not None:
            query = query.where(ResultRow.kind == kind)
        if team_id is not None:
            query = query.where(ResultRow.team_id == team_id)

        def read(session: Session) -> tuple[list[ResultRow], set[str]]:
            rows = list(session.scalars(query))
            gone = set() if include_retracted else _retracted(session)
            return rows, gone

        rows, gone = self._read("reading results", read)
        return [decode_record(row) for row in rows if row.natural_key not in gone]

    def record(self, natural_key: str) -> Record | None:
        """The stored record with this natural key (retracted or not), or None."""
        query = select(_RESULTS.c.natural_key, _RESULTS.c.payload).where(
            _RESULTS.c.natural_key == natural_key)
        row = self._read_core("reading a result", lambda c: c.execute(query).one_or_none(),
                              one_statement=True)
        return None if row is None else decode_record(row)  # type: ignore[arg-type]

    def stored_keys(self, natural_keys: Iterable[str]) -> set[str]:
        """Which of ``natural_keys`` have a stored record (retracted or not): keys only,
        nothing decoded."""
        wanted = sorted(set(natural_keys))

        def read(conn: Connection) -> set[str]:
            found: set[str] = set()
            for start in range(0, len(wanted), _IN_CHUNK):
                found.update(conn.scalars(select(_RESULTS.c.natural_key).where(
                    _RESULTS.c.natural_key.in_(wanted[start:start + _IN_CHUNK]))))
            return found

        return self._read_core("reading results", read, one_statement=len(wanted) <= _IN_CHUNK
                               ) if wanted else set()

    def delete(self, natural_key: str, actor: str, reason: str = "") -> bool:
        """Delete one record (audited, kept in the history); False if no record has that key."""
        _check_actor(actor)
        with self._session("deleting a result", write=True) as session:
            chain = Chain(session, actor)  # lock before reading, as in put()
            row = session.scalars(select(ResultRow).where(ResultRow.natural_key == natural_key)
                                  ).one_or_none()
            if row is None:
                return False
            payload_hash, _ = check_result_row(row)
            seq = chain.append(log.ACTION_DELETE, log.ENTITY_RESULT, natural_key,
                               payload_hash or "", reason.strip() or f"deleted by {actor}")
            chain.write()
            session.execute(insert(ResultHistoryRow), [_history(row, seq)])
            session.delete(row)
        return True

    def retract(self, natural_key: str, actor: str, reason: str) -> Retraction:
        """Take one stored record out of scoring (audited; ``restore`` undoes it)."""
        _check_actor(actor)
        if not reason.strip():
            raise KaiError("a retraction needs a reason (--reason)")
        row = self._row(natural_key)
        if row.kind == "retraction":
            raise KaiError("a retraction is undone with `kai records restore`, not retracted",
                           where=f"record {natural_key!r}")
        retraction = Retraction(stage_id=row.stage_id, team_id=row.team_id,
                                source=Source(row.source), target=natural_key,
                                reason=reason.strip())
        if self._has(retraction.natural_key()):
            raise KaiError("already retracted", where=f"record {natural_key!r}")
        self.put([retraction], actor, replace=False)
        return retraction

    def restore(self, natural_key: str, actor: str, reason: str) -> None:
        """Undo a retraction: the record counts again (audited, with the reason)."""
        if not reason.strip():
            raise KaiError("restoring needs a reason (--reason)")
        self._row(natural_key)
        if not self.delete(f"retraction/{natural_key}", actor, reason):
            raise KaiError("is not retracted", where=f"record {natural_key!r}")

    def history(self, natural_key: str) -> list[tuple[AuditEntry, str | None]]:
        """Every audit entry of a record with the payload of that version, oldest first.

        The payload is the stored one for the newest version and the history
        row's for the versions a replace or delete superseded (None when the
        version predates the history table).
        """
        def read(session: Session) -> list[tuple[AuditEntry, str | None]]:
            entries = [_entry(r) for r in session.scalars(
                select(AuditRow).where(AuditRow.entity == log.ENTITY_RESULT,
                                       AuditRow.entity_key == natural_key)
                .order_by(AuditRow.seq))]
            old = {h.superseded_seq: h.payload for h in session.scalars(
                select(ResultHistoryRow).where(ResultHistoryRow.natural_key == natural_key))}
            current = session.scalars(select(ResultRow.payload).where(
                ResultRow.natural_key == natural_key)).one_or_none()
            out: list[tuple[AuditEntry, str | None]] = []
            for i, entry in enumerate(entries):
                nxt = entries[i + 1].seq if i + 1 < len(entries) else None
                if entry.action == log.ACTION_DELETE:
                    out.append((entry, None))
                elif nxt is None:
                    out.append((entry, current))
                else:
                    out.append((entry, old.get(nxt)))
            return out

        found = self._read("reading a record's history", read)
        if not found:
            raise KaiError("no such record (see `kai records list`)",
                           where=f"record {natural_key!r}")
        return found

    def _row(self, natural_key: str) -> ResultRow:
        query = select(ResultRow).where(ResultRow.natural_key == natural_key)
        row = self._read("reading a result", lambda s: s.scalars(query).one_or_none())
        if row is None:
            raise KaiError("no such record (see `kai records list`)",
                           where=f"record {natural_key!r}")
        return row

    def _has(self, natural_key: str) -> bool:
        query = select(ResultRow.id).where(ResultRow.natural_key == natural_key)
        return self._read("reading a result",
                          lambda s: s.scalars(query).one_or_none()) is not None

    # -- application objects -------------------------------------------------------------

    def put_objects(self, changes: Mapping[str, Mapping[str, Any] | None], actor: str, *,
                    create_only: Collection[str] = (), reason: str = "") -> int:
        """Write application documents in one transaction; a ``None`` value deletes.

        Keys look like ``kind/...`` (``user/kim``, ``draft/stage1/experts/lg/kim``).
        A key in ``create_only`` must not exist yet (``KaiError`` otherwise, nothing
        written): how a one-time action -- creating an account -- is made race-free.
        Unchanged documents write nothing. Returns the number of changes logged.
        """
        _check_actor(actor)
        encoded = _encode_objects(changes)

        def job(session: Session, chain: Chain) -> int:
            changed = _apply_objects(session, chain, encoded, create_only, reason)
            chain.write()
            return changed

        return self._grouped("storing application state", actor, job)

    def get_object(self, key: str) -> dict[str, Any] | None:
        """The document stored under ``key``, or None."""
        query = select(ObjectRow.payload).where(ObjectRow.key == key)
        text = self._read_core("reading application state",
                               lambda c: c.scalars(query).one_or_none(), one_statement=True)
        return None if text is None else _object_payload(key, text)

    def get_objects(self, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
        """The documents stored under ``keys`` (those that exist), by key: one query."""
        wanted = sorted(set(keys))

        def read(conn: Connection) -> list[tuple[str, str]]:
            rows: list[tuple[str, str]] = []
            for start in range(0, len(wanted), _IN_CHUNK):
                rows.extend(conn.execute(select(ObjectRow.key, ObjectRow.payload).where(
                    ObjectRow.key.in_(wanted[start:start + _IN_CHUNK]))))
            return rows

        rows = self._read_core("reading application state", read,
                               one_statement=len(wanted) <= _IN_CHUNK) if wanted else []
        return {k: _object_payload(k, text) for k, text in rows}

    def objects(self, prefix: str) -> dict[str, dict[str, Any]]:
        """Every document whose key starts with ``prefix`` (e.g. ``"user/"``), by key."""
        kind = prefix.split("/", 1)[0]
        query = (select(ObjectRow.key, ObjectRow.payload).where(ObjectRow.kind == kind)
                 .order_by(ObjectRow.key))
        if len(prefix) > len(kind) + 1:  # narrow in the database (exact, case-sensitive)
            query = query.where(func.substr(ObjectRow.key, 1, len(prefix)) == prefix)
        rows = self._read_core("reading application state",
                               lambda c: [(k, p) for k, p in c.execute(query)],
                               one_statement=True)
        return {k: _object_payload(k, text) for k, text in rows if k.startswith(prefix)}

    def objects_stamp(self, *prefixes: str) -> tuple[int, str]:
        """``(how many, newest update time)`` of the documents under ``prefixes``: a cheap
        key for caching what is built from them. Adding, replacing or deleting any of them
        changes it (a write stamps its documents with its own, later time; a deletion
        lowers the count), without reading a payload."""
        conds = [(_OBJECTS.c.kind == p.split("/", 1)[0])
                 & (func.substr(_OBJECTS.c.key, 1, len(p)) == p) for p in prefixes]
        query = select(func.count(), func.max(_OBJECTS.c.updated_at)).where(or_(*conds))
        count, newest = self._read_core("reading application state",
                                        lambda c: c.execute(query).one(), one_statement=True)
        return int(count), str(newest or "")

    # -- login attempts (not audited) ---------------------------------------------------

    def count_attempt(self, keys: Sequence[str], limit: int, window_s: float,
                      now: float | None = None) -> bool:
        """Count one attempt against each key that has fewer than ``limit`` in the last
        ``window_s`` seconds; True if every key had (a moving window, as ``limits`` counts).

        In the database, so every server process shares the counts; one transaction under
        a lock (SQLite's write lock, a PostgreSQL advisory lock), so two processes cannot
        both take the last attempt. Attempts older than the window are deleted here.
        """
        at = time.time() if now is None else now
        with self._session("counting a login attempt", write=True) as session:
            if session.get_bind().dialect.name == "postgresql":
                session.execute(select(func.pg_advisory_xact_lock(_PG_LOGIN_LOCK)))
            session.execute(delete(_ATTEMPTS).where(_ATTEMPTS.c.at <= at - window_s))
            counts: dict[str, int] = {k: n for k, n in session.execute(
                select(_ATTEMPTS.c.key, func.count()).where(_ATTEMPTS.c.key.in_(set(keys)))
                .group_by(_ATTEMPTS.c.key))}
            allowed = [k for k in keys if counts.get(k, 0) < limit]
            if allowed:
                session.execute(insert(_ATTEMPTS), [{"key": k, "at": at} for k in allowed])
        return len(allowed) == len(keys)

    # -- stage results -------------------------------------------------------------------

    def put_stage_result(self, stage_id: str, run_label: str, payload: dict[str, Any],
                         input_hash: str, actor: str) -> bool:
        """Store a stage's computed outcome; True if it changed (and was logged).

        Unchanged means same payload and same ``input_hash``; a newer code
        version alone does not count as a change.
        """
        _check_actor(actor)
        if "/" in run_label or not run_label:
            raise KaiError(f"run label {run_label!r} must be non-empty and contain no '/'")
        version = code_version()
        text, change_hash, audit_hash = encode_stage_payload(payload, input_hash, version)
        with self._session("storing a stage result", write=True) as session:
            chain = Chain(session, actor)
            row = session.scalars(select(StageResultRow).where(
                StageResultRow.stage_id == stage_id, StageResultRow.run_label == run_label)
            ).one_or_none()
            if row is not None:
                if _stage_change_hash(row) == change_hash:
                    return False
                action = log.ACTION_REPLACE
            else:
                row = StageResultRow(stage_id=stage_id, run_label=run_label)
                session.add(row)
                action = log.ACTION_INSERT
            row.payload, row.input_hash, row.code_version = text, input_hash, version
            row.created_at = _utcnow()
            chain.append(action, log.ENTITY_STAGE_RESULT, stage_key(stage_id, run_label),
                         audit_hash)
            chain.write()
        self.stage_result_writes += 1
        return True

    def stage_result_stamps(self) -> tuple[tuple[str, str, str, str], ...]:
        """``(stage, run label, input hash, stored at)`` of every stage result: a cheap key
        that changes whenever any stored stage result does (for caching what is built
        from them, e.g. the public leaderboard)."""
        query = select(StageResultRow.stage_id, StageResultRow.run_label,
                       StageResultRow.input_hash, StageResultRow.created_at,
                       ).order_by(StageResultRow.stage_id, StageResultRow.run_label)
        rows = self._read_core("reading stage results", lambda c: list(c.execute(query)),
                               one_statement=True)
        return tuple((a, b, c, as_utc(d).isoformat()) for a, b, c, d in rows)

    def stage_result(self, stage_id: str, run_label: str = "main") -> dict[str, Any] | None:
        """The stored payload of a stage run, or None if there is none."""
        query = select(StageResultRow.payload).where(StageResultRow.stage_id == stage_id,
                                                     StageResultRow.run_label == run_label)
        text = self._read_core("reading a stage result",
                               lambda c: c.scalars(query).one_or_none(), one_statement=True)
        if text is None:
            return None
        try:
            loaded = json.loads(text)
        except ValueError:
            raise KaiError("stored payload is not valid JSON",
                           where=f"stage_results {stage_key(stage_id, run_label)!r}") from None
        if not isinstance(loaded, dict):
            raise KaiError("stored payload is not a JSON object",
                           where=f"stage_results {stage_key(stage_id, run_label)!r}")
        return loaded

    # -- audit -------------------------------------------------------------------------

    def audit_entries(self, limit: int | None = None) -> list[AuditEntry]:
        """The newest ``limit`` audit entries (all if None), oldest first."""
        query = select(AuditRow).order_by(AuditRow.seq.desc())
        if limit is not None:
            query = query.limit(limit)
        rows = self._read("reading the audit log", lambda s: list(s.scalars(query)))
        return [_entry(row) for row in reversed(rows)]

    def audit_head(self) -> tuple[int, str]:
        """``(seq, hash)`` of the newest entry: publish it to anchor the log externally."""
        head = self._read("reading the audit head", lambda s: s.get(AuditHead, 1))
        if head is None:
            raise KaiError("audit head row is missing", where=f"database {self.url}")
        return head.seq, head.hash

    def audit_hashes(self, seqs: Iterable[int]) -> tuple[int, dict[int, str]]:
        """The newest entry's seq (0 if none) and the hash of each entry in ``seqs`` that exists.

        What checking a checkpoint ``(size, head)`` needs; one snapshot.
        """
        wanted = sorted(set(seqs))

        def read(session: Session) -> tuple[int, dict[int, str]]:
            last = session.scalar(select(func.max(AuditRow.seq))) or 0
            found: dict[int, str] = {}
            for start in range(0, len(wanted), _IN_CHUNK):
                query = select(AuditRow.seq, AuditRow.hash).where(
                    AuditRow.seq.in_(wanted[start:start + _IN_CHUNK]))
                found.update((seq, hash_) for seq, hash_ in session.execute(query))
            return last, found

        return self._read("reading the audit log", read)

    def audit_checkpoint(self, *, require_key: bool = False) -> Checkpoint:
        """A checkpoint of the current head: signed and appended to the key folder if a
        signing key exists, else unsigned (``require_key``: no key is an error)."""
        signer = self.keys.signer()
        if signer is None and require_key:
            raise KaiError("no signing key: run `kai keys init`",
                           where=str(self.keys.private_path))
        size, head = self.audit_head()
        if signer is None:
            return Checkpoint(log=self.log_id, size=size, head=head, time=now_utc(), key=None,
                              signature=None)
        return self._append_checkpoint(signer, size, head)

    def audit_verify(self) -> list[str]:
        """Human-readable integrity problems; an empty list means the log and data agree.

        Checks the chain (every entry's hash, links, no gaps, the head), then
        every results/stage_results row against the newest entry for its key.
        """
        return self._read("verifying the audit log", _verify)


_AUDIT_COLUMNS = (AuditRow.seq, AuditRow.at, AuditRow.actor, AuditRow.action, AuditRow.entity,
                  AuditRow.entity_key, AuditRow.content_hash, AuditRow.prev_hash, AuditRow.hash,
                  AuditRow.note)
_RESULT_COLUMNS = (ResultRow.natural_key, ResultRow.kind, ResultRow.stage_id, ResultRow.team_id,
                   ResultRow.source, ResultRow.payload, ResultRow.content_hash,
                   ResultRow.input_hashes, ResultRow.code_version, ResultRow.created_at)


def _verify(session: Session) -> list[str]:
    latest: dict[tuple[str, str], AuditEntry] = {}
    head_row = session.get(AuditHead, 1)
    head = (head_row.seq, head_row.hash) if head_row is not None else None
    # Core rows, not ORM objects: a store of 200k records spends seconds building them.
    entries = (AuditEntry(**r._mapping) for r in session.execute(
        select(*_AUDIT_COLUMNS).order_by(AuditRow.seq).execution_options(yield_per=2000)))
    superseded = log.Superseded()
    problems = log.verify_chain(superseded.tap(entries), head, latest)
    actual: dict[tuple[str, str], str] = {}
    for row in session.execute(select(*_RESULT_COLUMNS).execution_options(yield_per=2000)):
        entry = latest.get((log.ENTITY_RESULT, row.natural_key))
        payload_hash, row_problems = check_result_row(
            row, entry.content_hash if entry is not None else None)  # type: ignore[arg-type]
        problems.extend(row_problems)
        actual[(log.ENTITY_RESULT, row.natural_key)] = payload_hash or "unreadable"
    for okey, opayload in session.execute(select(ObjectRow.key, ObjectRow.payload)
                                          .execution_options(yield_per=2000)):
        actual[(log.ENTITY_OBJECT, okey)] = _object_hash(opayload)
    for srow in session.scalars(select(StageResultRow)):
        stage_hash, row_problems = check_stage_row(srow)
        problems.extend(row_problems)
        actual[(log.ENTITY_STAGE_RESULT, stage_key(srow.stage_id, srow.run_label))] = \
            stage_hash or "unreadable"
    problems.extend(log.verify_entities(latest, actual))
    history = ((h.superseded_seq, h.natural_key, _payload_hash(h.payload))
               for h in session.scalars(select(ResultHistoryRow).order_by(ResultHistoryRow.id)
                                        .execution_options(yield_per=1000)))
    problems.extend(log.verify_history(superseded.taken, history))
    return problems


def _encode_objects(changes: Mapping[str, Mapping[str, Any] | None],
                    ) -> dict[str, tuple[str, str] | None]:
    """``key -> (canonical JSON, its hash)`` or None (delete); bad keys are a ``KaiError``."""
    encoded: dict[str, tuple[str, str] | None] = {}
    for key, payload in changes.items():
        if not key or "/" not in key or len(key) > 512:
            raise KaiError(f"object key {key!r} must look like 'kind/name' (at most 512 "
                           "characters)")
        if payload is None:
            encoded[key] = None
            continue
        try:
            text = canonical_json(dict(payload)).decode()
        except (ValueError, TypeError) as exc:
            raise KaiError(f"object {key!r} cannot be serialised: {exc}") from None
        encoded[key] = (text, sha256_bytes(text.encode()))
    return encoded


def _apply_objects(session: Session, chain: Chain,
                   encoded: Mapping[str, tuple[str, str] | None],
                   create_only: Collection[str], reason: str) -> int:
    """Write encoded documents in the caller's transaction; returns the changes logged."""
    if not encoded:
        return 0
    wanted = sorted(encoded)
    rows: dict[str, tuple[int, str]] = {}  # key -> (id, stored payload)
    for start in range(0, len(wanted), _IN_CHUNK):
        rows.update((k, (i, p)) for k, i, p in session.execute(
            select(_OBJECTS.c.key, _OBJECTS.c.id, _OBJECTS.c.payload).where(
                _OBJECTS.c.key.in_(wanted[start:start + _IN_CHUNK]))))
    for key in create_only:
        if key in rows:
            raise KaiError("already exists", where=f"object {key!r}")
    gone: list[int] = []
    added: list[dict[str, Any]] = []
    replaced: list[dict[str, Any]] = []
    for key, enc in sorted(encoded.items()):
        row = rows.get(key)
        if enc is None:
            if row is not None:
                chain.append(log.ACTION_DELETE, log.ENTITY_OBJECT, key,
                             _object_hash(row[1]), reason.strip())
                gone.append(row[0])
            continue
        text, digest = enc
        if row is not None and _object_hash(row[1]) == digest:
            continue
        action = log.ACTION_INSERT if row is None else log.ACTION_REPLACE
        chain.append(action, log.ENTITY_OBJECT, key, digest, reason.strip())
        if row is None:
            added.append({"key": key, "kind": key.split("/", 1)[0], "payload": text,
                          "updated_at": chain.at})
        else:
            replaced.append({"row_id": row[0], "payload": text, "updated_at": chain.at})
    # plain Core statements (one executemany each), in the caller's transaction
    for start in range(0, len(gone), _IN_CHUNK):
        session.execute(delete(_OBJECTS).where(_OBJECTS.c.id.in_(gone[start:start + _IN_CHUNK])))
    if added:
        session.execute(insert(_OBJECTS), added)
    if replaced:
        session.execute(update(_OBJECTS).where(_OBJECTS.c.id == bindparam("row_id")).values(
            payload=bindparam("payload"), updated_at=bindparam("updated_at")), replaced)
    return len(gone) + len(added) + len(replaced)


def _object_hash(text: str) -> str:
    """What the log records for an object: the hash of its canonical JSON."""
    try:
        return sha256_json(json.loads(text))
    except ValueError:
        return "unreadable"


def _object_payload(key: str, text: str) -> dict[str, Any]:
    try:
        obj = json.loads(text)
    except ValueError:
        raise KaiError("stored document is not valid JSON", where=f"object {key!r}") from None
    if not isinstance(obj, dict):
        raise KaiError("stored document is not a JSON object", where=f"object {key!r}")
    return obj


def _payload_hash(text: str) -> str:
    try:
        return sha256_json(json.loads(text))
    except ValueError:
        return "unreadable"


def _history(row: ResultRow, seq: int) -> dict[str, Any]:
    """The history row keeping ``row``'s current version, superseded by entry ``seq``."""
    return {"natural_key": row.natural_key, "kind": row.kind, "stage_id": row.stage_id,
            "team_id": row.team_id, "payload": row.payload, "superseded_seq": seq}


def _rows_by_id(session: Session, ids: list[int]) -> dict[int, ResultRow]:
    found: dict[int, ResultRow] = {}
    for start in range(0, len(ids), _IN_CHUNK):
        for row in session.scalars(select(ResultRow).where(
                ResultRow.id.in_(ids[start:start + _IN_CHUNK]))):
            found[row.id] = row
    return found


def _retracted(session: Session) -> set[str]:
    """Natural keys of the records a stored retraction takes out of scoring."""
    prefix = "retraction/"
    return {key[len(prefix):] for key in session.scalars(
        select(ResultRow.natural_key).where(ResultRow.kind == "retraction"))}


def _stage_change_hash(row: StageResultRow) -> str | None:
    try:
        old = json.loads(row.payload)
    except ValueError:
        return None  # damaged: any new payload counts as a change and repairs it
    return encode_stage_payload(old, row.input_hash, row.code_version)[1]


def _entry(row: AuditRow) -> AuditEntry:
    return AuditEntry(seq=row.seq, at=row.at, actor=row.actor, action=row.action,
                      entity=row.entity, entity_key=row.entity_key,
                      content_hash=row.content_hash, prev_hash=row.prev_hash, hash=row.hash,
                      note=row.note or "")


def _columns(enc: EncodedRecord) -> dict[str, Any]:
    """Column values of a results row (besides its key and id)."""
    rec = enc.record
    return {"kind": str(getattr(rec, "kind", "")), "stage_id": rec.stage_id,
            "team_id": rec.team_id, "source": str(rec.source), "payload": enc.payload,
            "content_hash": enc.content_hash, "input_hashes": enc.input_hashes,
            "code_version": rec.code_version, "created_at": as_utc(rec.created_at)}


def _key_or_none(record: Record) -> str | None:
    try:
        return record.natural_key()
    except NotImplementedError:
        return None  # identify() reports it with its batch position


def _stored_hashes(session: Session, keys: list[str | None]) -> dict[str, tuple[int, str]]:
    """``natural_key -> (id, content_hash)`` of the stored rows among ``keys``.

    Only these two columns: deciding "unchanged" must not load every payload.
    """
    wanted = sorted({k for k in keys if k is not None})
    found: dict[str, tuple[int, str]] = {}
    for start in range(0, len(wanted), _IN_CHUNK):
        chunk = wanted[start:start + _IN_CHUNK]
        query = select(_RESULTS.c.natural_key, _RESULTS.c.id, _RESULTS.c.content_hash).where(
            _RESULTS.c.natural_key.in_(chunk))
        for key, row_id, content_hash in session.execute(query):
            found[key] = (row_id, content_hash)
    return found


def _check_actor(actor: str) -> None:
    if not actor or not actor.strip():
        raise KaiError("actor must name who is writing (e.g. a user or 'kai run')")
