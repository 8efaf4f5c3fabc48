"""sha256 of large files, computed once per content and remembered across processes.

Why this exists: every ``kai eval`` (and every stage run) keys its results by the
content hash of the model folder, so each process used to read every weight file
in full before its first forward pass -- a few tenths of a second for the
benchmark's 70 MB model, tens of seconds for a 15 GB one, on every run.

A file's digest is remembered under its identity *and* state: device, inode,
size, modification time and status-change time (ns). Any write to the file, or
any ``touch`` that resets its mtime, changes its ctime, which userspace cannot
set back, so a remembered digest is only reused for the same bytes. As git does
for "racily clean" files, a digest is not remembered while the file's times are
less than ``SETTLE_S`` old (a filesystem with coarse timestamps could otherwise
hide a same-size rewrite in the same tick). Files under ``MEMO_MIN_BYTES`` are
simply hashed (that is faster than the lookup's I/O).

The memo is one small JSON file (``KAI_HASH_CACHE``, else
``$KAI_CACHE_DIR/file-hashes.json``, else ``$XDG_CACHE_HOME/kaieval/`` or
``~/.cache/kaieval/``); set ``KAI_HASH_CACHE`` to an empty string to turn it off.
It is only a cache: unreadable, corrupt or unwritable means "hash again".

:func:`hash_ahead` starts hashing files on background threads before anyone asks (``kai
provenance`` calls it before importing numpy, so the second core hashes while the first
imports); :func:`sha256_hex` then takes the digest computed ahead for the same identity
and state instead of reading the file again.
"""

from __future__ import annotations

import hashlib
import json
import os
import queue
import stat
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from pathlib import Path
from typing import BinaryIO

MEMO_MIN_BYTES = 1 << 20
MEMO_MAX_ENTRIES = 4096
SETTLE_S = 2.0

_memo: dict[str, str] | None = None
_memo_path: Path | None = None


def memo_path() -> Path | None:
    """Where digests are remembered (None: turned off)."""
    explicit = os.environ.get("KAI_HASH_CACHE")
    if explicit is not None:
        return Path(explicit).expanduser() if explicit else None
    base = os.environ.get("KAI_CACHE_DIR")
    if base:
        return Path(base).expanduser() / "file-hashes.json"
    xdg = os.environ.get("XDG_CACHE_HOME")
    root = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return root / "kaieval" / "file-hashes.json"


def _load(path: Path) -> dict[str, str]:
    global _memo, _memo_path
    if _memo is None or _memo_path != path:
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
            _memo = {str(k): str(v) for k, v in raw.items()} if isinstance(raw, dict) else {}
        except (OSError, ValueError):
            _memo = {}
        _memo_path = path
    return _memo


def _save(path: Path, memo: dict[str, str]) -> None:
    while len(memo) > MEMO_MAX_ENTRIES:  # oldest first (insertion order)
        memo.pop(next(iter(memo)))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(memo), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)


READ_BYTES = 1 << 22
"""Bytes read per call while hashing, into one reused buffer."""


def _digest(fh: BinaryIO) -> str:
    """Hex sha256 of the rest of ``fh``.

    Why ``readinto`` one buffer, not ``read``: each ``read`` returned a new 1 MiB object,
    which glibc serves from fresh pages -- one minor page fault per 4 KiB read, i.e. a
    quarter of a million faults per GB hashed, on top of the copy.
    """
    h = hashlib.sha256()
    buf = bytearray(READ_BYTES)
    view = memoryview(buf)
    while n := fh.readinto(view):  # type: ignore[attr-defined]
        h.update(view[:n])
    return h.hexdigest()


def _key(path: Path, st: os.stat_result) -> str:
    """The identity and state a digest is remembered under (see the module docstring)."""
    return (f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:"
            f"{path.resolve()}")


_ahead: dict[str, Future[str]] = {}
_ahead_lock = threading.Lock()
AHEAD_THREADS = 2
"""Threads hashing ahead: two, so two models (candidate, reference) are hashed side by side
as the disk delivers both (:func:`kaieval.io.readahead` interleaves them)."""


def _regular_digest(path: Path) -> str:
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):  # a FIFO or device: never read ahead
            raise OSError(f"{path} is not a regular file")
        os.set_blocking(fd, True)
        with os.fdopen(fd, "rb", closefd=False) as fh:
            return _digest(fh)
    finally:
        os.close(fd)


def _hash_one(path: Path, fut: Future[str]) -> None:
    try:
        digest = _regular_digest(path)
    except BaseException as err:  # the caller hashes again and reports its own error
        fut.set_exception(err)
        return
    fut.set_result(digest)


def hash_ahead(paths: Iterable[Path]) -> list[Path]:
    """Start hashing regular files on :data:`AHEAD_THREADS` daemon threads, in the order given.

    Only a head start: :func:`sha256_hex` uses a digest computed here when the file's
    identity and state (device, inode, size, mtime, ctime) are still those seen here,
    and hashes the file itself otherwise or if the read failed. Files whose digest is
    remembered (large, memo on) are skipped, and so are files written less than
    :data:`SETTLE_S` ago (a same-size rewrite in the same timestamp tick would keep the
    state: the memo's rule). Returns the files queued.
    """
    # daemon threads fed by a queue, not a ThreadPoolExecutor: its threads are joined at
    # exit, so a command that no longer needs a digest would wait for a large file's hash
    jobs: queue.Queue[tuple[Path, Future[str]] | None] = queue.Queue()
    queued: list[Path] = []
    settled = time.time() - SETTLE_S
    for p in map(Path, paths):
        try:
            st = p.stat()
            key = _key(p, st)
        except OSError:
            continue
        if max(st.st_mtime, st.st_ctime) >= settled:
            continue
        where = memo_path() if st.st_size >= MEMO_MIN_BYTES else None
        if where is not None and key in _load(where):
            continue
        with _ahead_lock:
            if key in _ahead:
                continue
            fut: Future[str] = Future()
            _ahead[key] = fut
        jobs.put((p, fut))
        queued.append(p)

    def run() -> None:
        while (job := jobs.get()) is not None:
            _hash_one(*job)

    for i in range(min(AHEAD_THREADS, len(queued))):
        jobs.put(None)  # one end marker per thread
        threading.Thread(target=run, name=f"kai-hash-ahead-{i}", daemon=True).start()
    return queued


def _from_ahead(key: str) -> str | None:
    """The digest hashed ahead under ``key`` (waiting for it if still running), or None."""
    with _ahead_lock:
        fut = _ahead.get(key)
    if fut is None:
        return None
    try:
        return fut.result()
    except BaseException:
        return None


def sha256_hex(path: Path, opener: Callable[[Path], BinaryIO] | None = None) -> str:
    """Hex sha256 of ``path``'s bytes, remembered for large files (see the module docstring).

    ``opener`` opens the file for reading (default ``open(path, "rb")``); callers that
    must refuse FIFOs and devices pass their own checked opener.
    """
    path = Path(path)
    st = path.stat()
    where = memo_path() if st.st_size >= MEMO_MIN_BYTES else None
    key = _key(path, st)
    if where is not None:
        known = _load(where).get(key)
        if known is not None:
            return known
    with (opener(path) if opener is not None else path.open("rb")) as fh:
        ahead = _from_ahead(key)  # after opening: the opener still refuses what it refuses
        digest = ahead if ahead is not None else _digest(fh)
    settled = time.time() - SETTLE_S
    if where is not None and max(st.st_mtime, st.st_ctime) < settled:
        memo = _load(where)
        memo[key] = digest
        _save(where, memo)
    return digest
