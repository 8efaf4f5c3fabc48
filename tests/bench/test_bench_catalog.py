"""Every catalogue task loads, and every bundled doc builds valid requests."""

from __future__ import annotations

import pytest

from kaieval.bench.api import GenerationRequest, LoglikelihoodRequest, LoglikelihoodResponse
from kaieval.bench.tasks import ConfiguredTask, list_catalog, load_task
from kaieval.bench.tasks.group import GroupTask
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
    hashes = task.dataset_hashes()
    assert hashes and all(len(h) == len("sha256:") + 64 for h in hashes.values())


def test_answer_shapes_exist() -> None:
    """The engine's speed targets need both one-letter and full-text answers."""
    letters = load_task("kmmlu").build(load_task("kmmlu").docs()[0])[0]
    assert letters.choices == ("A", "B", "C", "D")
    copa = load_task("kobest_copa")
    full = copa.build(copa.docs()[0], num_fewshot=5)[0]
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
        task = load_task("kmmlu:Korean-History", source="hf")
        assert task.cfg.eval_split.path == "HAERAE-HUB/KMMLU"  # type: ignore[union-attr]
        assert task.cfg.eval_split.name == "Korean-History"  # type: ignore[union-attr]


def test_whole_benchmarks_run_every_subset_and_name_one() -> None:
    whole = load_task("kmmlu")
    assert isinstance(whole, GroupTask) and len(whole.subsets) == 45
    one = load_task("kmmlu:Korean-History")
    assert isinstance(one, ConfiguredTask) and one.name == "kmmlu:Korean-History"
    assert {d.fields["Category"] for d in one.docs()} == {"Korean-History"}
    assert {d.doc_id.split("/")[0] for d in whole.docs()} <= set(dict(whole.subsets))
    hub = load_task("kmmlu:Law", source="hf").cfg.eval_split
    assert (hub.path, hub.name, hub.split) == ("HAERAE-HUB/KMMLU", "Law", "test")  # type: ignore
    with pytest.raises(KaiError, match="no subset 'Nope'"):
        load_task("kmmlu:Nope")
    with pytest.raises(KaiError, match="unknown variant 'nope'"):
        load_task("kmmlu@nope")
    with pytest.raises(KaiError, match="has no subsets"):
        load_task("gsm8k:main")


def test_group_scores_per_subset_and_by_size() -> None:
    """acc:<subset> per subject; the group acc is the mean over all docs (weight_by_size)."""
    task = load_task("kmmlu")
    scores = []
    for i, doc in enumerate(task.docs()):
        built = task.build(doc)
        lls = [-1.0 - ((i + j) % 4) for j in range(4)]
        scores.append(task.score(built, [[LoglikelihoodResponse(x, False, 1) for x in lls]]))
    agg = task.aggregate(scores)
    accs = [s.metrics["acc"] for s in scores]
    assert agg["acc"].value == pytest.approx(sum(accs) / len(accs))
    history = [s.metrics["acc"] for s in scores if s.doc_id.startswith("Korean-History/")]
    assert agg["acc:Korean-History"].value == pytest.approx(sum(history) / len(history))
    assert agg["acc:Korean-History"].n == len(history)


def test_reference_defaults_not_the_old_ones() -> None:
    """The issue's list: full-width 정답：, 0 shots, IFEval 1,280 tokens, HRM8K's boxed 2,048."""
    kmmlu = load_task("kmmlu:Korean-History")
    assert kmmlu.cfg.num_fewshot == 0 and kmmlu.cfg.doc_to_text.endswith("정답：")
    old = load_task("kmmlu@kaieval-v1")
    assert old.cfg.num_fewshot == 5 and old.cfg.doc_to_text.endswith("정답:")
    assert "ASCII" in old.cfg.extra["differs"]
    (req,) = load_task("ifeval").build(load_task("ifeval").docs()[0])[0].requests
    assert isinstance(req, GenerationRequest) and req.max_tokens == 1280 and req.stop == ()
    hrm = load_task("hrm8k:GSM8K")
    (gen,) = hrm.build(hrm.docs()[0])[0].requests
    assert isinstance(gen, GenerationRequest) and gen.max_tokens == 2048
    assert "\\boxed{N}" in gen.context and "\n\n" not in gen.stop
    assert load_task("kobest_boolq").metrics == ("acc", "f1")
    assert load_task("gsm8k").metrics == ("exact_match,strict-match",
                                          "exact_match,flexible-extract")
    mmlu = load_task("mmlu:anatomy")
    assert mmlu.build(mmlu.docs()[0])[0].prompt.startswith(
        "The following are multiple choice questions (with answers) about anatomy.\n\n")


def test_every_variant_builds_and_says_how_it_differs() -> None:
    variants = [(e.name, v) for e in list_catalog() for v in e.variants]
    assert len(variants) >= 6
    for name, variant in variants:
        task = load_task(f"{name}@{variant}")
        assert task.name.startswith(f"{name}@{variant}")
        assert len(task.cfg.extra["differs"]) > 30, (name, variant)
        assert task.protocol() == {"harness": "kaieval", "version": "catalogue",
                                   "variant": variant, "shots": task.cfg.num_fewshot}
        for doc in task.docs()[:3]:
            assert task.build(doc)
    default = load_task("kormedmcqa")
    assert default.protocol() == {"harness": "lm-eval", "version": "0.4.13",
                                  "variant": "default", "shots": 0}
