"""Group commit: writers queued behind a running write share one transaction, each with
its own outcome and its own audit entries; on SQLite and (if configured) PostgreSQL."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session

from kaieval.errors import KaiError
from kaieval.records import CommitteeSheet
from kaieval.store import Store, Superseding
from kaieval.store.chain import Chain


def _sheet(evaluator: str, score: float = 3.0) -> CommitteeSheet:
    return CommitteeSheet(stage_id="stage1", team_id="alpha", source="committee",
                          component_id="tech", evaluator_id=evaluator,
                          scores={"novelty": score}, input_hashes={"program": "sha256:ab"})


def _queued(store: Store, calls: list[Callable[[], object]]) -> list[object]:
    """Run ``calls`` in threads while this thread holds the store's write lock, releasing it
    only once all of them wait: the first waits for the lock alone, the rest queue behind
    it and must then be written as one group. Returns each call's result or exception."""
    out: list[object] = [None] * len(calls)

    def run(i: int) -> None:
        try:
            out[i] = calls[i]()
        except Exception as exc:
            out[i] = exc

    store.audit_head()  # migrate first, outside the lock
    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    with store._write_lock:
        threads[0].start()  # leads a group of its own, then waits for the lock
        _wait_until(lambda: len(store._write_lock._waiting) == 1)
        for th in threads[1:]:
            th.start()
        _wait_until(lambda: len(store._writes._queue) == len(calls) - 1)  # all queued
    for th in threads:
        th.join(timeout=60)
    return out


def _wait_until(cond: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 30
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.002)
    assert cond()


def _transactions(store: Store) -> int:
    """How many transactions wrote the audit entries: a transaction stamps all its
    entries with one time."""
    return len({e.at for e in store.audit_entries()})


def test_queued_writers_share_one_transaction_with_their_own_entries(store: Store) -> None:
    n = 12
    calls: list[Callable[[], object]] = [
        (lambda i=i: store.put([_sheet(f"e{i}")], actor=f"kim{i}", replace=False,
                               objects={f"draft/e{i}": {"done": True}}))
        for i in range(n)]
    results = _queued(store, calls)
    assert all(getattr(r, "inserted", None) == 1 for r in results), results
    assert len(store.records(kind="sheet")) == n
    assert len(store.objects("draft/")) == n
    entries = store.audit_entries()
    assert len(entries) == 2 * n
    assert {e.actor for e in entries} == {f"kim{i}" for i in range(n)}
    for i in range(n):  # each writer's two entries name it, result and object
        mine = [e for e in entries if e.actor == f"kim{i}"]
        assert sorted(e.entity_key for e in mine) == sorted([f"draft/e{i}",
                                                             _sheet(f"e{i}").natural_key()])
    assert _transactions(store) == 2  # the lead's own, then the rest as one group
    assert store.audit_verify() == []


def test_a_refused_write_fails_alone_and_leaves_no_entry(store: Store) -> None:
    store.put([_sheet("old")], actor="kim")
    store.put_objects({"user/lee": {"n": 1}}, actor="admin")
    calls: list[Callable[[], object]] = [
        lambda: store.put([_sheet("a")], actor="a", replace=False),
        lambda: store.put([_sheet("old", 5.0)], actor="b", replace=False),  # superseding
        lambda: store.put_objects({"user/lee": {"n": 2}}, actor="c",
                                  create_only={"user/lee"}),  # exists
        lambda: store.put_objects({"user/park": {"n": 1}}, actor="d"),
    ]
    first, superseding, exists, park = _queued(store, calls)
    assert getattr(first, "inserted", None) == 1 and park == 1
    assert isinstance(superseding, Superseding)
    assert isinstance(exists, KaiError) and "already exists" in str(exists)
    assert {e.actor for e in store.audit_entries()} == {"kim", "admin", "a", "d"}
    assert store.get_object("user/lee") == {"n": 1}
    assert store.audit_verify() == []


def test_a_database_error_in_a_group_reruns_each_write_alone(store: Store) -> None:
    """A job whose statement fails kills the group's transaction; the others are then
    written one by one, and only the failing one reports an error."""
    def broken(session: Session, chain: Chain) -> int:
        chain.append("insert", "object", "x/broken", "sha256:00")
        session.execute(text("SELECT * FROM no_such_table"))
        return 1

    calls: list[Callable[[], object]] = [
        lambda: store.put_objects({"x/lead": {"n": 0}}, actor="a"),
        lambda: store.put_objects({"x/one": {"n": 1}}, actor="b"),
        lambda: store._grouped("testing", "c", broken),
        lambda: store.put_objects({"x/two": {"n": 2}}, actor="d"),
    ]
    results = _queued(store, calls)
    assert results[0] == 1 and results[1] == 1 and results[3] == 1
    assert isinstance(results[2], KaiError) and "no_such_table" in str(results[2])
    assert sorted(store.objects("x/")) == ["x/lead", "x/one", "x/two"]
    assert {e.actor for e in store.audit_entries()} == {"a", "b", "d"}
    assert store.audit_verify() == []


def test_one_writer_alone_is_one_transaction_as_before(store: Store) -> None:
    for i in range(3):
        store.put_objects({f"x/{i}": {"n": i}}, actor="a")
    assert _transactions(store) == 3


def test_a_bug_in_a_job_reaches_every_writer_of_its_group(store: Store) -> None:
    """Not a refusal, not the database: nothing may hang waiting for an outcome."""
    def buggy(session: Session, chain: Chain) -> int:
        raise ZeroDivisionError("bug")

    calls: list[Callable[[], object]] = [
        lambda: store.put_objects({"x/lead": {"n": 0}}, actor="a"),
        lambda: store._grouped("testing", "b", buggy),
        lambda: store.put_objects({"x/after": {"n": 1}}, actor="c"),
    ]
    results = _queued(store, calls)
    assert results[0] == 1
    assert isinstance(results[1], ZeroDivisionError)
    assert isinstance(results[2], ZeroDivisionError)  # its group's transaction was abandoned
    assert store.get_object("x/after") is None
    assert store.put_objects({"x/later": {"n": 2}}, actor="d") == 1  # the queue still works
    assert store.audit_verify() == []


@pytest.mark.parametrize("threads", [8])
def test_many_concurrent_writers_lose_nothing(store: Store, threads: int) -> None:
    """Free-running writers (no forced queue): every write stored once, chain intact."""
    def writer(t: int) -> None:
        for i in range(10):
            store.put([_sheet(f"w{t}-{i}")], actor=f"t{t}", replace=False,
                      objects={f"draft/w{t}-{i}": None})

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert len(store.records(kind="sheet")) == 10 * threads
    assert store.audit_head()[0] == 10 * threads
    assert store.audit_verify() == []
