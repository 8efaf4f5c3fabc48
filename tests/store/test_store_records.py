"""Store behaviour through its public API: roundtrip, idempotence, replace, rollback, delete."""

from __future__ import annotations

import datetime as dt
import itertools
import threading
import time
from typing import Any

import pytest
from sqlalchemy import Engine, event, func, select, text

from kaieval.errors import KaiError
from kaieval.records import BenchmarkResult, Measurement, Record
from kaieval.store import PutSummary, Store
from kaieval.store.models import AuditRow, ResultRow


def _count(raw: Engine, table: str) -> int:
    with raw.connect() as conn:
        return int(conn.execute(text(f"SELECT COUNT(*) FROM {table}")).scalar_one())


def test_roundtrip_every_record_type(store: Store, samples: list[Record],
                                     record_kinds: set[str]) -> None:
    assert {r.model_dump()["kind"] for r in samples} == record_kinds, "sample every record type"
    summary = store.put(samples, actor="tester")
    assert summary == PutSummary(inserted=len(samples))
    back = store.records()
    assert [r.natural_key() for r in back] == sorted(r.natural_key() for r in samples)
    by_key = {r.natural_key(): r for r in samples}
    for rec in back:
        original = by_key[rec.natural_key()]
        assert type(rec) is type(original)
        assert rec == original  # every field, created_at and Korean text included
        assert rec.content_hash() == original.content_hash()


def test_filters(store: Store, samples: list[Record]) -> None:
    other = Measurement(stage_id="stage2", team_id="alpha", source="measured", name="x",
                        value=1.0)
    store.put([*samples, other], actor="tester")
    assert [r.natural_key() for r in store.records(stage_id="stage2")] == [other.natural_key()]
    assert {r.team_id for r in store.records(team_id="beta")} == {"beta"}
    # target benchmark, audit, measurement, retraction
    assert len(store.records(team_id="beta")) == 4
    benches = store.records(stage_id="stage1", kind="benchmark")
    assert [type(r) for r in benches] == [BenchmarkResult, BenchmarkResult]
    assert store.records(stage_id="stage1", kind="votes", team_id="alpha") == []


def test_rerun_is_idempotent(store: Store, raw: Engine, samples: list[Record]) -> None:
    store.put(samples, actor="run-1")
    audit_rows = _count(raw, "audit_log")
    assert audit_rows == len(samples)
    # A rerun makes new objects with a new time and code version: still unchanged.
    later = dt.datetime(2025, 6, 1, tzinfo=dt.UTC)
    rerun = [r.model_copy(update={"created_at": later, "code_version": "9.9"}) for r in samples]
    summary = store.put(rerun, actor="run-2")
    assert summary == PutSummary(unchanged=len(samples))
    assert summary.changed == 0
    assert _count(raw, "audit_log") == audit_rows
    assert store.records() == sorted(samples, key=lambda r: r.natural_key())
    assert store.audit_verify() == []


def test_replace_changed_content(store: Store, samples: list[Record]) -> None:
    store.put(samples, actor="run-1")
    bench = samples[0]
    assert isinstance(bench, BenchmarkResult)
    changed = bench.model_copy(update={"score": 0.99})
    summary = store.put([changed, samples[1]], actor="run-2")
    assert summary == PutSummary(replaced=1, unchanged=1)
    stored = store.records(team_id=bench.team_id, kind="benchmark")
    assert len(stored) == 1 and isinstance(stored[0], BenchmarkResult)
    assert stored[0].score == 0.99
    last = store.audit_entries(limit=1)[0]
    assert (last.action, last.entity_key, last.actor) == ("replace", bench.natural_key(), "run-2")
    assert store.audit_verify() == []


def test_batch_with_duplicate_keys(store: Store, samples: list[Record]) -> None:
    bench = samples[0]
    assert store.put([bench, bench], actor="t") == PutSummary(inserted=1, unchanged=1)
    clash = bench.model_copy(update={"score": 0.1, "stage_id": "s9"})
    other = clash.model_copy(update={"score": 0.2})
    with pytest.raises(KaiError, match="two different records"):
        store.put([clash, other], actor="t")
    assert len(store.records()) == 1


def test_unserialisable_record_rolls_back_whole_batch(store: Store, raw: Engine,
                                                      samples: list[Record]) -> None:
    store.put(samples[:2], actor="first")
    before = (store.records(), store.audit_entries())
    replaced = samples[0].model_copy(update={"settings": {"shots": 0}})
    broken = Measurement(stage_id="stage1", team_id="zeta", source="measured", name="bad",
                         value=1.0, settings={"obj": object()})
    with pytest.raises(KaiError, match=r"record 3 \(measurement/stage1/zeta/bad\) cannot be "
                                       r"serialised"):
        store.put([replaced, *samples[2:4], broken, *samples[4:]], actor="second")
    assert (store.records(), store.audit_entries()) == before
    assert _count(raw, "results") == 2


