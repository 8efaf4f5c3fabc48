"""Files in and out: the one atomic write, the one JSON Lines reader, and the bounded
reads of untrusted files (regular files only, size limits, JSON depth limits).

Atomic: a temp file in the target's folder, flushed to disk, then ``os.replace``d
over the target, so readers see the old file or the new one, never half (the
rename is atomic on one filesystem on POSIX and Windows); the temp file is
removed if anything fails.

JSON Lines: one JSON object per line, blank lines skipped; a bad line is a
one-line :class:`KaiError` naming ``file:line``. Each row comes back with that
location, so a caller that validates it further can point at the same line.
Lines are split on line breaks only (a raw U+2028 inside a JSON string stays).

Untrusted files: a FIFO named ``model.safetensors`` would block a reader forever, and a
device file would never end. :func:`open_regular` opens without blocking, checks the
opened file (not the name, which could be swapped in between) and refuses anything but
a regular file, in one line.

Bounded reads: every file a team supplies is read through :func:`read_bounded_bytes`
(regular files only, refused above a named size limit before anything is read) and JSON
through :func:`load_json_file` / :func:`parse_json`, which measure the nesting depth
without recursion before the parser runs. Where a third-party library opens the file
itself, :func:`check_bounded_file` checks it first. The limits below are sized so that
the largest real public files pass with room to spare (docs/untrusted-files.md).
"""

from __future__ import annotations

import contextlib
import functools
import io
import itertools
import json
import os
import re
import stat
import tempfile
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from kaieval.errors import KaiError

JsonRow = tuple[str, dict[str, Any]]  # ("file:line", the line's object)

MiB = 1 << 20
CONFIG_MAX_BYTES = 16 * MiB
"""config.json, generation_config.json, tokenizer_config.json, special_tokens_map.json,
chat templates: real ones are KBs (Gemma 3's tokenizer_config.json, with its added-token
table, is about 1.2 MB)."""
INDEX_MAX_BYTES = 64 * MiB
"""model.safetensors.index.json: one line per tensor; a 1T-parameter MoE's is about 10 MB."""
TOKENIZER_MAX_BYTES = 128 * MiB
"""tokenizer.json, tokenizer.model, vocab.json, merges.txt: the largest public ones are
about 35 MB (Gemma 3's tokenizer.json); a 10-million-merge file is refused unparsed."""
TEXT_MAX_BYTES = 16 * MiB
"""Text a dossier names (reports, data cards, corpora) and JSON records read whole."""
DATA_MAX_BYTES = 1024 * MiB
"""Task data, records and prompt files (JSON Lines, JSON, CSV): read whole into memory."""
JSON_MAX_DEPTH = 64
"""Deepest JSON nesting accepted: real configs and tokenizers nest under 10 levels, and
64 keeps any recursive walk of the result far below Python's recursion limit."""


def _size(n: int) -> str:
    if n < MiB:
        return f"{n} bytes"
    return f"{n // MiB} MB" if n % MiB == 0 else f"{n / MiB:.1f} MB"


def size_error(size: int, limit: int, what: str, where: str) -> KaiError:
    """The one-line refusal of a file over its limit ("412.0 MB exceeds the 128.0 MB limit ...")."""
    return KaiError(f"{_size(size)} exceeds the {_size(limit)} limit for {what}", where=where)


def open_regular(path: Path) -> io.BufferedReader:
    """``path`` opened for binary reading, if it is a regular file (symlinks followed).

    Opened with ``O_NONBLOCK`` so that a FIFO cannot hang the open, then checked with
    ``fstat`` on the opened descriptor; the flag is cleared again for normal reads.
    """
    where = str(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0))
    except OSError as err:
        raise KaiError(f"cannot read: {err.strerror or err}", where=where) from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        kind = ("a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode)
                else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                else "a folder" if stat.S_ISDIR(mode) else "not a regular file")
        raise KaiError(f"is {kind}, not a regular file: refused", where=where)
    os.set_blocking(fd, True)
    return os.fdopen(fd, "rb")


