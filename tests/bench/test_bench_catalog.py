"""Every catalogue task loads, and every bundled doc builds valid requests."""

from __future__ import annotations

import pytest

from kaieval.bench.api import GenerationRequest, LoglikelihoodRequest
from kaieval.bench.tasks import list_catalog, load_task
from kaieval.errors import KaiError

EXPECTED = {
    "kmmlu", "haerae", "click", "kobest_boolq", "kobest_copa", "kobest_hellaswag",
    "kobest_sentineg", "kobest_wic", "kormedmcqa", "hrm8k", "mmlu", "mmlu_pro", "gpqa", "gsm8k",
    "arc", "hellaswag", "ifeval",
}
KOREAN = {"kmmlu", "haerae", "click", "kobest_boolq", "kobest_copa", "kobest_hellaswag",
          "kobest_sentineg", "kobest_wic", "kormedmcqa", "hrm8k"}


def test_catalogue_lists_every_benchmark() -> None:
    entries = {e.name: e for e in list_catalog()}
    assert set(entries) == EXPECTED
    for name, e in entries.items():
        assert 20 <= e.n_items <= 40, name
        assert e.language == ("ko" if name in KOREAN else "en"), name
        assert e.dataset and "/" in e.dataset, name
        assert e.description, name


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_every_bundled_doc_builds(name: str) -> None:
    task = load_task(name)
    docs = task.docs()
    assert len({d.doc_id for d in docs}) == len(docs)
    for doc in docs:
        built = task.build(doc)
        assert len(built) == 1
        b = built[0]
        if task.output_type == "multiple_choice":
            assert isinstance(b.target, int) and 0 <= b.target < len(b.choices)
            assert len(b.requests) == len(b.choices) >= 2
            for req, choice in zip(b.requests, b.choices, strict=True):
                assert isinstance(req, LoglikelihoodRequest)
                assert req.context == b.prompt
                assert req.continuation == " " + choice
        else:
            (req,) = b.requests
            assert isinstance(req, GenerationRequest)
            assert req.context == b.prompt
    assert len(task.dataset_hashes()["eval"]) == len("sha256:") + 64


def test_answer_shapes_exist() -> None:
    """The engine's speed targets need both one-letter and full-text answers."""
    letters = load_task("kmmlu").build(load_task("kmmlu").docs()[0])[0]
    assert letters.choices == ("A", "B", "C", "D")
    copa = load_task("kobest_copa")
    full = copa.build(copa.docs()[0])[0]
    assert all(len(c.split()) >= 2 for c in full.choices)
    assert full.prompt.count("\n\n") == 5  # 5-shot prefix


def test_kmmlu_answers_point_at_the_right_option() -> None:
    task = load_task("kmmlu")
    doc = next(d for d in task.docs() if d.fields["question"].startswith("물의 화학식"))
    b = task.build(doc, num_fewshot=0)[0]
    assert isinstance(b.target, int)
    assert doc.fields["ABCD"[b.target]] == "H2O"


def test_catalogue_numeric_answers_are_consistent() -> None:
    from kaieval.bench.metrics import numeric_match
    for name in ("gsm8k", "hrm8k"):
        task = load_task(name)
        for doc in task.docs():
            b = task.build(doc, num_fewshot=0)[0]
            assert numeric_match(str(b.target), str(b.target)) == 1.0


def test_hf_source_needs_datasets_or_network() -> None:
    try:
        import datasets  # noqa: F401
    except ImportError:
        task = load_task("kmmlu", source="hf")
        with pytest.raises(KaiError, match="datasets"):
            task.docs()
    else:
        task = load_task("kmmlu", source="hf")
        assert task.cfg.eval_split.path == "HAERAE-HUB/KMMLU"  # type: ignore[union-attr]
