"""Turn a Hugging Face dataset's rows into the field layout a catalogue task's templates use.

A catalogue task ships a small sample written by us and points at the public
dataset for full runs. The two rarely share a schema (GPQA's hub rows hold
'Question', 'Correct Answer', 'Incorrect Answer 1..3'), so the task declares,
as data, how a hub row becomes a document: copy columns to field names, and
gather answer columns into a seeded, shuffled options list with the answer's
index. Pure functions, so a test can feed a row written in the public schema.
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

from kaieval.bench.tasks.config import Gather, RowMap
from kaieval.errors import KaiError


def clean_gpqa_text(text: Any) -> str:
    """lm-eval's GPQA ``preprocess``: None -> ' ', strip, ' [title]' -> '. ', '  ' -> ' '."""
    if text is None:
        return " "
    out = str(text).strip().replace(" [title]", ". ")
    return out.replace("  ", " ")


def _column(row: Mapping[str, Any], name: str, where: str) -> Any:
    if name not in row:
        raise KaiError(f"hub row lacks column {name!r} (has: {', '.join(sorted(row))})",
                       where=where)
    return row[name]


def _gather(row: Mapping[str, Any], g: Gather, index: int, where: str) -> dict[str, Any]:
    def get(name: str) -> Any:
        value = _column(row, name, where)
        return clean_gpqa_text(value) if g.clean else value

    correct = get(g.correct)
    options = [get(c) for c in g.others] + [correct]
    key = str(_column(row, g.key, where)) if g.key else str(index)
    random.Random(f"{g.seed}:{key}").shuffle(options)
    return {g.into: options, g.answer: options.index(correct)}


def map_row(row: Mapping[str, Any], row_map: RowMap, index: int, *, where: str
            ) -> dict[str, Any]:
    """One hub row in the task's layout: the row's own columns, plus the mapped fields."""
    out = dict(row)
    for ours, theirs in row_map.fields:
        out[ours] = _column(row, theirs, where)
    if row_map.gather is not None:
        out.update(_gather(row, row_map.gather, index, where))
    return out


def map_rows(rows: Sequence[Mapping[str, Any]], row_map: RowMap | None, *, where: str
             ) -> list[dict[str, Any]]:
    """Every row mapped (``row_map`` None: unchanged copies)."""
    if row_map is None:
        return [dict(r) for r in rows]
    return [map_row(r, row_map, i, where=f"{where} (row {i})") for i, r in enumerate(rows)]
