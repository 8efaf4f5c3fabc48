"""``evaluate`` and the run record: fields, cache reuse, sample log, BenchmarkResult export."""

from __future__ import annotations

import json
from importlib import util
from pathlib import Path
from typing import Any

import pytest

from kaieval.bench.run import EvalRun, evaluate, to_benchmark_results
from kaieval.errors import KaiError

pytestmark = pytest.mark.slow  # builds the demo stand-in model (torch)

_spec = util.spec_from_file_location("engine_test_mod", Path(__file__).with_name(
    "test_bench_engine.py"))
assert _spec is not None and _spec.loader is not None
_mod: Any = util.module_from_spec(_spec)
_spec.loader.exec_module(_mod)
MiniTask = _mod.MiniTask


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kaieval.demo.standins import build_standins

    return build_standins(tmp_path_factory.mktemp("standins"), names=["nc"])["nc"]


def test_evaluate_records_the_run(model_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "samples.jsonl"
    run = evaluate(str(model_dir), [MiniTask(n_docs=5)], batch_size=4, cache_dir=tmp_path,
                   log_samples=log, progress=False, seed=99)
    assert run.schema_version == "kaieval/eval-run/v1"
    assert {"torch", "transformers", "kaieval"} <= set(run.packages)
    assert run.dtype == "float32" and run.batch_size == 4 and run.seeds == {"seed": 99}
    assert run.chat_template_hash is None and run.backend["backend"] == "hf"
    task = run.tasks[0]
    assert task.n_docs == 5 and task.computed == 20 and task.cache_hits == 0
    assert task.primary_metric == "acc" and len(task.item_scores) == 5
    assert task.metrics["acc"].value == pytest.approx(sum(task.item_scores) / 5)
    assert len(log.read_text(encoding="utf-8").splitlines()) == 5
    again = EvalRun.model_validate_json(run.model_dump_json())
    assert again == run
    rerun = evaluate(str(model_dir), [MiniTask(n_docs=5)], batch_size=1, cache_dir=tmp_path,
                     progress=False)
    assert rerun.tasks[0].computed == 0 and rerun.tasks[0].cache_hits == 20
    assert rerun.tasks[0].item_scores == task.item_scores

    results = to_benchmark_results(run, stage_id="s1", team_id="nc", role="candidate")
    assert len(results) == 1
    r = results[0]
    assert r.score == task.metrics["acc"].value and r.item_scores == task.item_scores
    assert r.source == "measured" and r.input_hashes["model"] == run.fingerprint
    assert r.stderr == task.metrics["acc"].stderr
    assert "protocol" not in r.settings  # a task without a stated reference
    json.loads(r.model_dump_json())


def test_results_carry_the_protocol_they_were_produced_with(model_dir: Path) -> None:
    """A catalogue default reports the harness it reproduces and the shots it used."""
    for shots, want in ((None, 0), (2, 2)):
        run = evaluate(str(model_dir), ["kobest_copa"], limit=3, num_fewshot=shots,
                       progress=False)
        (r,) = to_benchmark_results(run, stage_id="s1", team_id="nc")
        assert r.settings["protocol"] == {"harness": "lm-eval", "version": "0.4.13",
                                          "variant": "default", "shots": want}
    run = evaluate(str(model_dir), ["kmmlu@kaieval-v1"], limit=2, progress=False)
    (r,) = to_benchmark_results(run, stage_id="s1", team_id="nc")
    assert r.settings["protocol"] == {"harness": "kaieval", "version": "catalogue",
                                      "variant": "kaieval-v1", "shots": 5}


def test_evaluate_bad_input(model_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(KaiError, match="unknown backend"):
        evaluate(str(model_dir), [MiniTask(n_docs=2)], backend="nope", progress=False)
    with pytest.raises(KaiError, match="limit"):
        evaluate(str(model_dir), [MiniTask(n_docs=2)], limit=0, progress=False)
    with pytest.raises(KaiError):
        evaluate(str(model_dir), ["no-such-task-anywhere"], progress=False)
    with pytest.raises(KaiError, match="not found"):
        evaluate(str(tmp_path / "absent"), [MiniTask(n_docs=2)], progress=False)
    with pytest.raises(KaiError, match="model-name"):
        evaluate("http://127.0.0.1:9/v1", [MiniTask(n_docs=2)], backend="openai",
                 progress=False)


def test_batch_size_changes_no_number_of_a_run(model_dir: Path, tmp_path: Path) -> None:
    """Through the engine: 40 questions (more than one call of the old 16 or 32 contexts),
    shots shared by most of them; batch sizes 1, 8 and 32 give bit-identical numbers."""
    lls = {}
    for bs in (1, 8, 32):
        log = tmp_path / f"samples-{bs}.jsonl"
        evaluate(str(model_dir), [MiniTask(n_docs=40)], batch_size=bs, log_samples=log,
                 progress=False)
        lls[bs] = [json.loads(line)["loglikelihoods"]
                   for line in log.read_text(encoding="utf-8").splitlines()]
    assert len(lls[1]) == 40
    assert lls[8] == lls[1] and lls[32] == lls[1]
