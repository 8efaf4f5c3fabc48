"""Named document processors: lm-eval's ``process_docs`` functions, as data a task file names.

An lm-eval task may rebuild its documents in Python before any template sees
them (HellaSwag joins and cleans its context, GPQA shuffles its options). A
kaieval task file is data, never code, so it names one of these processors
instead; each reproduces the reference function field for field, so the
templates that follow render the same text. Processors take the split's rows in
order and return new rows (the original columns kept, as ``datasets.map`` does).
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from kaieval.errors import KaiError

Rows = list[dict[str, Any]]

GPQA_SEED = 0  # lm-eval's simple_evaluate seeds the process-wide `random` with 0


def _hellaswag_clean(text: str) -> str:
    """lm-eval's hellaswag ``preprocess``: strip, ' [title]' -> '. ', drop [..], '  ' -> ' '."""
    text = text.strip()
    text = text.replace(" [title]", ". ")
    text = re.sub("\\[.*?\\]", "", text)
    return text.replace("  ", " ")


def hellaswag(rows: Sequence[Mapping[str, Any]]) -> Rows:
    """HellaSwag: query = clean(activity_label + ': ' + ctx_a + ' ' + ctx_b.capitalize())."""
    out = []
    for row in rows:
        ctx = str(row["ctx_a"]) + " " + str(row["ctx_b"]).capitalize()
        out.append({**row, "query": _hellaswag_clean(str(row["activity_label"]) + ": " + ctx),
                    "choices": [_hellaswag_clean(str(e)) for e in row["endings"]],
                    "gold": int(row["label"])})
    return out


def kobest_hellaswag(rows: Sequence[Mapping[str, Any]]) -> Rows:
    """KoBEST HellaSwag: query = '문장: ' + context; choices = ending_1..4."""
    return [{**row, "query": f"문장: {row['context']}",
             "choices": [row["ending_1"], row["ending_2"], row["ending_3"], row["ending_4"]],
             "gold": int(row["label"])} for row in rows]


def _gpqa_clean(text: Any) -> str:
    if text is None:
        return " "
    out = str(text).strip().replace(" [title]", ". ")
    return out.replace("  ", " ")


def gpqa(rows: Sequence[Mapping[str, Any]]) -> Rows:
    """GPQA: options cleaned and shuffled into choice1..4, answer '(A)'..'(D)'.

    lm-eval shuffles with the process-wide ``random`` after ``random.seed(0)``, one
    document after another; one ``Random(0)`` over the rows in order gives that order
    (what lm-eval produces on a fresh datasets cache). See docs/reference-tasks.md.
    """
    rnd = random.Random(GPQA_SEED)
    out = []
    for row in rows:
        choices = [_gpqa_clean(row["Incorrect Answer 1"]), _gpqa_clean(row["Incorrect Answer 2"]),
                   _gpqa_clean(row["Incorrect Answer 3"]), _gpqa_clean(row["Correct Answer"])]
        rnd.shuffle(choices)
        correct = choices.index(_gpqa_clean(row["Correct Answer"]))
        out.append({**row, "choice1": choices[0], "choice2": choices[1],
                    "choice3": choices[2], "choice4": choices[3],
                    "answer": f"({chr(65 + correct)})"})
    return out


PROCESSORS: dict[str, Callable[[Sequence[Mapping[str, Any]]], Rows]] = {
    "hellaswag": hellaswag,
    "kobest_hellaswag": kobest_hellaswag,
    "gpqa": gpqa,
}


def apply_processor(name: str, rows: Sequence[Mapping[str, Any]], *, where: str) -> Rows:
    """Rows after the named processor; a missing column is a one-line error naming it."""
    if not name:
        return [dict(r) for r in rows]
    fn = PROCESSORS.get(name)
    if fn is None:
        raise KaiError(f"unknown document processor {name!r} (known: "
                       + ", ".join(sorted(PROCESSORS)) + ")", where=where)
    try:
        return fn(rows)
    except KeyError as exc:
        raise KaiError(f"processor {name!r}: a row lacks column {exc}", where=where) from None
    except (TypeError, ValueError) as exc:
        raise KaiError(f"processor {name!r}: {type(exc).__name__}: {exc}", where=where) from None
