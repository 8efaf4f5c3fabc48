"""Tasks read in the public hub schema: rows written here with the real column names.

HAE-RAE Bench (HAERAE-HUB/HAE_RAE_BENCH, as lm-eval's haerae tasks read it) lists the
options inside ``query`` and answers "(A)".."(E)"; GPQA (Idavidrein/gpqa) keeps the
right and wrong answers in separate columns. The catalogue reads both layouts
natively (as lm-eval does); a task file of our own can still map a hub layout to
its sample's with ``hf.fields`` / ``hf.gather``, tested here on a task written here.
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


def _rows_file(rows: list[dict[str, Any]], path: Path) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def _haerae_row(i: int, answer: str) -> dict[str, Any]:
    opts = "\n".join(f"({c}) 보기 {i}-{c}" for c in "ABCDE")
    return {"query": f"다음 중 알맞은 것은? 문제 {i}\n{opts}\n정답:", "answer": answer}


def test_haerae_hub_rows_render_as_lm_eval_does(tmp_path: Path) -> None:
    path = _rows_file([_haerae_row(i, f"({'ABCDE'[i % 5]})") for i in range(7)],
                      tmp_path / "haerae.jsonl")
    hub = load_task("haerae:general_knowledge", source="hf")
    assert isinstance(hub, ConfiguredTask) and isinstance(hub.cfg.eval_split, HFSplit)
    assert (hub.cfg.eval_split.path, hub.cfg.eval_split.name, hub.cfg.eval_split.split) == (
        "HAERAE-HUB/HAE_RAE_BENCH", "general_knowledge", "test")
    task = load_task("haerae:general_knowledge", data_files={"eval": path})
    doc = task.docs()[3]
    (b,) = task.build(doc)
    assert b.prompt == doc.fields["query"]
    assert b.choices == ("(A)", "(B)", "(C)", "(D)", "(E)")
    assert b.target == 3  # "(D)"
    assert [r.continuation for r in b.requests if isinstance(r, LoglikelihoodRequest)] == [
        " (A)", " (B)", " (C)", " (D)", " (E)"]
    # 5-shot from the test split (lm-eval's fewshot_split: test): never its own example
    (b5,) = task.build(doc, num_fewshot=5)
    shots = b5.prompt[:-len(doc.fields["query"])].split("\n\n")[:-1]
    assert len(shots) == 5 and all(s.endswith(("(A)", "(B)", "(C)", "(D)", "(E)"))
                                   for s in shots)
    assert all(doc.fields["query"] not in s for s in shots)


def test_haerae_hub_answer_outside_the_options_is_one_error(tmp_path: Path) -> None:
    path = _rows_file([_haerae_row(0, "(F)")], tmp_path / "bad.jsonl")
    task = load_task("haerae:history", data_files={"eval": path})
    with pytest.raises(KaiError, match=r"'\(F\)' is not one of the choices"):
        task.build(task.docs()[0], num_fewshot=0)


def _gpqa_row(i: int) -> dict[str, Any]:
    return {"Record ID": f"rec{i:03d}", "High-level domain": "Physics",
            "Subdomain": "Quantum Mechanics",
            "Question": f"Which state is the ground state of system {i}?",
            "Correct Answer": f" right {i} [title] answer ",
            "Incorrect Answer 1": f"wrong {i}a", "Incorrect Answer 2": f"wrong {i}b",
            "Incorrect Answer 3": f"wrong  {i}c", "Explanation": "..."}


def test_gpqa_hub_rows_are_cleaned_shuffled_and_rendered(tmp_path: Path) -> None:
    rows = [_gpqa_row(i) for i in range(12)]
    task = load_task("gpqa", data_files={"eval": _rows_file(rows, tmp_path / "gpqa.jsonl")})
    docs = task.docs()
    assert [d.doc_id for d in docs] == [f"rec{i:03d}" for i in range(12)]
    targets = []
    for i, doc in enumerate(docs):
        (b,) = task.build(doc)
        opts = [doc.fields[f"choice{k}"] for k in range(1, 5)]
        assert sorted(opts) == sorted([f"right {i}. answer", f"wrong {i}a", f"wrong {i}b",
                                       f"wrong {i}c"])
        assert doc.fields["answer"] == f"({'ABCD'[opts.index(f'right {i}. answer')]})"
        assert b.prompt == (f"What is the correct answer to this question:Which state is the "
                            f"ground state of system {i}?\nChoices:\n"
                            + "".join(f"({c}) {o}\n" for c, o in zip("ABCD", opts, strict=True))
                            + "Answer:")
        assert b.choices == ("(A)", "(B)", "(C)", "(D)")
        targets.append(b.target)
    assert len(set(targets)) > 1  # shuffled: the right answer is not always last
    again = load_task("gpqa", data_files={"eval": _rows_file(rows, tmp_path / "again.jsonl")})
    assert [d.fields for d in again.docs()] == [d.fields for d in docs]  # seeded


def test_gpqa_hub_row_missing_a_column_is_one_error(tmp_path: Path) -> None:
    row = _gpqa_row(0)
    del row["Incorrect Answer 2"]
    task = load_task("gpqa", data_files={"eval": _rows_file([row], tmp_path / "g.jsonl")})
    with pytest.raises(KaiError, match="a row lacks column 'Incorrect Answer 2'"):
        task.docs()


MAPPED_TASK = """\
schema: kaieval/task/v1
name: mapped
output_type: multiple_choice
data:
  path: sample.jsonl
  id_field: id
  hf:
    path: example/hub-set
    split: test
    fields: {question: Question, id: Record ID}
    gather: {into: choices, correct: Correct Answer, others: [Wrong 1, Wrong 2],
             answer: answer, seed: 7, key: Record ID, clean: true}
