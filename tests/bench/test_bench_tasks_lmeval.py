"""lm-eval task YAMLs run unchanged: our requests and scores equal lm-eval's own.

The parity half builds the same YAMLs with lm-evaluation-harness itself
(``TaskManager(include_path=...)``) and compares every context and continuation,
then feeds both sides the same log-likelihoods / generations and compares metrics.
"""

from __future__ import annotations

import os
import random
import shutil
import tempfile
import warnings
from pathlib import Path
from typing import Any

import pytest

from kaieval.bench.api import GenerationRequest, GenerationResponse, LoglikelihoodResponse
from kaieval.bench.tasks import load_task
from kaieval.errors import KaiError

TASK_DIR = Path(__file__).resolve().parents[1] / "data" / "lm_eval_tasks"
NAMES = ["ko_copa_mini", "ko_kmmlu_letters", "gsm_mini_gen", "ko_sentineg_csv",
         "ko_kormed_described"]


def _ours(name: str) -> list[tuple[Any, ...]]:
    task = load_task(TASK_DIR / f"{name}.yaml")
    out: list[tuple[Any, ...]] = []
    for doc in task.docs():
        for b in task.build(doc):
            for r in b.requests:
                if isinstance(r, GenerationRequest):
                    out.append((r.context, r.stop, r.max_tokens))
                else:
                    out.append((r.context, r.continuation))
    return out


@pytest.fixture(scope="module")
def lm_tasks() -> dict[str, Any]:
    pytest.importorskip("lm_eval")
    cache = tempfile.mkdtemp(prefix="kaieval-hf-")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ["HF_DATASETS_CACHE"] = cache
    from lm_eval.tasks import TaskManager, get_task_dict

    old = Path.cwd()
    os.chdir(TASK_DIR)  # lm-eval (datasets) resolves data_files against the cwd
    try:
        tm = TaskManager(include_path=str(TASK_DIR), include_defaults=False)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            tasks = get_task_dict(NAMES, tm)
        for name in NAMES:
            tasks[name].set_fewshot_seed(1234)
            tasks[name].build_all_requests(limit=None, rank=0, world_size=1)
    finally:
        os.chdir(old)
        shutil.rmtree(cache, ignore_errors=True)
    return dict(tasks)


@pytest.mark.parametrize("name", NAMES)
def test_requests_equal_lm_eval(lm_tasks: dict[str, Any], name: str) -> None:
    theirs: list[tuple[Any, ...]] = []
    for inst in sorted(lm_tasks[name].instances, key=lambda i: (i.doc_id, i.idx)):
        ctx, arg = inst.arguments
        if isinstance(arg, str):
            theirs.append((ctx, arg))
        else:
            theirs.append((ctx, tuple(arg["until"]), arg.get("max_gen_toks", 256)))
    ours = _ours(name)
    assert len(ours) == len(theirs) > 0
    for a, b in zip(ours, theirs, strict=True):
        assert a == b


@pytest.mark.parametrize("name", ["ko_copa_mini", "ko_kmmlu_letters", "ko_sentineg_csv"])
def test_mc_metrics_equal_lm_eval(lm_tasks: dict[str, Any], name: str) -> None:
    lm = lm_tasks[name]
    ours = load_task(TASK_DIR / f"{name}.yaml")
    rng = random.Random(5)
    lm_docs = list(lm.eval_docs)
    n_diff = 0
    for doc, lm_doc in zip(ours.docs(), lm_docs, strict=True):
        built = ours.build(doc)
        lls = [rng.uniform(-30.0, -0.5) for _ in built[0].choices]
        mine = ours.score(built, [[LoglikelihoodResponse(v, False, 1) for v in lls]]).metrics
        theirs = lm.process_results(lm_doc, [(v, False) for v in lls])
        for metric in ours.metrics:
            assert mine[metric] == float(theirs[metric]), (doc.doc_id, metric)
        if "acc_norm" in mine:
            n_diff += mine["acc"] != mine["acc_norm"]
    if name == "ko_copa_mini":
        assert n_diff > 0  # the random draw exercises cases where length normalisation matters


