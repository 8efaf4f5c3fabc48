"""A validating, streaming safetensors reader for untrusted model artifacts.

Why not ``safetensors.safe_open``: submitted weights are untrusted, and a bad
file must end in one readable :class:`~kaieval.errors.KaiError` naming the file
and the fault, not in a Rust panic or an allocation the size of a forged header.
So the header is checked completely (length bound, JSON object, dtypes, shapes,
offsets, sizes, overlaps, holes) before a single data byte is touched, and data
is then read with ``pread`` into bounded buffers, only the rows and columns a test
uses: a 200 GB model costs the memory of the parts being compared, not of the
model, and no file page stays mapped into the process after its read.

Pickle checkpoints are refused by file name and never opened; repository code
(``*.py``, ``auto_map``) is refused unless the caller acknowledges it, and even
then it is never imported -- only weights are read.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import mmap
import os
import struct
import threading
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from kaieval.artifacts import check_tree, is_pickle, refuse_pickle
from kaieval.errors import KaiError
from kaieval.io import CONFIG_MAX_BYTES, INDEX_MAX_BYTES, load_json_file, open_regular, parse_json
from kaieval.provenance import fp8

MAX_HEADER_BYTES = 100 * 1024 * 1024
"""Largest header accepted; real headers of 100B-parameter shards are a few hundred KB."""

DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E4M3": 1, "F8_E5M2": 1,
    "U16": 2, "I16": 2, "F16": 2, "BF16": 2,
    "U32": 4, "I32": 4, "F32": 4,
    "U64": 8, "I64": 8, "F64": 8,
}
"""Every dtype of the safetensors format, with its item size in bytes."""

FLOAT_DTYPES = frozenset({"F16", "BF16", "F32", "F64", "F8_E4M3", "F8_E5M2"})
"""Dtypes converted to fp32 for statistics; the rest are compared by hash only."""

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
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


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor's bytes lie, as validated from its file's header."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    start: int  # absolute byte offset of the data in ``file``
    nbytes: int
    scale: TensorInfo | None = None  # an FP8 weight's scale tensor (see fp8.py)
    scale_block: tuple[int, int] = (1, 1)  # weight rows x columns one scale covers

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


def _no_duplicate_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise ValueError(f"duplicate key {key!r}")
        out[key] = value
    return out


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def read_header(path: Path) -> dict[str, TensorInfo]:
    """Validate a ``.safetensors`` header and return its tensors; reads no tensor data."""
    where = str(path)
    try:
        with open_regular(path) as f:  # a FIFO or device named *.safetensors: refused
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            if len(head) < 8:
                raise KaiError(f"file truncated: {size} bytes, less than the 8-byte header "
                               "length", where=where)
            (n,) = struct.unpack("<Q", head)
            if n > MAX_HEADER_BYTES:
                raise KaiError(f"header length {n} exceeds the {MAX_HEADER_BYTES // 2**20} MB "
                               "limit", where=where)
            if n > size - 8:
                raise KaiError(f"header length {n} is larger than the file ({size - 8} bytes "
                               "after the length field)", where=where)
            raw = f.read(n)
    except OSError as err:
        raise KaiError(f"cannot read: {err.strerror or err}", where=where) from None
    header = parse_json(raw, where, object_pairs_hook=_no_duplicate_keys)
    if not isinstance(header, dict):
        raise KaiError(f"header is a JSON {type(header).__name__}, expected an object",
                       where=where)
    data_start = 8 + n
    data_len = size - data_start
    infos: list[tuple[int, int, TensorInfo]] = []
    for name, entry in header.items():
        if name == "__metadata__":
            if not isinstance(entry, dict) or not all(
                    isinstance(v, str) for v in entry.values()):
                raise KaiError("__metadata__ must map strings to strings", where=where)
            continue
        infos.append(_entry(name, entry, data_start, where))
    infos.sort(key=lambda t: (t[0], t[1]))
    expected = 0
    prev = ""
    contiguous = True
    for begin, end, info in infos:
        if begin < expected:
            raise KaiError(f"tensor {info.name!r} data_offsets [{begin}, {end}] overlap "
                           f"tensor {prev!r} (which ends at {expected})", where=where)
        if begin > expected:
            contiguous = False
        expected, prev = end, info.name
    for begin, end, info in infos:
        if end > data_len:
            if contiguous:
                raise KaiError(f"file truncated: header describes {expected} data bytes, "
                               f"the file holds {data_len}", where=where)
            raise KaiError(f"tensor {info.name!r} data_offsets [{begin}, {end}] out of range "
                           f"(data section is {data_len} bytes)", where=where)
    if not contiguous:
        raise KaiError("data_offsets leave a hole in the data section (tensors must cover "
                       "it contiguously from 0)", where=where)
    if expected != data_len:
        raise KaiError(f"{data_len - expected} trailing bytes after the last tensor are not "
                       "described by the header", where=where)
    return {info.name: info for _, _, info in infos}


def _entry(name: str, entry: object, data_start: int, where: str) -> tuple[int, int, TensorInfo]:
    """Check one header entry's fields; return (begin, end, info)."""
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise KaiError(f"tensor {name!r}: entry must be an object with exactly dtype, shape, "
                       "data_offsets", where=where)
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise KaiError(f"tensor {name!r}: unknown dtype {dtype!r}", where=where)
    if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
        raise KaiError(f"tensor {name!r}: shape {shape!r} is not a list of non-negative "
                       "integers", where=where)
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(_is_int(o) and o >= 0 for o in offsets)):
        raise KaiError(f"tensor {name!r}: data_offsets {offsets!r} is not a pair of "
                       "non-negative integers", where=where)
    begin, end = offsets
    if begin > end:
        raise KaiError(f"tensor {name!r}: data_offsets begin {begin} > end {end}", where=where)
    want = math.prod(shape) * DTYPE_SIZES[dtype]
    if end - begin != want:
        raise KaiError(f"tensor {name!r}: {end - begin} data bytes but dtype {dtype} shape "
                       f"{shape} needs {want} (size mismatch)", where=where)
    info = TensorInfo(name, dtype, tuple(shape), Path(where), data_start + begin, end - begin)
    return begin, end, info


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


