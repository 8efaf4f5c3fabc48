"""Opening a store: URL rules, one-line errors, lazy migration, schema = ORM models."""

from __future__ import annotations

import os
import shutil
import sqlite3
import threading
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text

from kaieval.errors import KaiError
from kaieval.records import Measurement
from kaieval.store import DEFAULT_URL, ENV_VAR, Store, head_revision, masked, parse_url
from kaieval.store.models import Base

PG_ENV = "KAI_TEST_POSTGRES_URL"


def test_plain_postgres_urls_get_psycopg3() -> None:
    for url in ("postgresql://kai:pw@db:5432/k", "postgres://kai:pw@db:5432/k"):
        parsed = parse_url(url)
        assert parsed.drivername == "postgresql+psycopg"
        assert (parsed.username, parsed.password, parsed.host, parsed.database) == \
            ("kai", "pw", "db", "k")
    assert parse_url("postgresql+psycopg://a@b/c").drivername == "postgresql+psycopg"
    assert parse_url("sqlite:///x.sqlite").drivername == "sqlite"


def test_masked_hides_passwords() -> None:
    assert masked("postgresql://kai:s3cret@db/k") == "postgresql://kai:***@db/k"
    assert "s3cret" not in masked("weird:// kai:s3cret@db")
    assert masked("sqlite:///a.sqlite") == "sqlite:///a.sqlite"


def test_unreachable_postgres_is_one_line_kaierror() -> None:
    store = Store("postgresql://kai:s3cret@127.0.0.1:1/nowhere")
    with pytest.raises(KaiError) as info:
        store.records()
    message = str(info.value)
    assert "\n" not in message
    assert "postgresql+psycopg://kai:***@127.0.0.1:1/nowhere" in message
    assert "s3cret" not in message
    assert store.url == "postgresql+psycopg://kai:***@127.0.0.1:1/nowhere"


@pytest.mark.parametrize("url", ["not a url", "nosuchdb://x/y", "postgresql+nodriver://a@b/c"])
def test_invalid_url_is_kaierror(url: str) -> None:
    with pytest.raises(KaiError) as info:
        Store(url).records()
    assert "\n" not in str(info.value)


def test_sqlite_in_missing_directory_is_kaierror(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'missing' / 'db.sqlite'}"
    with pytest.raises(KaiError, match=r"database sqlite:///.*missing/db\.sqlite"):
        Store(url).put([], actor="t")
    assert not (tmp_path / "missing").exists()


def test_url_from_environment_then_default(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    env_db = tmp_path / "from-env.sqlite"
    monkeypatch.setenv(ENV_VAR, f"sqlite:///{env_db}")
    assert Store().url == f"sqlite:///{env_db}"
    assert Store("sqlite:///explicit.sqlite").url == "sqlite:///explicit.sqlite"
    monkeypatch.delenv(ENV_VAR)
    store = Store()
    assert store.url == DEFAULT_URL
    assert not (tmp_path / "kaieval.sqlite").exists(), "nothing connects before first use"
    store.put([Measurement(stage_id="s", team_id="t", source="measured", name="n", value=1.0)],
              actor="t")
    assert (tmp_path / "kaieval.sqlite").is_file()
    store.close()


def test_fresh_database_migrates_once(store_url: str, raw: Engine) -> None:
    store = Store(store_url)
    assert store.migrate() is True
    assert store.migrate() is False
    assert Store(store_url).migrate() is False
    with raw.connect() as conn:
        assert MigrationContext.configure(conn).get_current_heads() == (head_revision(),)
        head = conn.execute(text("SELECT id, seq, hash FROM audit_head")).all()
    assert [tuple(r) for r in head] == [(1, 0, "0" * 64)]
    assert head_revision() == "0004"
    store.close()


def test_migration_matches_orm_models(store: Store, raw: Engine) -> None:
    """The Alembic schema and the ORM classes must describe the same tables."""
    store.migrate()
    with raw.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), Base.metadata)
    assert diffs == []
    assert set(inspect(raw).get_table_names()) >= {"results", "stage_results", "audit_log",
                                                    "audit_head", "alembic_version"}


def test_schema_from_newer_kaieval_is_refused(store: Store, raw: Engine) -> None:
    store.migrate()
    with raw.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(KaiError, match="revision 9999 is newer"):
        Store(raw.url.render_as_string(hide_password=False)).records()


@pytest.mark.postgres
def test_plain_postgresql_scheme_really_connects() -> None:
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} not set")
    plain = parse_url(base).set(drivername="postgresql").render_as_string(hide_password=False)
    assert plain.startswith("postgresql://")
    store = Store(plain)
    try:
        with store._get_engine().connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
        assert store._get_engine().dialect.driver == "psycopg"
    finally:
        store.close()


def _sqlite_store(tmp_path: Path) -> tuple[Path, Store]:
    db = tmp_path / "wal.sqlite"
    return db, Store(f"sqlite:///{db}", key_dir=tmp_path / "keys")


def test_sqlite_store_is_in_wal_mode_with_full_sync(tmp_path: Path) -> None:
    """WAL so readers never wait for a writer; FULL so every commit is on disk (one
    fsync per commit) -- the store promises nothing acknowledged is lost."""
    db, store = _sqlite_store(tmp_path)
    store.put_objects({"x/1": {"a": 1}}, actor="t")
    with store._get_engine().connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar_one() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar_one() == 2  # FULL
    other = sqlite3.connect(db)  # the mode is in the file: every connection sees it
    try:
        assert other.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        other.close()
    store.close()


