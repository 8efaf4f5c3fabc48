"""Group commit on and off, side by side: many threads of one process storing sheets.

Each of ``--threads`` threads stores ``--writes`` committee sheets the way the web app's
submission does (the sheet and the removal of its draft in one ``Store.put``), all at
once, on SQLite and/or PostgreSQL. "off" runs the same code with groups of one
(``chain.MAX_GROUP = 1``: every write its own transaction, as before group commit).
Prints writes (calls) per second, put latency p50/p95 and how many transactions wrote the
log (a sheet is three audit entries: draft saved, sheet stored, draft removed),
then checks that every sheet was stored once and the audit log verifies.

    KAI_TEST_POSTGRES_URL=postgresql+psycopg://kai:kai@127.0.0.1:5432/kaitest \\
        .venv/bin/python benchmarks/store_group_commit.py
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from sqlalchemy import create_engine, text

from kaieval.records import CommitteeSheet
from kaieval.store import Store, chain


def _sheet(key: str) -> CommitteeSheet:
    return CommitteeSheet(stage_id="s1", team_id="t", source="committee", component_id="c",
                          evaluator_id=f"e{key}", affiliation="x", scores={"q": 1.0},
                          input_hashes={"program": "sha256:" + "a" * 64})


def run(url: str, threads: int, writes: int, group: bool) -> str:
    chain.MAX_GROUP = 64 if group else 1
    store = Store(url, key_dir=tempfile.mkdtemp())
    store.migrate()
    latencies: list[float] = []

    def writer(t: int) -> None:
        for i in range(writes):
            key = f"{t}-{i}"
            store.put_objects({f"draft/{key}": {"scores": {}}}, actor=f"u{t}")
            start = time.perf_counter()
            store.put([_sheet(key)], actor=f"u{t}", replace=False, objects={f"draft/{key}": None})
            latencies.append(time.perf_counter() - start)

    workers = [threading.Thread(target=writer, args=(t,)) for t in range(threads)]
    start = time.perf_counter()
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    wall = time.perf_counter() - start
    latencies.sort()
    total = 2 * threads * writes
    stored = len(store.records(kind="sheet"))
    transactions = len({e.at for e in store.audit_entries()})
    head = store.audit_head()[0]
    problems = store.audit_verify()
    ok = stored == threads * writes and head == 3 * threads * writes and not problems
    store.close()
    return (f"{'on' if group else 'off':>5} {total / wall:9.0f} "
            f"{1000 * latencies[len(latencies) // 2]:9.0f} "
            f"{1000 * latencies[int(len(latencies) * 0.95)]:9.0f} {transactions:6d}/{total:<6d}"
            f" {'ok' if ok else f'FAILED: {stored} sheets, {head} entries, {problems[:1]}'}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=["sqlite", "postgres", "both"], default="both")
    p.add_argument("--pg-url", default=os.environ.get("KAI_TEST_POSTGRES_URL", ""))
    p.add_argument("--threads", type=int, default=40)
    p.add_argument("--writes", type=int, default=15, help="sheets per thread")
    p.add_argument("--rounds", type=int, default=2, help="off/on pairs, back to back")
    args = p.parse_args()
    print(f"{args.threads} threads x {args.writes} sheets (+ their drafts); "
          f"load average {os.getloadavg()[0]:.1f}")
    print("backend  group  writes/s  p50 ms  p95 ms  transactions  check")
    for backend in ("sqlite", "postgres") if args.backend == "both" else (args.backend,):
        if backend == "postgres" and not args.pg_url:
            print("postgres: skipped (no --pg-url / KAI_TEST_POSTGRES_URL)")
            continue
        for _ in range(args.rounds):
            for group in (False, True):
                if backend == "sqlite":
                    url = f"sqlite:///{tempfile.mkdtemp()}/store.sqlite"
                    print(f"{backend:8s} {run(url, args.threads, args.writes, group)}")
                    continue
                schema = "gc_" + uuid.uuid4().hex[:8]
                engine = create_engine(args.pg_url)
                with engine.begin() as conn:
                    conn.execute(text(f"CREATE SCHEMA {schema}"))
                try:
                    url = f"{args.pg_url}?options=-csearch_path%3D{schema}"
                    print(f"{backend:8s} {run(url, args.threads, args.writes, group)}")
                finally:
                    with engine.begin() as conn:
                        conn.execute(text(f"DROP SCHEMA {schema} CASCADE"))
                    engine.dispose()
    print(f"load average after: {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
