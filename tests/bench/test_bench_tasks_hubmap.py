"""Catalogue tasks read in the public hub schema: rows written here with the real column names.

HAE-RAE Bench (HAERAE-HUB/HAE_RAE_BENCH, as lm-eval's haerae tasks read it) lists the
options inside ``query`` and answers "(A)".."(E)"; GPQA (Idavidrein/gpqa) keeps the
right and wrong answers in separate columns. The tasks are loaded with
``source="hf"`` and only their split is pointed at a local file of such rows, so
the mapping, templates and request building all run for real, offline.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from kaieval.bench.api import LoglikelihoodRequest
from kaieval.bench.tasks import load_task
from kaieval.bench.tasks.config import Gather, HFSplit, LocalSplit, RowMap
from kaieval.bench.tasks.hubmap import clean_gpqa_text, map_row
from kaieval.bench.tasks.task import ConfiguredTask
from kaieval.errors import KaiError


def _hub_task(name: str, rows: list[dict[str, Any]], tmp_path: Path) -> ConfiguredTask:
    task = load_task(name, source="hf")
    assert isinstance(task.cfg.eval_split, HFSplit)  # really the hub definition
    path = tmp_path / f"{name}-hub.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return ConfiguredTask(replace(task.cfg, eval_split=LocalSplit(path)))


def _haerae_row(i: int, answer: str) -> dict[str, Any]:
    opts = "\n".join(f"({c}) 보기 {i}-{c}" for c in "ABCDE")
    return {"query": f"다음 중 알맞은 것은? 문제 {i}\n{opts}\n정답:", "answer": answer}


def test_haerae_hub_rows_render_as_lm_eval_does(tmp_path: Path) -> None:
    task = _hub_task("haerae", [_haerae_row(i, f"({'ABCDE'[i % 5]})") for i in range(7)],
                     tmp_path)
    hf = task.cfg.extra["hf"]
    assert (hf["path"], hf["name"], hf["split"]) == (
        "HAERAE-HUB/HAE_RAE_BENCH", "general_knowledge", "test")
    doc = task.docs()[3]
    (b,) = task.build(doc, num_fewshot=0)
    assert b.prompt == doc.fields["query"]
    assert b.choices == ("(A)", "(B)", "(C)", "(D)", "(E)")
    assert b.target == 3  # "(D)"
    assert [r.continuation for r in b.requests if isinstance(r, LoglikelihoodRequest)] == [
        " (A)", " (B)", " (C)", " (D)", " (E)"]
    # the catalogue's 5-shot: each example is query + " " + its answer + blank line
    (b5,) = task.build(doc)
    shots = b5.prompt[:-len(doc.fields["query"])].split("\n\n")[:-1]
    assert len(shots) == 5 and all(s.endswith(("(A)", "(B)", "(C)", "(D)", "(E)"))
                                   for s in shots)
    assert all(doc.fields["query"] not in s for s in shots)  # never its own example


def test_haerae_hub_answer_outside_the_options_is_one_error(tmp_path: Path) -> None:
    task = _hub_task("haerae", [_haerae_row(0, "(F)")], tmp_path)
    with pytest.raises(KaiError, match=r"'\(F\)' is not one of the choices"):
        task.build(task.docs()[0], num_fewshot=0)


def _gpqa_row(i: int) -> dict[str, Any]:
    return {"Record ID": f"rec{i:03d}", "High-level domain": "Physics",
            "Subdomain": "Quantum Mechanics",
            "Question": f"Which state is the ground state of system {i}?",
            "Correct Answer": f" right {i} [title] answer ",
            "Incorrect Answer 1": f"wrong {i}a", "Incorrect Answer 2": f"wrong {i}b",
            "Incorrect Answer 3": f"wrong  {i}c", "Explanation": "..."}


def test_gpqa_hub_rows_are_gathered_shuffled_and_rendered(tmp_path: Path) -> None:
    rows = [_gpqa_row(i) for i in range(12)]
    task = _hub_task("gpqa", rows, tmp_path)
    docs = task.docs()
    assert [d.doc_id for d in docs] == [f"rec{i:03d}" for i in range(12)]
    targets = []
    for i, doc in enumerate(docs):
        (b,) = task.build(doc, num_fewshot=0)
        opts = doc.fields["choices"]
        assert sorted(opts) == sorted([f"right {i}. answer", f"wrong {i}a", f"wrong {i}b",
                                       f"wrong {i}c"])
        assert opts[doc.fields["answer"]] == f"right {i}. answer"
        assert b.prompt == (f"Question: Which state is the ground state of system {i}?\n"
                            + "".join(f"{c}. {o}\n" for c, o in zip("ABCD", opts, strict=True))
                            + "Answer:")
        assert b.choices == ("A", "B", "C", "D") and b.target == doc.fields["answer"]
        targets.append(b.target)
    assert len(set(targets)) > 1  # shuffled: the right answer is not always last
    again = _hub_task("gpqa", list(reversed(rows)), tmp_path)  # order keyed by Record ID
    by_id = {d.doc_id: d.fields["choices"] for d in again.docs()}
    assert all(by_id[d.doc_id] == d.fields["choices"] for d in docs)


def test_gpqa_hub_row_missing_a_column_is_one_error(tmp_path: Path) -> None:
    row = _gpqa_row(0)
    del row["Incorrect Answer 2"]
    task = _hub_task("gpqa", [row], tmp_path)
    with pytest.raises(KaiError, match="lacks column 'Incorrect Answer 2'"):
        task.docs()


def test_map_row_and_clean_text() -> None:
    assert clean_gpqa_text(None) == " "
    assert clean_gpqa_text("  a [title] b  c ") == "a. b c"
    g = Gather(into="opts", correct="ok", others=("x", "y"), answer="gold", seed=7)
    out = map_row({"q": "Q", "ok": "1", "x": "2", "y": "3"},
                  RowMap(fields=(("question", "q"),), gather=g), 0, where="t")
    assert out["question"] == "Q" and sorted(out["opts"]) == ["1", "2", "3"]
    assert out["opts"][out["gold"]] == "1"
    assert out == map_row({"q": "Q", "ok": "1", "x": "2", "y": "3"},
                          RowMap(fields=(("question", "q"),), gather=g), 0, where="t")


def test_local_sample_path_is_unchanged() -> None:
    for name in ("haerae", "gpqa"):
        task = load_task(name)
        assert isinstance(task.cfg.eval_split, LocalSplit) and task.cfg.row_map is None
        (b,) = task.build(task.docs()[0])
        assert isinstance(b.target, int)


def test_every_catalogue_task_parses_its_hub_definition() -> None:
    from kaieval.bench.tasks import list_catalog

    for entry in list_catalog():
        task = load_task(entry.name, source="hf")
        assert isinstance(task.cfg.eval_split, HFSplit), entry.name
        assert task.cfg.eval_split.path in entry.dataset, entry.name