def test_database_failure_mid_flush_rolls_back(store: Store, raw: Engine,
                                               samples: list[Record]) -> None:
    """Some INSERT/UPDATEs of the batch run, then the database fails: nothing may remain."""
    store.put(samples[:1], actor="first")
    engine = store._get_engine()
    writes: list[str] = []

    def fail_third_write(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if statement.lstrip().upper().startswith(("INSERT", "UPDATE")):
            writes.append(statement.split("(")[0].strip())
            if len(writes) == 3:
                raise RuntimeError("disk full (injected)")

    event.listen(engine, "before_cursor_execute", fail_third_write)
    try:
        with pytest.raises(Exception, match="injected"):
            store.put(samples[1:], actor="second")
    finally:
        event.remove(engine, "before_cursor_execute", fail_third_write)
    assert len(writes) == 3, writes
    assert _count(raw, "results") == 1
    assert _count(raw, "audit_log") == 1
    assert store.audit_head()[0] == 1
    assert store.audit_verify() == []
    assert store.put(samples[1:], actor="third").inserted == len(samples) - 1


def test_bad_records_and_actor(store: Store, samples: list[Record]) -> None:
    base = Record(stage_id="s", team_id="t", source="measured")
    with pytest.raises(KaiError, match="record 1: Record has no natural key"):
        store.put([samples[0], base], actor="t")
    with pytest.raises(KaiError, match="actor"):
        store.put(samples, actor="  ")
    assert store.records() == []


def test_delete_is_audited(store: Store, samples: list[Record]) -> None:
    store.put(samples, actor="t")
    key = samples[2].natural_key()
    assert store.delete(key, actor="admin") is True
    assert store.delete(key, actor="admin") is False
    assert key not in {r.natural_key() for r in store.records()}
    last = store.audit_entries(limit=1)[0]
    assert (last.action, last.entity_key, last.actor) == ("delete", key, "admin")
    assert store.audit_verify() == []
    assert store.put(samples, actor="t") == PutSummary(inserted=1, unchanged=len(samples) - 1)
    assert store.audit_verify() == []


def test_stage_results(store: Store) -> None:
    payload = {"schema": "kaieval/stage-result/v1", "teams": [{"id": "a", "total": 71.5}]}
    assert store.stage_result("stage1") is None
    assert store.put_stage_result("stage1", "main", payload, "sha256:in1", actor="t") is True
    assert store.put_stage_result("stage1", "main", dict(payload), "sha256:in1", actor="t") is False
    assert store.stage_result("stage1") == payload
    assert store.put_stage_result("stage1", "main", payload, "sha256:in2", actor="t") is True
    assert store.put_stage_result("stage1", "dry", {"x": 1}, "sha256:in2", actor="t") is True
    assert store.stage_result("stage1", run_label="dry") == {"x": 1}
    actions = [(e.action, e.entity, e.entity_key) for e in store.audit_entries()]
    assert actions == [("insert", "stage_result", "stage1/main"),
                       ("replace", "stage_result", "stage1/main"),
                       ("insert", "stage_result", "stage1/dry")]
    with pytest.raises(KaiError, match="run label"):
        store.put_stage_result("stage1", "a/b", payload, "h", actor="t")
    assert store.audit_verify() == []


def test_audit_entries_limit(store: Store, samples: list[Record]) -> None:
    store.put(samples, actor="t")
    everything = store.audit_entries()
    assert [e.seq for e in everything] == list(range(1, len(samples) + 1))
    assert store.audit_entries(limit=3) == everything[-3:]
    assert everything[0].prev_hash == "0" * 64
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(everything))
    assert store.audit_head() == (everything[-1].seq, everything[-1].hash)


def test_concurrent_writers_keep_one_chain(store_url: str, raw: Engine) -> None:
    """Several stores (separate pools) appending at once: one unbroken chain, no lost write."""
    n_threads, per_thread = 4, 10
    errors: list[BaseException] = []

    def writer(w: int) -> None:
        s = Store(store_url)
        try:
            for i in range(per_thread):
                s.put([Measurement(stage_id="s", team_id=f"w{w}", source="measured",
                                   name=f"m{i}", value=float(i))], actor=f"writer-{w}")
        except BaseException as exc:  # collected and re-raised in the main thread
            errors.append(exc)
        finally:
            s.close()

    Store(store_url).migrate()
    threads = [threading.Thread(target=writer, args=(w,)) for w in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert _count(raw, "results") == n_threads * per_thread
    with raw.connect() as conn:
        seqs = list(conn.scalars(select(AuditRow.seq).order_by(AuditRow.seq)))
        n_rows = conn.execute(select(func.count()).select_from(ResultRow)).scalar_one()
    assert seqs == list(range(1, n_threads * per_thread + 1))
    assert n_rows == n_threads * per_thread
    assert Store(store_url).audit_verify() == []


def test_reads_do_not_wait_for_a_writer(store: Store, store_url: str, raw: Engine,
                                        samples: list[Record]) -> None:
    """A long stage run holding the write lock must not freeze the web app's reads."""
    store.put(samples, actor="t")
    with raw.connect() as conn:
        if raw.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")  # what a writing Store holds
            conn.exec_driver_sql("UPDATE audit_head SET seq = seq")
        else:
            conn.execute(text("SELECT seq FROM audit_head FOR UPDATE"))
        started = time.monotonic()
        assert len(store.records()) == len(samples)
        assert store.audit_verify() == []
        fresh = Store(store_url)  # a new CLI process: its schema check must not wait either
        assert fresh.audit_entries(limit=1)[0].seq == len(samples)
        fresh.close()
        assert time.monotonic() - started < 5.0
        conn.rollback()


def test_non_utc_timestamps_roundtrip_and_verify(store: Store) -> None:
    """Seoul time in, same instant out; SQLite keeps no offset, so columns are stored in UTC."""
    kst = dt.timezone(dt.timedelta(hours=9))
    rec = Measurement(stage_id="s", team_id="t", source="measured", name="n", value=1.0,
                      created_at=dt.datetime(2025, 3, 1, 21, 0, tzinfo=kst))
    store.put([rec], actor="t")
    (back,) = store.records()
    assert back == rec
    assert back.created_at.utcoffset() == dt.timedelta(hours=9)  # payload keeps the offset
    assert store.audit_verify() == []