def check_bounded_file(path: Path, limit: int, what: str) -> int:
    """Check ``path`` is a regular file of at most ``limit`` bytes; return its size.

    For files a third-party library opens itself (``transformers``): checked here, so a
    FIFO or an oversized file is refused in one line before the library sees the name.
    """
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
    if size > limit:
        raise size_error(size, limit, what, str(path))
    return size


def read_bounded_bytes(path: Path, limit: int, what: str) -> bytes:
    """The bytes of regular file ``path``, refused in one line when over ``limit``.

    ``what`` names the kind of file in the error ("tokenizer files"). The size is
    checked on the opened file before reading, and at most ``limit + 1`` bytes are read,
    so a file that grows meanwhile is refused too.
    """
    where = str(path)
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > limit:
            raise size_error(size, limit, what, where)
        try:
            raw = f.read(limit + 1)
        except OSError as err:
            raise KaiError(f"cannot read: {err.strerror or err}", where=where) from None
    if len(raw) > limit:
        raise size_error(len(raw), limit, what, where)
    return raw


_KEEP_STRUCTURE = bytes(b for b in range(256) if b not in b'[]{}"')
_EMPTY_PAIR = re.compile(rb"\[\]|\{\}")


def json_depth_problem(raw: bytes, max_depth: int = JSON_MAX_DEPTH) -> str | None:
    """Why ``raw`` (JSON as UTF-8) must not reach the parser, or None: too deep, unbalanced.

    No recursion and no per-character Python loop: escaped backslashes and quotes are
    dropped, everything but brackets and quotes is deleted, the quoted parts (strings)
    are cut out, and innermost ``[]``/``{}`` pairs are removed pass by pass; the number
    of passes is the depth. Only brackets outside strings count, as for the parser.
    A few unbalanced brackets (a truncated file) are left to the parser, whose error
    says where; it cannot nest deeper than twice ``max_depth`` on them.
    """
    skel = raw.replace(b"\\\\", b"").replace(b'\\"', b"").translate(None, _KEEP_STRUCTURE)
    skel = b"".join(skel.split(b'"')[::2])
    for _ in range(max_depth):
        if not skel:
            return None
        shorter = _EMPTY_PAIR.sub(b"", skel)
        if len(shorter) == len(skel):  # unbalanced: invalid JSON whatever the depth
            # a few stray brackets: the parser stays shallow and says where it broke
            return None if len(skel) <= max_depth else "brackets do not balance"
        skel = shorter
    return None if not skel else f"nested deeper than {max_depth} levels"