prompt: "Q: {{question}}\\nA:"
choices: choices
target: answer
"""


def test_a_task_file_maps_a_hub_layout_to_its_sample(tmp_path: Path) -> None:
    (tmp_path / "task.yaml").write_text(MAPPED_TASK, encoding="utf-8")
    _rows_file([{"question": "local?", "choices": ["x", "y"], "answer": 0}],
               tmp_path / "sample.jsonl")
    local = load_task(tmp_path / "task.yaml")
    assert local.build(local.docs()[0])[0].prompt == "Q: local?\nA:"
    hub = load_task(tmp_path / "task.yaml", source="hf")
    assert isinstance(hub, ConfiguredTask) and hub.cfg.row_map is not None
    rows = [{"Record ID": f"r{i}", "Question": f"hub {i}?", "Correct Answer": f" ok {i} ",
             "Wrong 1": f"no {i}", "Wrong 2": f"nope {i}"} for i in range(6)]
    task = ConfiguredTask(replace(hub.cfg, eval_split=LocalSplit(
        _rows_file(rows, tmp_path / "hub.jsonl"))))
    for i, doc in enumerate(task.docs()):
        (b,) = task.build(doc)
        assert b.prompt == f"Q: hub {i}?\nA:" and doc.doc_id == f"r{i}"
        assert isinstance(b.target, int) and b.choices[b.target] == f"ok {i}"
    del rows[0]["Wrong 2"]
    bad = ConfiguredTask(replace(hub.cfg, eval_split=LocalSplit(
        _rows_file(rows, tmp_path / "bad.jsonl"))))
    with pytest.raises(KaiError, match="lacks column 'Wrong 2'"):
        bad.docs()


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


def test_every_catalogue_task_parses_its_hub_definition() -> None:
    from kaieval.bench.tasks import list_catalog

    for entry in list_catalog():
        task = load_task(entry.name, source="hf")
        assert isinstance(task.cfg.eval_split, HFSplit), entry.name
        assert task.cfg.eval_split.path in entry.dataset, entry.name
        for sub in entry.subsets:
            one = load_task(f"{entry.name}:{sub}", source="hf")
            assert isinstance(one.cfg.eval_split, HFSplit), (entry.name, sub)