def _pread_into(fd: int, buf: npt.NDArray[np.uint8], offset: int, info: TensorInfo) -> None:
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


def _indices(sel: npt.ArrayLike, n: int, name: str, what: str, where: str) -> IntArray:
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


def _gather(info: TensorInfo, idx: IntArray, col: IntArray | None,
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
                        _pread_into(fd, raw, offset, info)
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


@dataclass
class ModelWeights:
    """The tensors of one model, across shards and sub-folder components, read lazily.

    Names of tensors in a sub-folder component are qualified with the folder
    (``vision_encoder/blocks.0.attn.qkv.weight``) so they never collide with the
    language model's names.
    """

    root: Path
    tensors: dict[str, TensorInfo]
    weight_files: tuple[Path, ...]
    tokenizer: Path | None = None
    subfolders: tuple[str, ...] = ()

    @property
    def name(self) -> str:
        return self.root.stem if self.root.is_file() else self.root.name

    def names(self) -> list[str]:
        return sorted(self.tensors)

    def raw(self, name: str) -> npt.NDArray[np.uint8]:
        """The tensor's bytes as a read-only memory map (nothing is read until used).

        A fresh map per tensor, dropped with the array: the pages it touched leave the
        process when the comparison is done, so resident memory stays at ~two tensors.
        """
        info = self.tensors[name]
        if info.nbytes == 0:
            return np.zeros(0, dtype=np.uint8)
        return np.memmap(info.file, dtype=np.uint8, mode="r", offset=info.start,
                         shape=(info.nbytes,))

    def load(self, name: str) -> FloatArray:
        """One tensor as fp32 in its own shape (read with ``pread``, not faulted in)."""
        info = self.tensors[name]
        out = self.load_info(info)
        if info.scale is None:
            return out
        if len(info.shape) == 2:
            out *= fp8.scale_factors(self._scale(info), info.scale_block,
                                     np.arange(info.shape[0]), np.arange(info.shape[1]))
        else:
            out *= self._scale(info).reshape(-1)[0]
        return out

    def _scale(self, info: TensorInfo) -> FloatArray:
        """An FP8 weight's scale tensor as fp32 (small: one value per block)."""
        assert info.scale is not None
        return self.load_info(info.scale)

    def load_info(self, info: TensorInfo) -> FloatArray:
        """A tensor given by its :class:`TensorInfo` (e.g. a scale) as fp32."""
        buf = np.empty(info.nbytes, dtype=np.uint8)
        if info.nbytes:
            fd = os.open(info.file, os.O_RDONLY)
            try:
                _pread_into(fd, buf, info.start, info)
            finally:
                os.close(fd)
        return to_float32(buf, info.dtype, str(info.file)).reshape(info.shape)

    def rows(self, name: str, index: npt.NDArray[np.intp]) -> FloatArray:
        """Selected rows of a 2-D tensor as fp32 (see :meth:`block`)."""
        return self.block(name, index)

    def block(self, name: str, rows: npt.ArrayLike | None = None,
              cols: npt.ArrayLike | None = None) -> FloatArray:
        """``tensor[rows][:, cols]`` of a 2-D tensor as fp32, reading little more than that.

        Why not the memory map: gathering scattered elements through a map faults pages
        in one by one and copies them as opaque items, which cost more than the
        statistics. Here the selected rows are read with ``preadv`` in spans (rows
        closer than :data:`GAP_BYTES` share one read; a span is at most
        :data:`SPAN_BYTES`), the columns are gathered as integer bit patterns, and only
        the selected elements are converted to fp32. ``rows`` may be in any order and
        repeat; ``None`` means all. Memory: the output plus one span.
        """
        info = self.tensors[name]
        where = str(info.file)
        if len(info.shape) != 2:
            raise KaiError(f"tensor {name!r} is not 2-D", where=where)
        n_rows, n_cols = info.shape
        idx = (np.arange(n_rows, dtype=np.intp) if rows is None
               else _indices(rows, n_rows, name, "row", where))
        col = None if cols is None else _indices(cols, n_cols, name, "column", where)
        item = DTYPE_SIZES[info.dtype]
        out = np.empty((len(idx), n_cols if col is None else len(col)), dtype=UINT_OF_SIZE[item])
        if out.size:
            _gather(info, idx, col, out)
        flat = out.reshape(-1).view(np.uint8)
        values = to_float32(flat, info.dtype, where).reshape(out.shape)
        if info.scale is not None:
            values *= fp8.scale_factors(self._scale(info), info.scale_block, idx,
                                        np.arange(n_cols) if col is None else col)
        return values

    def prefetch(self, names: Iterable[str]) -> None:
        """Ask the kernel to start reading these tensors' bytes (``POSIX_FADV_WILLNEED``).

        Called for the next tensors while the current ones are tested, so on a cold page
        cache the disk works while the CPU does. Only a hint: unknown names, errors and
        platforms without ``posix_fadvise`` are ignored.
        """
        if not hasattr(os, "posix_fadvise"):
            return
        for name in names:
            info = self.tensors.get(name)
            if info is None or info.nbytes == 0:
                continue
            try:
                fd = os.open(info.file, os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, info.start, info.nbytes, os.POSIX_FADV_WILLNEED)
            except OSError:
                pass
            finally:
                os.close(fd)

    def chunks(self, name: str, size: int = 1 << 24) -> Iterator[memoryview]:
        """The tensor's raw bytes in chunks of at most ``size``, for hashing.

        Read with ``pread`` into one reused buffer, not through the memory map: every
        page a map touches stays in this process's resident set until the map is
        dropped, so hashing a 131 MB embedding that way added 131 MB to the peak RSS
        (and more for larger models), while this costs ``size`` whatever the tensor.
        Each chunk is valid only until the next one is requested.
        """
        info = self.tensors[name]
        if info.nbytes == 0:
            yield memoryview(b"")
            return
        buf = np.empty(min(size, info.nbytes), dtype=np.uint8)
        fd = os.open(info.file, os.O_RDONLY)
        try:
            for off in range(0, info.nbytes, size):
                part = buf[:min(size, info.nbytes - off)]
                _pread_into(fd, part, info.start + off, info)
                yield part.data
        finally:
            os.close(fd)


def _refuse_untrusted(root: Path, trust_remote_code: bool) -> None:
    """Refuse repository code unless acknowledged; it is never executed either way."""
    if trust_remote_code:
        return
    code = sorted(p for p in root.rglob("*.py")
                  if not any(part.startswith(".") for part in p.relative_to(root).parts))
    if code:
        raise KaiError(f"repository code present ({code[0].relative_to(root)}); refused "
                       "unless trust_remote_code is set (it is never executed)", where=str(root))
    config = root / "config.json"
    if config.is_file():
        data = load_json_file(config, max_bytes=CONFIG_MAX_BYTES, what="config files")
        if isinstance(data, dict) and "auto_map" in data:
            raise KaiError("auto_map names repository code; refused unless trust_remote_code "
                           "is set (it is never executed)", where=str(config))


def _read_index(root: Path, index: Path) -> tuple[dict[str, TensorInfo], tuple[Path, ...]]:
    """Validate a sharded model's index: shards exist, every named tensor is in its shard."""
    where = str(index)
    data = load_json_file(index, max_bytes=INDEX_MAX_BYTES, what="safetensors index files")
    wmap = data.get("weight_map") if isinstance(data, dict) else None
    if not isinstance(wmap, dict) or not wmap or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in wmap.items()):
        raise KaiError("weight_map must be a non-empty object of tensor name -> shard file",
                       where=where)
    headers: dict[str, dict[str, TensorInfo]] = {}
    tensors: dict[str, TensorInfo] = {}
    for tname, shard in wmap.items():
        if shard not in headers:
            spath = root / shard
            if Path(shard).name != shard or not shard.endswith(".safetensors"):
                raise KaiError(f"shard {shard!r} must be a .safetensors file name in the model "
                               "folder", where=where)
            if not spath.is_file():
                raise KaiError(f"missing shard {shard!r} (named for tensor {tname!r})",
                               where=where)
            headers[shard] = read_header(spath)
        if tname not in headers[shard]:
            raise KaiError(f"tensor {tname!r} is not in its shard {shard!r}", where=where)
        tensors[tname] = headers[shard][tname]
    return tensors, tuple(root / s for s in sorted(headers))


