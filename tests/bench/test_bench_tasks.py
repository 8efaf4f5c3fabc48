"""Our task schema: prompts, few-shot determinism, CircularEval, generation, scoring, errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from kaieval.bench.api import (
    GenerationRequest,
    GenerationResponse,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
)
from kaieval.bench.tasks import load_task
from kaieval.errors import KaiError

DOCS = [
    {"q": f"질문 {i}", "opts": [f"답{i}-{j}" for j in range(3)], "ans": i % 3} for i in range(8)
]


def _write(tmp: Path, body: str, docs: list[dict[str, object]] | None = None) -> Path:
    data = tmp / "d.jsonl"
    data.write_text("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in (docs or DOCS)),
                    encoding="utf-8")
    path = tmp / "t.yaml"
    path.write_text("schema: kaieval/task/v1\nname: t\ndata: {path: d.jsonl}\n" + body,
                    encoding="utf-8")
    return path


def _ll(v: float) -> LoglikelihoodResponse:
    return LoglikelihoodResponse(logprob=v, greedy=False, n_tokens=1)


def test_prompt_and_continuations(tmp_path: Path) -> None:
    path = _write(tmp_path, 'prompt: "{{q}}\\n답:"\nchoices: opts\ntarget: ans\n'
                            "num_fewshot: 2\n")
    task = load_task(path)
    doc = task.docs()[0]
    (b,) = task.build(doc)
    shots = b.prompt.split("\n\n")
    assert len(shots) == 3 and shots[-1] == "질문 0\n답:"
    for shot in shots[:2]:
        q = shot.split("\n")[0]
        i = int(q.split()[-1])
        assert i != 0  # the doc never appears in its own few-shot prefix
        assert shot == f"질문 {i}\n답: 답{i}-{i % 3}"
    assert [r.continuation for r in b.requests if isinstance(r, LoglikelihoodRequest)] == [
        " 답0-0", " 답0-1", " 답0-2"]
    assert b.target == 0


def test_fewshot_is_deterministic_and_order_independent(tmp_path: Path) -> None:
    path = _write(tmp_path, 'prompt: "{{q}}"\nchoices: opts\ntarget: ans\nnum_fewshot: 3\n'
                            "fewshot: {seed: 42}\n")
    a, b = load_task(path), load_task(path)
    forward = [a.build(d)[0].prompt for d in a.docs()]
    backward = [b.build(d)[0].prompt for d in reversed(b.docs())][::-1]
    assert forward == backward
    assert len(set(forward)) == len(forward)
    other_seed = _write(tmp_path, 'prompt: "{{q}}"\nchoices: opts\ntarget: ans\n'
                                  "num_fewshot: 3\nfewshot: {seed: 43}\n")
    c = load_task(other_seed)
    assert [c.build(d)[0].prompt for d in c.docs()] != forward


def test_fewshot_from_separate_file_and_first_n(tmp_path: Path) -> None:
    (tmp_path / "fs.jsonl").write_text(
        "".join(json.dumps({"q": f"예시 {i}", "opts": ["가", "나"], "ans": 1}) + "\n"
                for i in range(4)), encoding="utf-8")
    path = _write(tmp_path, 'prompt: "{{q}}"\nchoices: opts\ntarget: ans\nnum_fewshot: 2\n'
                            "fewshot: {sampler: first_n}\n")
    text = path.read_text(encoding="utf-8").replace("data: {path: d.jsonl}",
                                                    "data: {path: d.jsonl, fewshot_path: fs.jsonl}")
    path.write_text(text, encoding="utf-8")
    task = load_task(path)
    (b,) = task.build(task.docs()[5])
    assert b.prompt == "예시 0 나\n\n예시 1 나\n\n질문 5"
    assert "fewshot" in task.dataset_hashes()
    with pytest.raises(KaiError, match="only 4 available"):
        task.build(task.docs()[0], num_fewshot=5)


def test_scoring_acc_acc_norm_and_aggregate(tmp_path: Path) -> None:
    docs = [{"q": "x", "opts": ["a", "bbbbbbbb"], "ans": 1}] * 1 + [
        {"q": f"y{i}", "opts": ["a", "bbbbbbbb"], "ans": 0} for i in range(3)]
    path = _write(tmp_path, 'prompt: "{{q}}"\nchoices: opts\ntarget: ans\n', docs)
    task = load_task(path)
    scores = []
    for d in task.docs():
        built = task.build(d)
        # ll(a) = -2 (per char -1), ll(b...) = -4 (per char -0.5): acc picks a, acc_norm picks b.
        scores.append(task.score(built, [[_ll(-2.0), _ll(-4.0)]]))
    assert [s.metrics["acc"] for s in scores] == [0.0, 1.0, 1.0, 1.0]
    assert [s.metrics["acc_norm"] for s in scores] == [1.0, 0.0, 0.0, 0.0]
    assert scores[0].prompt_hash.startswith("sha256:") and scores[0].loglikelihoods == (-2.0, -4.0)
    agg = task.aggregate(scores)
    assert agg["acc"].value == 0.75 and agg["acc"].n == 4
    assert agg["acc_norm"].value == 0.25


def test_circular_eval(tmp_path: Path) -> None:
    docs = [{"q": "수도는?", "A": "부산", "B": "서울", "C": "대구", "ans": 2}]
    body = ('prompt: "{{q}}\\nA. {{A}}\\nB. {{B}}\\nC. {{C}}\\n정답:"\nchoices: [A, B, C]\n'
            "target: \"{{ans - 1}}\"\ncircular: true\noptions: [A, B, C]\n")
    task = load_task(_write(tmp_path, body, docs))
    built = task.build(task.docs()[0])
    assert len(built) == 3
    # Rotation r shifts the options left by r; the right letter moves with 서울.
    for b in built:
        letter = "ABC"[b.target]  # type: ignore[index]
        assert f"{letter}. 서울" in b.prompt
    assert [b.target for b in built] == [1, 0, 2]

    def answer(b_target: int) -> list[LoglikelihoodResponse]:
        return [_ll(-1.0 if i == b_target else -5.0) for i in range(3)]

    always_right = [answer(b.target) for b in built]  # type: ignore[arg-type]
    assert task.score(built, always_right).metrics["acc"] == 1.0
    always_b = [answer(1) for _ in built]  # position bias: always says "B"
    assert task.score(built, always_b).metrics["acc"] == 0.0


def test_multiple_choice_generate(tmp_path: Path) -> None:
    path = _write(tmp_path, 'prompt: "{{q}}"\nchoices: opts\ntarget: ans\nnum_fewshot: 1\n')
    task = load_task(path, output_type="multiple_choice_generate")
    assert task.metrics == ("acc",)
    (b,) = task.build(task.docs()[1])
    (req,) = b.requests
    assert isinstance(req, GenerationRequest)
    assert req.context.endswith("질문 1\nA. 답1-0\nB. 답1-1\nC. 답1-2\nAnswer:")
    assert req.context.count("Answer: ") == 1  # the few-shot example carries its letter
    ok = task.score([b], [[GenerationResponse(" B")]])
    bad = task.score([b], [[GenerationResponse(" I am not sure")]])
    assert ok.metrics["acc"] == 1.0 and bad.metrics["acc"] == 0.0 and bad.prediction == -1


def test_generation_with_regex_and_exact_match(tmp_path: Path) -> None:
    docs: list[dict[str, object]] = [{"question": "1+1?", "answer": "2"},
                                     {"question": "2+2?", "answer": "4"}]
    body = ('output_type: generate_until\nprompt: "Q: {{question}}\\nA:"\ntarget: answer\n'
            'generation: {stop: ["\\n"], max_tokens: 8}\n'
            "answer_regex: {pattern: 'is (\\d+)', fallback: none}\n"
            "metrics: [{name: exact_match, strip: true}, numeric_match]\n")
    task = load_task(_write(tmp_path, body, docs))
    (b,) = task.build(task.docs()[0])
    assert b.requests == (GenerationRequest("Q: 1+1?\nA:", stop=("\n",), max_tokens=8),)
    s = task.score([b], [[GenerationResponse(" it is 2")]])
    assert s.metrics == {"exact_match": 1.0, "numeric_match": 1.0}
    assert s.prediction == "2" and s.generation == " it is 2"
    s = task.score([b], [[GenerationResponse(" 2")]])
    assert s.metrics["exact_match"] == 0.0 and s.prediction == "none"


def test_ifeval_task_scores_instructions() -> None:
    task = load_task("ifeval")
    doc = next(d for d in task.docs() if d.fields["instruction_id_list"] == [
        "detectable_format:number_bullet_lists", "punctuation:no_comma"])
    (b,) = task.build(doc)
    good = task.score([b], [[GenerationResponse("* a\n* b\n* c\n* d")]])
    half = task.score([b], [[GenerationResponse("* a, b\n* c\n* d\n* e")]])
    assert good.metrics == {"prompt_level_strict_acc": 1.0, "inst_level_strict_acc": 1.0,
                            "prompt_level_loose_acc": 1.0, "inst_level_loose_acc": 1.0}
    # loose: the response without its first line ("* a, b") has no comma
    assert half.metrics == {"prompt_level_strict_acc": 0.0, "inst_level_strict_acc": 0.5,
                            "prompt_level_loose_acc": 1.0, "inst_level_loose_acc": 1.0}


def test_csv_and_parquet_sources(tmp_path: Path) -> None:
    (tmp_path / "d.csv").write_text("s,label\n좋다,1\n싫다,0\n", encoding="utf-8")
    yaml = ("schema: kaieval/task/v1\nname: c\ndata: {path: d.csv}\nprompt: '{{s}}'\n"
            "choices: ['부정', '긍정']\ntarget: '{{label}}'\n")
    (tmp_path / "c.yaml").write_text(yaml, encoding="utf-8")
    task = load_task(tmp_path / "c.yaml")
    assert [task.build(d)[0].target for d in task.docs()] == [1, 0]
    pq = pytest.importorskip("pyarrow.parquet")
    import pyarrow as pa
    pq.write_table(pa.table({"s": ["좋다"], "label": [1]}), tmp_path / "d.parquet")
    (tmp_path / "p.yaml").write_text(yaml.replace("d.csv", "d.parquet"), encoding="utf-8")
    ptask = load_task(tmp_path / "p.yaml")
    assert ptask.build(ptask.docs()[0])[0].target == 1


def test_task_hash_changes_with_data_and_definition(tmp_path: Path) -> None:
    path = _write(tmp_path, 'prompt: "{{q}}"\nchoices: opts\ntarget: ans\n')
    h1 = load_task(path).task_hash()
    assert load_task(path).task_hash() == h1
    path.write_text(path.read_text(encoding="utf-8").replace('"{{q}}"', '"{{q}}?"'),
                    encoding="utf-8")
    h2 = load_task(path).task_hash()
    assert h2 != h1
    (tmp_path / "d.jsonl").write_text(json.dumps(DOCS[0]) + "\n", encoding="utf-8")
    assert load_task(path).task_hash() != h2


@pytest.mark.parametrize(("body", "docs", "match"), [
    ('prompt: "{{q}}"\nchoices: opts\ntarget: "{{nope}}"\n', None, "field the doc lacks"),
    ('prompt: "{{q}}"\nchoices: opts\ntarget: 7\n', None, "out of range"),
    ('prompt: "{{q}}"\nchoices: opts\ntarget: ans\n', [{"q": "x", "opts": [], "ans": 0}],
     "no choices"),
    ('prompt: "{{q}}"\nchoices: opts\ntarget: "zzz"\n', None, "not one of the choices"),
])
def test_bad_docs_are_one_line_errors(tmp_path: Path, body: str,
                                      docs: list[dict[str, object]] | None, match: str) -> None:
    task = load_task(_write(tmp_path, body, docs))
    with pytest.raises(KaiError, match=match) as err:
        task.build(task.docs()[0])
    assert "\n" not in str(err.value) and "doc 0" in str(err.value)


@pytest.mark.parametrize(("body", "match"), [
    ('prompt: "x"\nchoices: opts\ntarget: ans\nmetrics: [bleu]\n', "unknown metric"),
    ('prompt: "x"\ntarget: ans\n', "choices: required"),
    ('prompt: "x"\nchoices: opts\ntarget: ans\nsurprise: 1\n', "surprise"),
    ('output_type: generate_until\nprompt: "x"\nmetrics: [acc]\n', "does not apply"),
])
def test_bad_specs_name_the_key(tmp_path: Path, body: str, match: str) -> None:
    with pytest.raises(KaiError, match=match) as err:
        load_task(_write(tmp_path, body))
    assert "t.yaml" in str(err.value)


def test_unknown_task_and_missing_data(tmp_path: Path) -> None:
    with pytest.raises(KaiError, match=r"unknown task 'nope'.*kmmlu"):
        load_task("nope")
    (tmp_path / "t.yaml").write_text(
        "schema: kaieval/task/v1\nname: t\ndata: {path: missing.jsonl}\nprompt: x\n"
        "choices: [a]\n", encoding="utf-8")
    with pytest.raises(KaiError, match=r"missing\.jsonl"):
        load_task(tmp_path / "t.yaml")
    (tmp_path / "bad.jsonl").write_text('{"q": 1}\nnot json\n', encoding="utf-8")
    (tmp_path / "u.yaml").write_text(
        "schema: kaieval/task/v1\nname: u\ndata: {path: bad.jsonl}\nprompt: x\n"
        "choices: [a]\n", encoding="utf-8")
    with pytest.raises(KaiError, match=r"bad.jsonl:2"):
        load_task(tmp_path / "u.yaml").docs()


def test_implements_task_protocol_and_describes_itself() -> None:
    from kaieval.bench.api import Task

    task: Task = load_task("kobest_copa")  # mypy checks the Protocol here
    info = load_task("kobest_copa").describe()
    assert info["fewshot_seed"] == 1234 and info["num_fewshot"] == 0  # lm-eval's default
    assert info["task_hash"] == task.task_hash()
    assert set(info["dataset_hashes"]) == {"eval"}


def test_letter_task_as_generation_keeps_its_own_prompt() -> None:
    task = load_task("kmmlu", output_type="multiple_choice_generate")
    doc = task.docs()[0]
    (b,) = task.build(doc, num_fewshot=0)
    (req,) = b.requests
    assert isinstance(req, GenerationRequest)
    assert req.context.endswith("D. " + str(doc.fields["D"]) + "\n정답：")
    letter = "ABCD"[b.target]  # type: ignore[index]
    assert task.score([b], [[GenerationResponse(f" {letter}")]]).metrics["acc"] == 1.0
    with pytest.raises(KaiError, match="cannot run a generate_until task"):
        load_task("gsm8k", output_type="multiple_choice_generate")


def test_foreign_doc_is_refused(tmp_path: Path) -> None:
    from kaieval.bench.api import Doc

    task = load_task(_write(tmp_path, 'prompt: "{{q}}"\nchoices: opts\ntarget: ans\n'
                                      "num_fewshot: 1\n"))
    with pytest.raises(KaiError, match="not one of this task's documents"):
        task.build(Doc(doc_id="zz", fields=DOCS[0]))


def test_batch_of_builds_does_not_change_prompts(tmp_path: Path) -> None:
    """Building docs in any order / subset (as batching does) gives identical requests."""
    path = _write(tmp_path, 'prompt: "{{q}}"\nchoices: opts\ntarget: ans\nnum_fewshot: 2\n'
                            "fewshot: {sampler: default}\n")
    full = load_task(path)
    want = {d.doc_id: full.build(d) for d in full.docs()}
    part = load_task(path)
    docs = part.docs()
    for d in [docs[5], docs[2], docs[7]]:
        assert part.build(d) == want[d.doc_id]
    assert part.docs(limit=3) == full.docs()[:3]
