"""A small thread pool for the comparison: independent tests run on every core.

Why threads, not processes: the work is numpy, OpenBLAS (one thread each, see
``verdict._one_blas_thread``), SciPy's linear assignment, ``preadv`` and SHA-256,
which all release the GIL; threads share the open models and cost no pickling. On
the two-core development machine the tests alone kept one core busy while the other
only hashed the inputs, so a cold run took several times the disk's read time.

Why results cannot change: every test draws from its own generator, seeded by the
reference and tensor name (``compare.tensor_rng``), and :func:`ordered_map` returns results
in input order, so the record is byte-identical whatever the number of threads (tested
in ``tests/provenance/test_provenance_workers.py``). ``KAI_PROVENANCE_THREADS`` sets
the number (``1``: everything on the calling thread, as before).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from kaieval.errors import KaiError

_T = TypeVar("_T")
_R = TypeVar("_R")

ENV = "KAI_PROVENANCE_THREADS"
MAX_THREADS = 4
"""Threads at most, whatever the cores: each running test holds its own read span and
sub-matrices (~40-60 MB on a 2 GB model), and the peak RSS must stay within twice the
largest tensor + 300 MB. Measured on the benchmark's 2 x 2.1 GB pair (bound 562 MB):
340 MB on 1 thread, 341-380 MB on 2, 420 MB on 4, 666 MB on 8 (2026-12-07)."""


def thread_count() -> int:
    """Threads for the tests: ``KAI_PROVENANCE_THREADS``, else the cores this process may use."""
    raw = os.environ.get(ENV, "").strip()
    if raw:
        if not raw.isdigit() or int(raw) < 1:
            raise KaiError(f"must be a whole number of threads >= 1, got {raw!r}", where=ENV)
        return min(int(raw), MAX_THREADS)
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(cores, MAX_THREADS))


def ordered_map(fn: Callable[[_T], _R], items: Iterable[_T], *,
                threads: int | None = None) -> list[_R]:
    """``[fn(x) for x in items]``, run on up to ``threads`` threads, results in input order."""
    return list(ordered_imap(fn, items, threads=threads))


def ordered_imap(fn: Callable[[_T], _R], items: Iterable[_T], *,
                 threads: int | None = None) -> Iterator[_R]:
    """``fn`` over ``items`` on up to ``threads`` threads, yielded in input order as ready.

    Lazy in the caller's sense only: every call is submitted at once (the items are few
    and small), and each result is yielded as soon as it and all before it are done, so
    a caller can report progress in order. The first exception is raised in the
    caller's thread; calls not yet started are cancelled. With one thread or one item
    nothing is started and ``fn`` runs on the calling thread.
    """
    todo = list(items)
    n = thread_count() if threads is None else threads
    if n <= 1 or len(todo) <= 1:
        for x in todo:
            yield fn(x)
        return
    pool = ThreadPoolExecutor(max_workers=min(n, len(todo)), thread_name_prefix="kai-provenance")
    try:
        futures = [pool.submit(fn, x) for x in todo]
        for fut in futures:
            yield fut.result()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def after_imap(fn: Callable[[int], _R], after: Sequence[int | None], *,
               threads: int | None = None, started: Callable[[int], None] | None = None,
               ) -> Iterator[_R]:
    """``fn(i)`` for ``i`` in ``range(len(after))``, yielded in that order; ``fn(i)`` starts
    only once ``fn(after[i])`` has returned (``after[i] < i``, or None: at once).

    Why: the residual map of a comparison is one long serial task (an assignment over
    the hidden size) that the MLP sketches need but the component tests do not. Here a
    free thread takes the lowest-numbered task that may start, so the tests run beside
    the map instead of after it; the results are still yielded in task order. With one
    thread the tasks run in order on the calling thread (valid: each one's prerequisite
    comes before it). ``started(i)`` is called as task ``i`` starts (e.g. to hint the
    disk about the tasks after it). The first exception is raised in the caller's
    thread; tasks not yet started are dropped.
    """
    total = len(after)
    if any(a is not None and not 0 <= a < i for i, a in enumerate(after)):
        raise ValueError("after_imap: each prerequisite must be an earlier task")
    n = min(thread_count() if threads is None else threads, total)
    if n <= 1:
        for i in range(total):
            if started is not None:
                started(i)
            yield fn(i)
        return
    cond = threading.Condition()
    waiting = list(range(total))  # not started, in priority (= task) order
    done: dict[int, tuple[bool, object]] = {}  # index -> (ok, result or exception)
    finished: set[int] = set()  # tasks returned (kept after their result is yielded)
    stop = False

    def work() -> None:
        nonlocal stop
        while True:
            with cond:
                while True:
                    if stop or not waiting:
                        return
                    pick = next((i for i in waiting
                                 if after[i] is None or after[i] in finished), None)
                    if pick is not None:
                        waiting.remove(pick)
                        break
                    cond.wait()
            try:
                if started is not None:
                    started(pick)
                out: tuple[bool, object] = (True, fn(pick))
            except BaseException as err:  # handed to the caller's thread
                out = (False, err)
            with cond:
                done[pick] = out
                finished.add(pick)
                if not out[0]:
                    stop = True
                cond.notify_all()

    pool = [threading.Thread(target=work, name=f"kai-provenance_{k}", daemon=True)
            for k in range(n)]
    for t in pool:
        t.start()
    try:
        for i in range(total):
            with cond:
                while i not in done:
                    cond.wait()
                ok, value = done.pop(i)
            if not ok:
                assert isinstance(value, BaseException)
                raise value
            yield value  # type: ignore[misc]
    finally:
        with cond:
            stop = True
            cond.notify_all()
        for t in pool:
            t.join()