def test_sqlite_reads_do_not_wait_for_a_writer(tmp_path: Path) -> None:
    """Another process holds the write lock mid-transaction: the store still reads (in
    rollback-journal mode this read would wait for the busy timeout and fail)."""
    db, store = _sqlite_store(tmp_path)
    store.put_objects({"x/1": {"a": 1}}, actor="t")
    writer = sqlite3.connect(db, isolation_level=None)
    writer.execute("BEGIN EXCLUSIVE")
    writer.execute("UPDATE objects SET payload = '{\"a\": 2}' WHERE key = 'x/1'")
    found: list[object] = []
    reader = threading.Thread(target=lambda: found.append(store.get_object("x/1")))
    reader.start()
    reader.join(timeout=20)  # a hang guard, not a timing: the read needs no wait at all
    read_while_locked = not reader.is_alive()
    writer.execute("ROLLBACK")
    writer.close()
    reader.join()
    assert read_while_locked
    assert found == [{"a": 1}]  # the committed version, not the uncommitted one
    store.close()


def test_sqlite_closed_store_is_one_file_that_copies(tmp_path: Path) -> None:
    """Closing folds the write-ahead log back into the file: a plain copy is complete."""
    db, store = _sqlite_store(tmp_path)
    store.put_objects({f"x/{i}": {"a": i} for i in range(5)}, actor="t")
    assert Path(f"{db}-wal").exists()  # while open, commits may live in the log
    store.close()
    assert not Path(f"{db}-wal").exists()
    copy = tmp_path / "copy.sqlite"
    shutil.copy(db, copy)
    with Store(f"sqlite:///{copy}", key_dir=tmp_path / "keys") as again:
        assert len(again.objects("x/")) == 5
        assert again.audit_verify() == []


def test_concurrent_writers_in_one_process_all_land(tmp_path: Path) -> None:
    """Writers of one store queue on its lock, then the database's: none lost, chain whole."""
    _, store = _sqlite_store(tmp_path)
    store.migrate()

    def write(t: int) -> None:
        for i in range(10):
            store.put_objects({f"x/{t}/{i}": {"t": t, "i": i}}, actor=f"w{t}")

    threads = [threading.Thread(target=write, args=(t,)) for t in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert len(store.objects("x/")) == 80
    assert store.audit_head()[0] == 80
    assert store.audit_verify() == []
    store.close()


def test_writers_get_the_write_lock_in_the_order_they_asked() -> None:
    """First come, first served: a writer cannot be passed over turn after turn."""
    from kaieval.store.store import _FifoLock

    lock, order = _FifoLock(), []

    def writer(n: int) -> None:
        with lock:
            order.append(n)

    lock.__enter__()
    threads = []
    for n in range(5):
        threads.append(threading.Thread(target=writer, args=(n,)))
        threads[-1].start()
        while len(lock._waiting) < n + 1:  # queued before the next one starts
            threading.Event().wait(0.001)
    lock.__exit__()
    for t in threads:
        t.join()
    assert order == [0, 1, 2, 3, 4]
    with lock:  # free again
        pass


def test_login_attempts_are_counted_in_a_moving_window(store: Store) -> None:
    assert all(store.count_attempt(["ip:a", "name:kim"], 3, 60, now=100 + i) for i in range(3))
    assert not store.count_attempt(["ip:a", "name:lee"], 3, 60, now=110)  # ip:a is full
    with Store(store._url.render_as_string(hide_password=False)) as other:
        assert not other.count_attempt(["ip:a"], 3, 60, now=111)  # another process: shared
    assert store.count_attempt(["ip:b", "name:lee"], 3, 60, now=111)  # lee counted once
    assert not store.count_attempt(["name:kim"], 3, 60, now=159)  # oldest still inside
    assert store.count_attempt(["name:kim"], 3, 60, now=160.5)  # ... and now outside
    assert store.audit_head()[0] == 0  # attempts are not audited


@pytest.mark.parametrize("idle_s, survives", [(0.0, True), (3600.0, False)])
def test_a_pooled_connection_that_died_while_idle_is_pinged_and_replaced(
        store_url: str, raw: Engine, monkeypatch: pytest.MonkeyPatch, idle_s: float,
        survives: bool) -> None:
    """Idle longer than the threshold: pinged, found dead, replaced -- the read works.
    Used a moment ago: not pinged (no round trip per request), so a connection the server
    killed in that moment fails once with a one-line error."""
    if not store_url.startswith("postgresql"):
        pytest.skip("PostgreSQL connection pool")
    import kaieval.store.database as database

    monkeypatch.setattr(database, "PG_PING_IDLE_S", idle_s)
    with Store(store_url) as store:
        store.put_objects({"x/a": {"n": 1}}, actor="kim")
        pid = store._read_core("reading", lambda c: c.execute(text("SELECT pg_backend_pid()"))
                               .scalar())
        with raw.begin() as conn:
            assert conn.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid}).scalar()
        if survives:
            assert store.get_object("x/a") == {"n": 1}
        else:
            with pytest.raises(KaiError, match="reading application state failed"):
                store.get_object("x/a")
            assert store.get_object("x/a") == {"n": 1}  # the pool was dropped: reconnected
