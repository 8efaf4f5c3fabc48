"""Reading a task's documents: local JSONL / JSON / CSV / Parquet, or a pinned HF dataset.

Local files are read without the ``datasets`` package so tests and the demo run
offline; CSV columns whose every value is an integer (or number) become ints
(floats), as ``datasets`` infers them, so a template like ``{{label}}`` renders
the same under both tools. Parquet needs pyarrow; Hugging Face needs ``datasets``
and a network -- each missing piece is a one-line error saying what to install.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from kaieval.bench.tasks.config import HFSplit, LocalSplit, Split
from kaieval.errors import KaiError
from kaieval.hashing import sha256_file
from kaieval.io import (
    DATA_MAX_BYTES,
    check_bounded_file,
    parse_json,
    read_bounded_bytes,
    read_jsonl,
)

Record = dict[str, Any]


def _read_jsonl(path: Path) -> list[Record]:
    return [row for _where, row in read_jsonl(path)]


def _read_json(path: Path) -> list[Record]:
    raw = read_bounded_bytes(path, DATA_MAX_BYTES, "task data files")
    try:
        obj = parse_json(raw, str(path))
    except KaiError:
        return _read_jsonl(path)  # datasets' json loader also accepts JSON lines in .json
    if isinstance(obj, dict) and len(obj) == 1 and isinstance(next(iter(obj.values())), list):
        obj = next(iter(obj.values()))
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise KaiError("expected a JSON array of objects", where=str(path))
    return list(obj)


def _infer(values: list[str]) -> list[Any]:
    for kind in (int, float):
        try:
            return [kind(v) for v in values]
        except ValueError:
            continue
    return values


def _read_csv(path: Path) -> list[Record]:
    try:
        text = read_bounded_bytes(path, DATA_MAX_BYTES, "task data files").decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise KaiError(f"not UTF-8 ({e.reason} at byte {e.start})", where=str(path)) from None
    rows = list(csv.DictReader(io.StringIO(text, newline="")))
    if not rows:
        return []
    columns = {k: _infer([r[k] for r in rows]) for k in rows[0]}
    return [{k: columns[k][i] for k in columns} for i in range(len(rows))]


def _read_parquet(path: Path) -> list[Record]:
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise KaiError("reading Parquet needs pyarrow: pip install pyarrow",
                       where=str(path)) from None
    check_bounded_file(path, DATA_MAX_BYTES, "task data files")  # before pyarrow opens it
    table = pq.read_table(path)
    return [dict(r) for r in table.to_pylist()]


_READERS = {".jsonl": _read_jsonl, ".json": _read_json, ".csv": _read_csv,
            ".parquet": _read_parquet}


def read_local(path: Path) -> list[Record]:
    if not path.is_file():
        raise KaiError("data file not found", where=str(path))
    reader = _READERS.get(path.suffix.lower())
    if reader is None:
        raise KaiError(f"unsupported data format {path.suffix!r}; use "
                       + ", ".join(sorted(_READERS)), where=str(path))
    return reader(path)


def read_hf(split: HFSplit) -> list[Record]:
    """Load a Hugging Face split (online only). Never called by the test suite."""
    try:
        import datasets
    except ImportError:
        raise KaiError(f"dataset {split.path} is on the Hugging Face hub; install `datasets` "
                       "and go online, or use the bundled sample") from None
    revision = None if split.revision == "unpinned-unknown" else split.revision
    try:
        ds = datasets.load_dataset(split.path, split.name, split=split.split, revision=revision)
    except Exception as exc:
        raise KaiError(f"could not load {split.path} ({split.name}, {split.split}): "
                       f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
                       ) from None
    return [dict(r) for r in ds]


def read_split(split: Split) -> list[Record]:
    return read_local(split.path) if isinstance(split, LocalSplit) else read_hf(split)


def split_hash(split: Split) -> str:
    """Content hash of a local file; for the hub, the pinned id (its content is not local)."""
    if isinstance(split, LocalSplit):
        return sha256_file(split.path)
    return f"hf:{split.path}/{split.name or '-'}/{split.split}@{split.revision}"


def resolve_data_path(raw: str, base_dir: Path, *, where: str) -> Path:
    """A data path relative to the task file's folder (or, as lm-eval does, the cwd)."""
    path = Path(raw).expanduser()
    candidates = [path] if path.is_absolute() else [base_dir / path, Path.cwd() / path]
    for cand in candidates:
        if cand.is_file():
            return cand.resolve()
    raise KaiError(f"data file {raw!r} not found (looked in {base_dir} and the current folder)",
                   where=where)
