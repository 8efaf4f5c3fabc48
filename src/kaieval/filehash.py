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
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Callable
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


def _digest(fh: BinaryIO) -> str:
    h = hashlib.sha256()
    while block := fh.read(1 << 20):
        h.update(block)
    return h.hexdigest()


def sha256_hex(path: Path, opener: Callable[[Path], BinaryIO] | None = None) -> str:
    """Hex sha256 of ``path``'s bytes, remembered for large files (see the module docstring).

    ``opener`` opens the file for reading (default ``open(path, "rb")``); callers that
    must refuse FIFOs and devices pass their own checked opener.
    """
    path = Path(path)
    st = path.stat()
    where = memo_path() if st.st_size >= MEMO_MIN_BYTES else None
    key = (f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:"
           f"{path.resolve()}")
    if where is not None:
        known = _load(where).get(key)
        if known is not None:
            return known
    with (opener(path) if opener is not None else path.open("rb")) as fh:
        digest = _digest(fh)
    settled = time.time() - SETTLE_S
    if where is not None and max(st.st_mtime, st.st_ctime) < settled:
        memo = _load(where)
        memo[key] = digest
        _save(where, memo)
    return digest