def _read_folder(root: Path) -> tuple[dict[str, TensorInfo], tuple[Path, ...]] | None:
    """The weights of one folder, or None when it holds no safetensors."""
    if (root / INDEX_NAME).is_file():
        return _read_index(root, root / INDEX_NAME)
    if (root / SINGLE_NAME).is_file():
        return read_header(root / SINGLE_NAME), (root / SINGLE_NAME,)
    files = sorted(root.glob("*.safetensors"))
    if len(files) == 1:
        return read_header(files[0]), (files[0],)
    if files:
        raise KaiError(f"{len(files)} .safetensors files but no {INDEX_NAME} to say which "
                       "tensors they hold", where=str(root))
    pickles = sorted(p for p in root.iterdir() if p.is_file() and is_pickle(p))
    if pickles:
        refuse_pickle(pickles[0], root)
    return None


def open_model(path: Path, *, trust_remote_code: bool = False) -> ModelWeights:
    """Open a model folder (single file or sharded, plus sub-folder components) or one file.

    Every header is validated here, so later reads cannot fail on a malformed file.
    """
    path = Path(path)
    if path.is_file():
        if is_pickle(path):
            refuse_pickle(path)
        if path.suffix != ".safetensors":
            raise KaiError("not a .safetensors file or a model folder", where=str(path))
        return ModelWeights(path, fp8.attach_scales(read_header(path), None), (path,))
    if not path.is_dir():
        raise KaiError("no such model file or folder", where=str(path))
    check_tree(path)  # special files, oversized configs, links out of the folder
    _refuse_untrusted(path, trust_remote_code)
    top = _read_folder(path)
    tensors: dict[str, TensorInfo] = dict(top[0]) if top else {}
    if tensors:
        from kaieval.provenance.fused import split_fused  # fused.py imports this module

        tensors = split_fused(fp8.attach_scales(tensors, path), path)
    files: list[Path] = list(top[1]) if top else []
    subs: list[str] = []
    for sub in sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith(".")):
        found = _read_folder(sub)
        if found is None:
            continue
        subs.append(sub.name)
        tensors.update({f"{sub.name}/{k}": v
                        for k, v in fp8.attach_scales(found[0], sub).items()})
        files.extend(found[1])
    if not tensors:
        raise KaiError("no safetensors weights found", where=str(path))
    tok = path / "tokenizer.json"
    return ModelWeights(path, tensors, tuple(files), tok if tok.is_file() else None, tuple(subs))
