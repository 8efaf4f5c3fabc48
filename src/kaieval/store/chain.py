"""The audit chain inside a write transaction, and group commit of queued writers.

Every write extends one hash chain (``audit_log`` + its head row), so writers are
serialised: SQLite's write lock, PostgreSQL's row lock on the head. Serialised writers
each paid the whole fixed price of a transaction -- a pooled connection and its ping,
BEGIN, locking the head, updating it, and a COMMIT that waits for the log to reach the
disk -- while the rest queued. On PostgreSQL that fixed price was most of a web
submission (about 10 of 20 ms on this machine, more under load), and 40 request threads
queued behind it made the submission p95 miss its target (docs/performance.md).

Group commit (as databases do for their own log): writers that arrive while a write is
running queue up; when it ends, the first of them leads and runs *all* queued writes in
one transaction, one after another -- each sees the ones before it, exactly as if they
had committed in turn -- with one head lock, one chain of audit entries (each with its
own actor) written in one statement, and one COMMIT. Each writer gets its own outcome.

The contract that makes this safe without a savepoint per writer: a job refuses (raises
``KaiError``) only *before* its first statement that writes. Its audit entries are
dropped with it (``Chain.mark``/``reset``). A database error mid-group is different: the
transaction is gone, so the whole group is rolled back and every job in it is run again
alone, in its own transaction -- one bad write cannot fail its neighbours.
"""

from __future__ import annotations

import collections
import datetime as dt
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from sqlalchemy import insert, select, update
from sqlalchemy.orm import Session

from kaieval.errors import KaiError
from kaieval.store import log
from kaieval.store.models import AuditHead, AuditRow

_T = TypeVar("_T")
_TABLES = AuditHead.metadata.tables
_HEAD = _TABLES[AuditHead.__tablename__]
_AUDIT = _TABLES[AuditRow.__tablename__]
NEW_HEAD = "kai_new_head"
"""``Session.info`` key: the head a write transaction left, to sign after the commit."""
MAX_GROUP = 64
"""Most writes in one group: bounds one transaction's size and its leader's wait."""


def _utcnow_text() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


class Chain:
    """Appends audit entries inside one write transaction.

    Locks the head row first (``SELECT ... FOR UPDATE`` on PostgreSQL; SQLite
    already holds the write lock), so two writers cannot both extend the chain
    from the same entry. ``actor`` may change between entries: a group of writes
    shares one chain, each entry naming its own writer.
    """

    def __init__(self, session: Session, actor: str) -> None:
        head = session.execute(select(_HEAD.c.seq, _HEAD.c.hash).where(_HEAD.c.id == 1)
                               .with_for_update()).one_or_none()
        if head is None:
            raise KaiError("audit head row is missing: the audit log was damaged; "
                           "run `kai audit-log verify`")
        self._session, self.actor = session, actor
        self._seq, self._hash = int(head[0]), str(head[1])
        self._at = _utcnow_text()
        self._pending: list[dict[str, Any]] = []
        self.deferred = False
        """Set by a group: ``write`` keeps entries queued and ``finish`` stores them all."""

    @property
    def at(self) -> str:
        """This transaction's time, as its audit entries record it."""
        return self._at

    def append(self, action: str, entity: str, key: str, content_hash: str,
               note: str = "") -> int:
        """Queue the next entry and return its seq; ``write`` stores the queue."""
        entry = log.new_entry(self._seq, self._hash, self._at, self.actor, action,
                              entity, key, content_hash, note)
        self._pending.append(dict(vars(entry)))  # flat dataclass: no deep copy needed
        self._seq, self._hash = entry.seq, entry.hash
        return entry.seq

    def mark(self) -> tuple[int, str, int]:
        """Where the chain is now, to ``reset`` to if the next job refuses."""
        return self._seq, self._hash, len(self._pending)

    def reset(self, mark: tuple[int, str, int]) -> None:
        """Forget the entries appended since ``mark`` (they were never written)."""
        self._seq, self._hash, size = mark
        del self._pending[size:]

    def write(self) -> None:
        """Store the queued entries and the new head (unless a group defers them), and
        flush ORM rows the caller added (a stage result)."""
        if not self.deferred:
            self.finish()
        self._session.flush()

    def finish(self) -> None:
        # Core statements on the tables: the ORM's bulk paths cost more than the SQL here
        if self._pending:
            self._session.execute(insert(_AUDIT), self._pending)
            self._session.execute(update(_HEAD).where(_HEAD.c.id == 1)
                                  .values(seq=self._seq, hash=self._hash))
            self._pending = []
            self._session.info[NEW_HEAD] = (self._seq, self._hash)


Job = Callable[[Session, Chain], _T]
"""A write: runs in the group's transaction, extends its chain; see the module's contract."""


@dataclass(eq=False)
class Ticket(Generic[_T]):
    job: Job[_T]
    actor: str
    turn: threading.Event = field(default_factory=threading.Event)
    lead: bool = False
    done: bool = False
    result: _T | None = None
    error: BaseException | None = None

    def outcome(self) -> _T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]  # set when the job returned


RunGroup = Callable[[list["Ticket[Any]"]], None]


class WriteQueue:
    """Leader/follower hand-off of queued writes (one per ``Store``).

    A writer that finds no write running runs its own at once (a group of one: nothing
    waits for company). Writers arriving meanwhile queue; when the running group ends,
    the first queued writer is woken as the next leader and takes every write queued by
    then (up to ``MAX_GROUP``), in arrival order. Followers sleep until their outcome is
    set; the leader does the work, so no extra thread exists and a process that writes
    from one thread behaves exactly as before.
    """

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._queue: collections.deque[Ticket[Any]] = collections.deque()
        self._busy = False

    def run(self, job: Job[_T], actor: str, run_group: RunGroup) -> _T:
        ticket: Ticket[_T] = Ticket(job, actor)
        with self._mutex:
            self._queue.append(ticket)
            if not self._busy:
                self._busy = ticket.lead = True
        if not ticket.lead:
            ticket.turn.wait()
            if ticket.done:
                return ticket.outcome()
        with self._mutex:  # leading: our ticket is first in the queue
            group = [self._queue.popleft() for _ in range(min(len(self._queue), MAX_GROUP))]
        try:
            run_group(group)
        except BaseException as exc:
            for t in group:
                if not t.done:
                    t.error, t.done = exc, True
        finally:
            with self._mutex:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].turn.set()
                else:
                    self._busy = False
            for t in group:
                t.done = True
                if t is not ticket:
                    t.turn.set()
        return ticket.outcome()