def parse_json(raw: bytes | str, where: str, *, max_depth: int = JSON_MAX_DEPTH,
               object_pairs_hook: Any = None) -> Any:
    """JSON from bytes (UTF-8, BOM allowed) or text, depth-checked first; one-line errors."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    problem = json_depth_problem(data, max_depth)
    if problem is not None:
        raise KaiError(f"not valid JSON: {problem}", where=where)
    try:
        text = raw if isinstance(raw, str) else raw.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise KaiError(f"not valid JSON: not UTF-8 ({err.reason} at byte {err.start})",
                       where=where) from None
    try:
        return json.loads(text, object_pairs_hook=object_pairs_hook)
    except json.JSONDecodeError as err:
        raise KaiError(f"not valid JSON: {err.msg} (line {err.lineno} column {err.colno})",
                       where=where) from None
    except (ValueError, RecursionError) as err:  # a hook's refusal; digits over the limit
        raise KaiError(f"not valid JSON: {err}", where=where) from None


def load_json_file(path: Path, *, max_bytes: int, what: str, max_depth: int = JSON_MAX_DEPTH,
                   object_pairs_hook: Any = None) -> Any:
    """The one bounded JSON read: a regular file of at most ``max_bytes``, nested at most
    ``max_depth`` deep, parsed; every problem is a one-line :class:`KaiError` naming it."""
    raw = read_bounded_bytes(path, max_bytes, what)
    return parse_json(raw, str(path), max_depth=max_depth, object_pairs_hook=object_pairs_hook)


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temp path beside ``path`` to write to; on a clean exit it replaces ``path``.

    For writers that want a file name (``safetensors.save_file``); text goes
    through :func:`atomic_write_text`.
    """
    path = Path(path)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        with tmp.open("rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` as UTF-8 with ``\\n`` line ends to ``path``: the old file or the new."""
    with atomic_path(path) as tmp, tmp.open("w", encoding="utf-8", newline="\n") as f:
        f.write(text)


def read_jsonl(path: Path, *, max_bytes: int = DATA_MAX_BYTES) -> list[JsonRow]:
    """Every object of a JSON Lines file, with its ``file:line`` (a regular file of at most
    ``max_bytes``; each line nested at most :data:`JSON_MAX_DEPTH` deep)."""
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise KaiError("file not found", where=str(path))
    raw = read_bounded_bytes(path, max_bytes, "JSON Lines files")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise KaiError(f"not UTF-8 ({e.reason} at byte {e.start})", where=str(path)) from None
    return _parse(io.StringIO(text, newline=None), str(path))


def parse_jsonl(text: str, where: str) -> list[JsonRow]:
    """:func:`read_jsonl` for text already in memory (``where`` names its source)."""
    return _parse(io.StringIO(text), where)


def _parse(lines: Iterable[str], where: str) -> list[JsonRow]:
    rows: list[JsonRow] = []
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        problem = json_depth_problem(line.encode("utf-8", "surrogatepass"))
        if problem is not None:
            raise KaiError(f"not JSON: {problem}", where=f"{where}:{n}")
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as e:
            raise KaiError(f"not JSON: {e.msg} (column {e.colno})", where=f"{where}:{n}") from None
        except (ValueError, RecursionError) as e:
            raise KaiError(f"not JSON: {e}", where=f"{where}:{n}") from None
        if not isinstance(obj, dict):
            raise KaiError("expected a JSON object", where=f"{where}:{n}")
        rows.append((f"{where}:{n}", obj))
    return rows


READAHEAD_MEMORY_SHARE = 0.25
"""Largest share of the memory available now that :func:`readahead` asks to be read ahead."""


def _weight_files(paths: Iterable[Path]) -> list[Path]:
    """``*.safetensors`` of each model folder and its sub-folders, or the file itself."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out += sorted(p.glob("*.safetensors")) + sorted(p.glob("*/*.safetensors"))
        elif p.suffix == ".safetensors":
            out.append(p)
    return out


def _available_bytes() -> int:
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 0


HINT_BYTES_DEFAULT = 128 << 10
"""Bytes per read-ahead hint where the device's limits are unknown: the usual
``read_ahead_kb``, which no Linux block device goes below by default."""


@functools.cache
def _hint_bytes(device: int) -> int:
    """The most one ``POSIX_FADV_WILLNEED`` call reads on ``device`` (an ``st_dev``).

    Why it matters: since Linux 5.x a hint reads at most ``max(read_ahead_kb,
    max_sectors_kb)`` of the device, whatever length it asks for; the rest is dropped
    silently. Measured on kernel 6.18: 64 MB hints cached 1.25 MB each on a loop device
    and 8 MB each on a virtio disk. Read from sysfs (the partition's disk for a
    partition); :data:`HINT_BYTES_DEFAULT` where there is none (tmpfs, overlays).
    """
    base = Path(f"/sys/dev/block/{os.major(device)}:{os.minor(device)}")
    for queue in (base / "queue", base.parent / "queue"):
        try:
            kb = [int((queue / name).read_text().strip())
                  for name in ("read_ahead_kb", "max_sectors_kb")]
        except (OSError, ValueError):
            continue
        return max(max(kb) << 10, 4096)
    return HINT_BYTES_DEFAULT


def interleaved_weight_files(paths: Iterable[Path]) -> list[Path]:
    """:func:`_weight_files` of each path, taking turns: first files of every model, then
    the second files, ... -- the order two models' matching tensors are compared in."""
    per_model = [_weight_files([p]) for p in paths]
    return [f for files in itertools.zip_longest(*per_model) for f in files if f is not None]


def willneed(fd: int, offset: int, length: int, step: int | None = None) -> None:
    """``POSIX_FADV_WILLNEED`` for ``length`` bytes of ``fd`` from ``offset``, one hint per
    ``step`` bytes (default: what the device reads for one, :func:`_hint_bytes`), since a
    longer hint is cut short by the kernel. Only a hint: errors are ignored."""
    if not hasattr(os, "posix_fadvise") or length <= 0:
        return
    try:
        step = step or _hint_bytes(os.fstat(fd).st_dev)
        for off in range(offset, offset + length, step):
            os.posix_fadvise(fd, off, min(step, offset + length - off), os.POSIX_FADV_WILLNEED)
    except OSError:
        pass


def readahead_files(paths: Iterable[Path], *, skip: Iterable[Path] = ()) -> list[list[Path]]:
    """Per model, the weight files :func:`readahead` hints: all but those in ``skip``."""
    skipped = {Path(p) for p in skip}
    return [[f for f in _weight_files([p]) if f not in skipped] for p in paths]


def readahead(paths: Iterable[Path], *, skip: Iterable[Path] = ()) -> threading.Thread | None:
    """Ask the kernel to start reading model weight files, on a daemon thread; only a hint.

    Why: a cold ``kai provenance`` spent its first seconds importing numpy and SciPy
    and reading headers while the disk stood idle, then waited for the disk. Called
    before those imports (``POSIX_FADV_WILLNEED``), the disk reads while the CPU starts
    up. The models take turns (candidate, reference, candidate, ...): a test needs the
    same tensor of both, and hinting the whole candidate first made every test wait for
    the reference's half of the disk. Each hint is no longer than the device reads for
    one (:func:`_hint_bytes`). At most :data:`READAHEAD_MEMORY_SHARE` of the memory
    available is asked for, so a model larger than memory does not evict its own first
    pages. Regular files only (opened without blocking, checked after opening); any
    error skips the file.

    ``skip``: files something else reads from start to end anyway (the threads hashing
    every input byte, :func:`kaieval.filehash.hash_ahead`). Hinting them too cost more
    than it saved: on a disk throttled to ~1.4 GB/s, ``kai provenance`` took 7.5-7.9 s
    with them hinted in device-sized pieces and 6.7-7.1 s without (docs/performance.md);
    a file whose digest is remembered is not read by the hashing, and for it the hint is
    what keeps the disk busy. Returns the thread (``None`` where ``posix_fadvise`` does
    not exist).
    """
    if not hasattr(os, "posix_fadvise"):
        return None
    per_model = readahead_files(paths, skip=skip)

    def spans(files: list[Path]) -> Iterator[tuple[int, int, int]]:
        """(fd, offset, length) of each hint, the file opened once and closed after."""
        for f in files:
            try:
                fd = os.open(f, os.O_RDONLY | os.O_NONBLOCK)
            except OSError:
                continue
            try:
                st = os.fstat(fd)
                if not stat.S_ISREG(st.st_mode):  # a FIFO or device: never hinted
                    continue
                step = _hint_bytes(st.st_dev)
                for off in range(0, st.st_size, step):
                    yield fd, off, min(step, st.st_size - off)
            except OSError:
                continue
            finally:
                os.close(fd)

    def run() -> None:
        budget = int(_available_bytes() * READAHEAD_MEMORY_SHARE)
        for turn in itertools.zip_longest(*(spans(files) for files in per_model)):
            for span in turn:
                if span is None:
                    continue
                if budget <= 0:
                    return
                fd, off, n = span
                with contextlib.suppress(OSError):
                    os.posix_fadvise(fd, off, min(n, budget), os.POSIX_FADV_WILLNEED)
                budget -= n

    thread = threading.Thread(target=run, name="kai-readahead", daemon=True)
    thread.start()
    return thread
