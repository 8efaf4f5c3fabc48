"""Reading validated tensors: bounded ``pread`` spans, large spans mapped, fp32 out.

Only the rows and columns a test uses are read, so a 200 GB model costs the memory
of the parts being compared, not of the model, and no file page stays mapped into
the process after its read. Offsets come from :func:`~kaieval.safetensors_header.read_header`, which
has checked them against the file.
"""

from __future__ import annotations

import contextlib
import itertools
import mmap
import os
import threading
from typing import Any

import numpy as np
import numpy.typing as npt

from kaieval.errors import KaiError
from kaieval.provenance import fp8
from kaieval.safetensors_header import DTYPE_SIZES, TensorInfo

FloatArray = npt.NDArray[np.float32]
IntArray = npt.NDArray[np.intp]

UINT_OF_SIZE: dict[int, np.dtype[Any]] = {
    1: np.dtype(np.uint8), 2: np.dtype("<u2"), 4: np.dtype("<u4"), 8: np.dtype("<u8")}
"""Unsigned integer dtype per item size: elements are gathered as bits, converted after."""

GAP_BYTES = 1 << 16
"""Selected rows closer than this are read in one span: copying the gap costs less than
another system call."""

SPAN_BYTES = 1 << 25
"""Most bytes read at once (one row more when a single row is wider): bounds memory."""


def to_float32(raw: npt.NDArray[np.uint8], dtype: str, where: str) -> FloatArray:
    """Convert little-endian bytes to fp32 (bf16 by widening uint16 to the high half of uint32)."""
    if dtype == "BF16":
        wide: npt.NDArray[np.uint32] = np.left_shift(raw.view("<u2"), np.uint32(16),
                                                     dtype=np.uint32)
        return wide.view(np.float32)
    if dtype in ("F16", "F32", "F64"):
        src = {"F16": "<f2", "F32": "<f4", "F64": "<f8"}[dtype]
        return raw.view(src).astype(np.float32)
    if dtype in fp8.FP8_DTYPES:
        return fp8.decode(raw, dtype)
    raise KaiError(f"dtype {dtype} cannot be converted to fp32 for statistics", where=where)


def pread_into(fd: int, buf: npt.NDArray[np.uint8], offset: int, info: TensorInfo) -> None:
    """Fill ``buf`` from ``offset``; a file that ends early is a clear error, not garbage."""
    view = buf.data
    got = 0
    while got < len(view):
        n = os.preadv(fd, [view[got:]], offset + got)
        if n <= 0:
            raise KaiError(f"tensor {info.name!r}: short read ({got} of {len(view)} bytes at "
                           f"offset {offset}); the file changed or is truncated",
                           where=str(info.file))
        got += n


def check_indices(sel: npt.ArrayLike, n: int, name: str, what: str, where: str) -> IntArray:
    idx = np.asarray(sel).reshape(-1)
    if idx.size and not np.issubdtype(idx.dtype, np.integer):
        raise KaiError(f"tensor {name!r}: {what} indices must be integers", where=where)
    idx = idx.astype(np.intp, copy=False)
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise KaiError(f"tensor {name!r}: {what} index out of range 0..{n - 1}", where=where)
    return idx


_scratch = threading.local()


def _span_buffer(nbytes: int) -> npt.NDArray[np.uint8]:
    """This thread's read buffer, at least ``nbytes`` long (grown, never shrunk).

    Why one per thread, kept: a fresh multi-MB ``np.empty`` per read comes from ``mmap``,
    and the kernel faults in and zeroes every page of it again before ``pread`` fills it
    -- for the ~600 span reads of a 2 GB comparison that was about a million minor page
    faults. A thread holds at most :data:`SPAN_BYTES` plus one row; the pool's threads
    end with each phase, and their buffers with them.
    """
    buf: npt.NDArray[np.uint8] | None = getattr(_scratch, "buf", None)
    if buf is None or len(buf) < nbytes:
        buf = np.empty(nbytes, dtype=np.uint8)
        _scratch.buf = buf
    return buf


