"""Parity with lm-evaluation-harness on a tiny local model (not timed), both task types.

Runs lm-eval's own HF backend and kaieval's engine on the same lm-eval task
YAMLs (5-shot, full-sentence answers and one-letter answers; the same shots for
every item, and shots drawn per item by lm-eval's default sampler) and asserts every
per-choice log-likelihood agrees within 1e-4 and the accuracies are identical.
The builders come from benchmarks/vs_lm_eval.py, which times the same run.
"""

from __future__ import annotations

import os
from importlib import util
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("lm_eval", reason="lm-eval is not installed (dev extra: lm-eval==0.4.13)")

_path = Path(__file__).resolve().parents[2] / "benchmarks" / "vs_lm_eval.py"
_spec = util.spec_from_file_location("vs_lm_eval", _path)
assert _spec is not None and _spec.loader is not None
bench: Any = util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


@pytest.mark.slow
@pytest.mark.parametrize("task", ["ko_fulltext_mc", "ko_letter_mc",
                                  "ko_fulltext_mc_peritem"])
def test_loglikelihoods_and_accuracy_match_lm_eval(
        task: str, tmp_path_factory: pytest.TempPathFactory,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in bench.OFFLINE_ENV.items():
        monkeypatch.setenv(k, v)
    root = tmp_path_factory.getbasetemp() / "parity"
    tasks = bench.write_tasks(root, n_docs=10)
    letters = "".join(f" A B C D 정답: {c}\n" for c in "ABCD" * 100)
    model = bench.build_model(root / "model", hidden=64, layers=2, vocab=1500,
                              extra_text=letters)
    theirs = bench.run_lm_eval(model, tasks, task, 4)
    ours = bench.run_kaieval(model, tasks, task, 4, root / f"samples-{task}-{os.getpid()}.jsonl")
    assert len(ours["lls"]) == len(theirs["lls"]) == 10
    assert bench._align(ours["lls"], theirs["lls"]) < 1e-4
    assert ours["acc"] == theirs["acc"] and ours["acc_norm"] == theirs["acc_norm"]


@pytest.mark.slow
def test_generations_and_exact_match_match_lm_eval(
        tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """generate_until: greedy, stop strings, exact_match -- same text and score per doc.

    Even docs' targets are transformers' own greedy continuation, so exact_match is
    0.5 only if both tools decode exactly as transformers does; odd docs must fail.
    """
    for k, v in bench.OFFLINE_ENV.items():
        monkeypatch.setenv(k, v)
    root = tmp_path_factory.getbasetemp() / "parity"
    model = bench.build_model(root / "model", hidden=64, layers=2, vocab=1500,
                              extra_text="".join(f" A B C D 정답: {c}\n" for c in "ABCD" * 100))
    tasks = bench.write_gen_task(root / "gen", model, n_docs=8, max_gen_toks=16)
    task = bench.GEN_TASK
    theirs = bench.run_lm_eval(model, tasks, task, 1)
    ours = bench.run_kaieval(model, tasks, task, 4, root / f"samples-{task}-{os.getpid()}.jsonl")
    diff = bench.compare_generations(ours, theirs)
    assert len(ours["gens"]) == len(theirs["gens"]) == 8
    assert diff == {"gen_diff": [], "em_diff": []}
    assert ours["em"] == {str(i): 1.0 if i % 2 == 0 else 0.0 for i in range(8)}
    assert ours["exact_match"] == theirs["exact_match"] == 0.5
    meta = bench.json.loads((tasks / f"{task}.meta.json").read_text(encoding="utf-8"))
    assert meta["cut_by_a_stop"] > 0  # the stop-string truncation was exercised
