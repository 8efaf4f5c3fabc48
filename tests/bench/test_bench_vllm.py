"""vLLM backend against the HF backend on the same tiny fp32 model (CPU): the same token ids,
per-choice log-likelihoods within 1e-4, the same predictions and greedy generations.

Runs only where vLLM is importable (``make test-vllm``: the separate vLLM venv); the
main venv skips it. One engine for the whole module: loading one takes 1-2 minutes
on a busy 2-core machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed (make test-vllm)")

from kaieval.bench.api import GenerationRequest, LoglikelihoodRequest
from kaieval.bench.backends.hf import HFBackend
from kaieval.bench.engine import run_task
from kaieval.bench.run import load_tasks
from kaieval.errors import KaiError

TOL = 1e-4  # the parity bound (fp32, different kernels: measured ~1e-6)
TASKS = ("kobest_copa", "haerae", "kmmlu")
GEN_TASK = "gsm8k"


@pytest.fixture(scope="module")
def vllm_backend(vllm_model_dir: Path) -> Iterator[Any]:
    from kaieval.bench.backends.vllm import VLLMBackend

    os.environ.setdefault("VLLM_CPU_OMP_THREADS_BIND", "nobind")
    backend = VLLMBackend(vllm_model_dir, dtype="float32", enforce_eager=True, cpu_kv_cache_gib=1)
    try:
        yield backend
    finally:
        backend.close()


@pytest.fixture(scope="module")
def hf_backend(vllm_model_dir: Path, vllm_backend: Any) -> HFBackend:
    # the same context: both keep max_length + 1 tokens (vLLM: max_model_len - 1)
    return HFBackend(vllm_model_dir, max_length=vllm_backend.max_length)


def _requests() -> list[LoglikelihoodRequest]:
    from kaieval.synth.corpus import corpus_text

    text = corpus_text("train", 6000, seed=3)
    reqs = []
    for i in range(8):  # contexts of different lengths, 4 choices of 1..many tokens each
        ctx = text[i * 500: i * 500 + 80 + 40 * i] + " 정답:"
        for k in range(4):
            start = 4500 + 50 * k
            reqs.append(LoglikelihoodRequest(ctx, " " + text[start: start + 1 + 7 * k]))
    reqs.append(LoglikelihoodRequest("질문 ", "답"))  # trailing context space
    reqs.append(LoglikelihoodRequest("", "처음부터 끝까지"))  # empty context: after BOS
    reqs.append(LoglikelihoodRequest(text[:3000], " 끝"))  # longer than the context: cut
    return reqs


def test_same_token_ids_as_hf(vllm_backend: Any, hf_backend: HFBackend) -> None:
    """kaieval tokenises for vLLM (its engine has no tokenizer): the ids are HF's."""
    assert vllm_backend.engine_args["skip_tokenizer_init"] is True
    reqs = _requests()
    assert [vllm_backend.tokens(r) for r in reqs] == [hf_backend.tokens(r) for r in reqs]
    prefix, cont = vllm_backend.tokens(reqs[-1])
    assert len(prefix) + len(cont) == vllm_backend.max_length + 1  # truncated to fit


def test_loglikelihoods_match_hf(vllm_backend: Any, hf_backend: HFBackend) -> None:
    reqs = _requests()
    got, want = vllm_backend.loglikelihood(reqs), hf_backend.loglikelihood(reqs)
    diffs = [abs(a.logprob - b.logprob) for a, b in zip(got, want, strict=True)]
    assert max(diffs) < TOL, diffs
    assert [a.n_tokens for a in got] == [b.n_tokens for b in want]
    assert [a.greedy for a in got] == [b.greedy for b in want]
    assert {a.n_tokens for a in got} != {1}  # multi-token continuations exercised
    assert all(a.logprob < 0 for a in got)


def test_catalogue_predictions_match_hf(vllm_backend: Any, hf_backend: HFBackend) -> None:
    """Whole catalogue tasks (few-shot prompts as users run them): per-choice
    log-likelihoods within 1e-4 and identical predictions."""
    for task in load_tasks(list(TASKS)):
        got = run_task(task, vllm_backend, limit=8, progress=False)
        want = run_task(task, hf_backend, limit=8, progress=False)
        for a, b in zip(got.scores, want.scores, strict=True):
            assert a.prediction == b.prediction, (task.name, a.doc_id)
            assert max(abs(x - y) for x, y in zip(a.loglikelihoods, b.loglikelihoods,
                                                  strict=True)) < TOL, (task.name, a.doc_id)


def test_greedy_generations_match_hf(vllm_backend: Any, hf_backend: HFBackend) -> None:
    reqs = [GenerationRequest("위원회는", stop=("\n",), max_tokens=24),
            GenerationRequest("한국어 모델의 평가는", stop=(".", "다"), max_tokens=32),
            GenerationRequest("질문: 무엇인가?\n답:", stop=(), max_tokens=40),
            GenerationRequest("대화", stop=("\n\n",), max_tokens=16, chat=True),
            GenerationRequest("아무것도", stop=(), max_tokens=0)]
    got = [r.text for r in vllm_backend.generate(reqs)]
    assert got == [r.text for r in hf_backend.generate(reqs)]
    assert got[-1] == "" and all(got[:3])
    outcome = run_task(load_tasks([GEN_TASK])[0], vllm_backend, limit=3, progress=False)
    reference = run_task(load_tasks([GEN_TASK])[0], hf_backend, limit=3, progress=False)
    assert [s.generation for s in outcome.scores] == [s.generation for s in reference.scores]


def test_stop_tokens_are_exact(vllm_backend: Any) -> None:
    """Tokens the engine may stop at all contain a stop string (so the cut text is final)."""
    ids = vllm_backend._stop_token_ids(("다",))
    eos = vllm_backend.tokenizer.eos_token_id
    assert ids[0] == eos and len(ids) > 1
    for i in ids[1:]:
        assert "다" in vllm_backend.tokenizer.decode([i], skip_special_tokens=True)


def test_run_record_has_engine_settings(vllm_backend: Any) -> None:
    info = vllm_backend.describe()
    assert info["device"] == "cpu" and info["dtype"] == "float32"
    engine = info["engine"]
    assert engine["enable_prefix_caching"] is True
    assert engine["tensor_parallel_size"] == 1 and engine["data_parallel_size"] == 1
    assert engine["max_model_len"] == 512 and info["max_length"] == 510
    assert info["cpu_kv_cache_gib"] == "1" and info["vllm"] != "?"
    assert len(vllm_backend.fingerprint()) == 64


def test_bad_settings_are_one_line_errors(vllm_model_dir: Path) -> None:
    from kaieval.bench.backends.vllm import VLLMBackend

    with pytest.raises(KaiError, match="dtype"):
        VLLMBackend(vllm_model_dir, dtype="int3")
    with pytest.raises(KaiError, match="parallel"):
        VLLMBackend(vllm_model_dir, tensor_parallel_size=0)