def gather(info: TensorInfo, idx: IntArray, col: IntArray | None,
            out: npt.NDArray[Any]) -> None:
    """Fill ``out`` with ``tensor[idx][:, col]`` as raw items, reading row spans in order."""
    n_cols = info.shape[1]
    width = n_cols * DTYPE_SIZES[info.dtype]
    utype = out.dtype
    in_order = bool(np.all(idx[1:] >= idx[:-1]))
    order = np.arange(len(idx)) if in_order else np.argsort(idx, kind="stable")
    srt = idx if in_order else idx[order]
    strict = bool(np.all(srt[1:] > srt[:-1]))  # no repeated row
    gap_rows = max(1, GAP_BYTES // max(width, 1))
    span_rows = max(1, SPAN_BYTES // max(width, 1))
    cuts = np.flatnonzero(np.diff(srt) > gap_rows) + 1
    bounds = [0, *cuts.tolist(), len(srt)]
    fd = os.open(info.file, os.O_RDONLY)
    try:
        for a, b in itertools.pairwise(bounds):
            k = a
            while k < b:
                first = int(srt[k])
                j = k + int(np.searchsorted(srt[k:b], first + span_rows, side="left"))
                count = int(srt[j - 1]) - first + 1
                nbytes = count * width
                offset = info.start + first * width
                mm = _map_span(fd, offset, nbytes)
                try:
                    if mm is None:
                        raw = _span_buffer(nbytes)[:nbytes]
                        pread_into(fd, raw, offset, info)
                    else:
                        raw = np.frombuffer(mm, dtype=np.uint8, count=nbytes,
                                            offset=offset % mmap.ALLOCATIONGRANULARITY)
                    table = raw.view(utype).reshape(count, n_cols)
                    sel = srt[k:j] - first
                    # np.take, not fancy indexing: 2-3x faster for these gathers (measured)
                    dest = out[k:j] if in_order else np.empty((j - k, out.shape[1]),
                                                              dtype=utype)
                    # every row of the span selected (the common dense case): no row copy
                    picked = (table if strict and len(sel) == count
                              else np.take(table, sel, axis=0))
                    if col is None:
                        dest[...] = picked
                    else:
                        np.take(picked, col, axis=1, out=dest)
                    if not in_order:
                        out[order[k:j]] = dest
                    del raw, table, picked  # no view of the map may outlive it
                finally:
                    if mm is not None:
                        with contextlib.suppress(BufferError):  # after an error: GC closes it
                            mm.close()
                k = j
    finally:
        os.close(fd)


MAP_BYTES = 1 << 20
"""Spans from this size are mapped (``MAP_POPULATE``) rather than copied with ``pread``."""


def _map_span(fd: int, offset: int, nbytes: int) -> mmap.mmap | None:
    """``nbytes`` of ``fd`` from ``offset`` mapped read-only and populated, or None (then read).

    Why map a large span: the tests read most rows of most matrices, and copying each
    span from the page cache (``pread``) cost about a second of system time on a 2 GB
    pair; a populated map costs the page-table entries only, and is unmapped as soon as
    the elements are gathered, so the resident set still holds one span per thread.
    Not for small spans (two system calls more than a read) nor where the file is now
    shorter than the header said (a map past the end would fault: ``pread`` then reports
    the short read).
    """
    if nbytes < MAP_BYTES or not _MAP_FLAGS:
        return None
    start = offset - offset % mmap.ALLOCATIONGRANULARITY
    try:
        if os.fstat(fd).st_size < offset + nbytes:
            return None
        return mmap.mmap(fd, offset + nbytes - start, flags=_MAP_FLAGS, prot=mmap.PROT_READ,
                         offset=start)
    except (OSError, ValueError):
        return None


_MAP_FLAGS = (mmap.MAP_SHARED | mmap.MAP_POPULATE) if hasattr(mmap, "MAP_POPULATE") else 0
