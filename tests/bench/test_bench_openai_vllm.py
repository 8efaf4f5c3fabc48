"""The openai backend against a real vLLM OpenAI-compatible server (CPU build) on 127.0.0.1,
compared with the HF backend on the same tiny fp32 model: token ids sent (our tokenizer,
or the server's /tokenize), echo and prompt_logprobs both, `kai eval` end to end,
greedy completions and chat.

Runs only where vLLM is importable (``make test-vllm``). One server for the module,
started with a bounded wait and killed at teardown.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("vllm", reason="vLLM is not installed (make test-vllm)")

from typer.testing import CliRunner

from kaieval.bench.api import GenerationRequest, LoglikelihoodRequest
from kaieval.bench.backends.hf import HFBackend
from kaieval.bench.backends.openai import OpenAIBackend
from kaieval.bench.engine import run_task
from kaieval.bench.run import load_tasks
from kaieval.cli import app
from vllm_served import SERVED_NAME  # type: ignore[import-not-found]

TOL = 1e-4
TASKS = ("kobest_copa", "haerae")


@pytest.fixture(scope="module")
def hf(vllm_model_dir: Path) -> HFBackend:
    return HFBackend(vllm_model_dir, max_length=510)  # as the vllm backend on a 512-token engine


def _requests() -> list[LoglikelihoodRequest]:
    from kaieval.synth.corpus import corpus_text

    text = corpus_text("train", 6000, seed=4)
    reqs = []
    for i in range(8):
        ctx = text[i * 500: i * 500 + 80 + 40 * i] + " 정답:"
        for k in range(4):
            start = 4500 + 50 * k
            reqs.append(LoglikelihoodRequest(ctx, " " + text[start: start + 1 + 7 * k]))
    reqs.append(LoglikelihoodRequest("질문 ", "답"))  # trailing context space
    return reqs


def _assert_parity(got: list[Any], want: list[Any]) -> None:
    diffs = [abs(a.logprob - b.logprob) for a, b in zip(got, want, strict=True)]
    assert max(diffs) < TOL, diffs
    assert [a.n_tokens for a in got] == [b.n_tokens for b in want]
    assert [a.greedy for a in got] == [b.greedy for b in want]


@pytest.mark.parametrize(("via", "per_request"), [("auto", 1), ("prompt_logprobs", 1),
                                                  ("auto", 8), ("prompt_logprobs", 8)])
def test_token_ids_from_our_tokenizer_match_hf(vllm_server: str, vllm_model_dir: Path,
                                               hf: HFBackend, via: str, per_request: int
                                               ) -> None:
    """Echo (found by auto) and vLLM's prompt_logprobs; one prompt per HTTP request, and
    a list of 8 (the last list shorter: 33 requests)."""
    reqs = _requests()
    be = OpenAIBackend(vllm_server, SERVED_NAME, tokenizer_path=vllm_model_dir, concurrency=4,
                       loglikelihood_via=via, prompts_per_request=per_request)
    _assert_parity(be.loglikelihood(reqs), hf.loglikelihood(reqs))
    info = be.describe()
    assert info["loglikelihood_split"] == "token_ids"
    # vLLM answers the OpenAI API's echo, so auto finds it; the extension when asked
    assert info["loglikelihood_via"] == ("echo" if via == "auto" else "prompt_logprobs")
    assert info["served_model"]["id"] == SERVED_NAME


def test_server_tokenize_matches_hf(vllm_server: str, hf: HFBackend) -> None:
    reqs = _requests()
    be = OpenAIBackend(vllm_server, SERVED_NAME, concurrency=2)
    _assert_parity(be.loglikelihood(reqs), hf.loglikelihood(reqs))
    assert be.describe()["loglikelihood_split"] == "server_tokenize"


def test_kai_eval_against_the_server_matches_hf(vllm_server: str, vllm_model_dir: Path,
                                                hf: HFBackend, tmp_path: Path) -> None:
    """The user's command, end to end: same predictions, log-likelihoods within 1e-4."""
    samples, out = tmp_path / "samples.jsonl", tmp_path / "run.json"
    res = CliRunner().invoke(app, [
        "eval", "--model", vllm_server, "--backend", "openai", "--model-name", SERVED_NAME,
        "--tokenizer", str(vllm_model_dir), "--tasks", ",".join(TASKS), "--limit", "8",
        "--concurrency", "4", "--prompts-per-request", "16",
        "--log-samples", str(samples), "--output", str(out),
        "--cache-dir", str(tmp_path / "cache")])
    assert res.exit_code == 0, res.output
    assert "approximate" not in res.output
    run = json.loads(out.read_text("utf-8"))
    assert run["backend"]["loglikelihood_via"] == "echo"
    assert run["backend"]["prompts_per_request"] == 16 and run["backend"]["concurrency"] == 4
    lines = [json.loads(line) for line in samples.read_text("utf-8").splitlines()]
    want = {(t.name, s.doc_id): s for t in load_tasks(list(TASKS))
            for s in run_task(t, hf, limit=8, progress=False).scores}
    assert len(lines) == len(want) == 16
    for line in lines:
        ref = want[(line["task"], line["doc_id"])]
        assert line["prediction"] == ref.prediction
        assert max(abs(a - b) for a, b in zip(line["loglikelihoods"], ref.loglikelihoods,
                                              strict=True)) < TOL


def test_greedy_completions_and_chat_match_hf(vllm_server: str, hf: HFBackend) -> None:
    reqs = [GenerationRequest("위원회는", stop=("\n",), max_tokens=24),
            GenerationRequest("한국어 모델의 평가는", stop=(".", "다"), max_tokens=32),
            GenerationRequest("질문: 무엇인가?\n답:", stop=(), max_tokens=40),
            GenerationRequest("대화", stop=("\n\n",), max_tokens=16, chat=True)]
    be = OpenAIBackend(vllm_server, SERVED_NAME, concurrency=4)
    got = [r.text for r in be.generate(reqs)]
    assert got == [r.text for r in hf.generate(reqs)]
    assert all(got)


def test_prompt_longer_than_the_served_context_is_cut_from_the_left(
        vllm_server: str, vllm_model_dir: Path) -> None:
    """A few-shot prompt over the server's 512 tokens: vLLM answers HTTP 400 to it as
    sent; the backend keeps its last 512 - max_tokens ids (from the server's /tokenize)
    as the local backends do, counts it, and generates as HF does on those ids."""
    from kaieval.synth.corpus import corpus_text

    long_prompt = corpus_text("heldout", 4000, seed=3)
    req = GenerationRequest(long_prompt, stop=("\n\n",), max_tokens=16)
    be = OpenAIBackend(vllm_server, SERVED_NAME, concurrency=2)
    got = be.generate([req, GenerationRequest("위원회는", stop=("\n",), max_tokens=8)])
    assert be.left_cut == 1  # only the long prompt needed the server's tokenisation
    assert be.describe()["generation_prompts_left_cut"] == 1
    assert got[0].text == HFBackend(vllm_model_dir, max_length=512).generate([req])[0].text