def test_generation_metrics_equal_lm_eval(lm_tasks: dict[str, Any]) -> None:
    lm = lm_tasks["gsm_mini_gen"]
    ours = load_task(TASK_DIR / "gsm_mini_gen.yaml")
    outputs = ["so #### 14", "#### 999", "no marker 14", "#### 1,150"]
    docs = ours.docs()
    for inst in lm.instances:
        inst.resps = [outputs[inst.doc_id % len(outputs)]]
    lm.apply_filters()
    lm_docs = list(lm.eval_docs)
    for inst in sorted(lm.instances, key=lambda i: i.doc_id):
        filtered = next(iter(inst.filtered_resps.values()))
        theirs = lm.process_results(lm_docs[inst.doc_id], [filtered])
        built = ours.build(docs[inst.doc_id])
        mine = ours.score(built, [[GenerationResponse(inst.resps[0])]])
        assert mine.prediction == filtered
        assert mine.metrics["exact_match"] == float(theirs["exact_match"]), inst.doc_id


def _lm_yaml(tmp: Path, extra: str) -> Path:
    (tmp / "d.jsonl").write_text('{"q": "x", "a": 0}\n', encoding="utf-8")
    path = tmp / "lm.yaml"
    path.write_text("task: t\ndataset_path: json\ndataset_kwargs:\n  data_files:\n"
                    "    test: d.jsonl\ntest_split: test\noutput_type: multiple_choice\n"
                    "doc_to_text: q\ndoc_to_choice: ['a', 'b']\ndoc_to_target: a\n" + extra,
                    encoding="utf-8")
    return path


@pytest.mark.parametrize(("extra", "key"), [
    ("process_docs: !function utils.process_docs\n", "process_docs"),
    ("include: base.yaml\n", "include"),
    ("description: [1]\n", "description"),
    ("fewshot_config:\n  doc_to_text: [1]\n", "fewshot_config.doc_to_text"),
    ("group: g\n", "group"),
    ("metric_list:\n  - metric: bleu\n", "metric_list.0.metric"),
    ("metric_list:\n  - metric: acc\n    aggregation: median\n", "metric_list.0.aggregation"),
    ("fewshot_config:\n  sampler: balanced\n", "fewshot_config.sampler"),
    ("fewshot_config:\n  samples: []\n", "fewshot_config.samples"),
    ("generation_kwargs:\n  do_sample: true\n", "generation_kwargs.do_sample"),
    ("filter_list:\n  - name: x\n    filter:\n      - function: majority_vote\n", "filter_list"),
])
def test_unsupported_lm_eval_keys_are_refused_by_name(tmp_path: Path, extra: str,
                                                      key: str) -> None:
    with pytest.raises(KaiError) as err:
        load_task(_lm_yaml(tmp_path, extra))
    msg = str(err.value)
    assert "lm.yaml" in msg and key.split(".")[0] in msg and "\n" not in msg


def test_hub_dataset_paths_are_refused(tmp_path: Path) -> None:
    path = _lm_yaml(tmp_path, "")
    path.write_text(path.read_text(encoding="utf-8").replace("dataset_path: json",
                                                             "dataset_path: skt/kobest_v1"),
                    encoding="utf-8")
    with pytest.raises(KaiError, match="dataset_path"):
        load_task(path)


def test_missing_json_keys_become_none_as_in_datasets(tmp_path: Path) -> None:
    path = _lm_yaml(tmp_path, "")
    (tmp_path / "d.jsonl").write_text('{"q": "x", "a": 0, "hint": "h"}\n{"q": "y", "a": 1}\n',
                                      encoding="utf-8")
    path.write_text(path.read_text(encoding="utf-8").replace("doc_to_text: q",
                                                             "doc_to_text: '{{q}} {{hint}}'"),
                    encoding="utf-8")
    task = load_task(path)
    assert [task.build(d)[0].prompt for d in task.docs()] == ["x h", "y None"]
