"""Validating a ``.safetensors`` header before any data byte is touched.

Why not ``safetensors.safe_open``: submitted weights are untrusted, and a bad file
must end in one readable :class:`~kaieval.errors.KaiError` naming the file and the
fault, not in a Rust panic or an allocation the size of a forged header. So the
header is checked completely here (length bound, JSON object, dtypes, shapes,
offsets, sizes, overlaps, holes); :mod:`kaieval.provenance.safetensors_read` then
reads only the bytes it describes. The HF backend checks a model's files with it too
before any weights load. Outside the provenance package on purpose: importing that
package costs ~0.6 s (its tests, numpy, SciPy), which ``kai eval`` need not pay.
"""

from __future__ import annotations

import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kaieval.errors import KaiError
from kaieval.io import open_regular, parse_json

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
