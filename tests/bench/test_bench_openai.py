"""OpenAIBackend against a real local server (tests/bench/openai_server.py) that runs a
tiny transformers model: log-likelihoods equal direct transformers computations, order,
bounded concurrency, retries, and one-line errors for each fault."""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from openai_server import LocalOpenAIServer, build_tiny_model, free_port

from kaieval.bench.api import GenerationRequest, LoglikelihoodRequest
from kaieval.bench.backends.openai import OpenAIBackend
from kaieval.errors import KaiError

# Space-aligned pairs (the text-offset path and lm-eval's split agree on these), one
# with a trailing context space (moved to the continuation, as lm-eval does).
ALIGNED = [
    ("2026년 3월 20일", " 기준 연금 신청 건수는"),
    ("위원회는 2021년 5월 14일 반도체 관련", " 신청서를 추가하기로 했다."),
    ("질문: 연금 신청 건수는? 답:", " 34건"),
    ("질문: 연금 신청 건수는? 답: ", "34건으로 집계됐다"),
    ("기자", "."),
]
# Boundaries inside a word: only the token-id path reproduces lm-eval's split here.
STRADDLE = [("연금 신", "청 건수"), ("반도체 관련 신청서", "를 추가"), ("", "연금 신청")]


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("openai") / "tiny")


@pytest.fixture(scope="module")
def server(model_dir: Path) -> Iterator[LocalOpenAIServer]:
    srv = LocalOpenAIServer(model_dir, name="tiny-ko")
    yield srv
    srv.close()


@pytest.fixture()
def srv(server: LocalOpenAIServer) -> LocalOpenAIServer:
    server.reset()
    return server


def backend(srv: LocalOpenAIServer, **kw: Any) -> OpenAIBackend:
    """Without a tokenizer, the text-offset split (the server serves no /tokenize unless
    a test turns it on): what most of these tests check."""
    kw.setdefault("backoff_base", 0.01)
    if kw.get("tokenizer_path") is None:
        kw.setdefault("approximate_split", True)
    return OpenAIBackend(srv.base_url, "tiny-ko", **kw)


def direct_ll(srv: LocalOpenAIServer, context: str, continuation: str, bos: bool = False
              ) -> tuple[float, bool, int]:
    """lm-eval's HF computation, done here with transformers: split trailing spaces,
    encode the pair whole, score the tail after the context's encoding (after a BOS
    token when ``bos``)."""
    import torch

    n = len(context) - len(context.rstrip())
    if n:
        context, continuation = context[:-n], context[-n:] + continuation

    def enc(s: str) -> list[int]:
        return list(srv.tok(s, add_special_tokens=False).input_ids)

    if context:
        whole, n_ctx = enc(context + continuation), len(enc(context))
    else:
        whole, n_ctx = [srv.tok.eos_token_id, *enc(continuation)], 1
    if bos:
        whole, n_ctx = [srv.tok.bos_token_id, *whole], n_ctx + 1
    with torch.no_grad():
        lp = torch.log_softmax(srv.model(torch.tensor([whole])).logits[0].float(), dim=-1)
    picked = range(n_ctx, len(whole))
    total = sum(float(lp[i - 1, whole[i]]) for i in picked)
    greedy = all(int(lp[i - 1].argmax()) == whole[i] for i in picked)
    return total, greedy, len(picked)


@pytest.mark.parametrize("usage", [True, False])
def test_loglikelihood_by_text_offsets_matches_transformers(srv: LocalOpenAIServer,
                                                            usage: bool) -> None:
    srv.faults.usage = usage
    got = backend(srv).loglikelihood([LoglikelihoodRequest(c, x) for c, x in ALIGNED])
    for (c, x), r in zip(ALIGNED, got, strict=True):
        want, greedy, n = direct_ll(srv, c, x)
        assert abs(r.logprob - want) < 1e-4, (c, x, r.logprob, want)
        assert (r.greedy, r.n_tokens) == (greedy, n)
        assert r.logprob < 0


def test_text_offsets_shifted_by_bos_as_vllm_reports_them(srv: LocalOpenAIServer) -> None:
    """vLLM prepends BOS and counts offsets over decoded tokens ("<s>" is 3 characters):
    the continuation is still found, measured back from the end of the prompt."""
    srv.faults.vllm_style = True
    got = backend(srv).loglikelihood([LoglikelihoodRequest(c, x) for c, x in ALIGNED])
    for (c, x), r in zip(ALIGNED, got, strict=True):
        want, greedy, n = direct_ll(srv, c, x, bos=True)
        assert abs(r.logprob - want) < 1e-4, (c, x, r.logprob, want)
        assert (r.greedy, r.n_tokens) == (greedy, n)


def test_loglikelihood_by_token_ids_matches_lm_eval_split(srv: LocalOpenAIServer,
                                                          model_dir: Path) -> None:
    pairs = ALIGNED + STRADDLE
    be = backend(srv, tokenizer_path=model_dir)
    got = be.loglikelihood([LoglikelihoodRequest(c, x) for c, x in pairs])
    for (c, x), r in zip(pairs, got, strict=True):
        want, greedy, n = direct_ll(srv, c, x)
        assert abs(r.logprob - want) < 1e-4, (c, x, r.logprob, want)
        assert (r.greedy, r.n_tokens) == (greedy, n)
    assert all(isinstance(p, list) for p in srv.faults.prompts)  # ids were sent
    assert be.describe()["loglikelihood_split"] == "token_ids"


def _tokenizer_as(model_dir: Path, out: Path, fmt: str) -> Path:
    """The served model's byte-level BPE re-written without tokenizer.json (same ids): a
    vocab.json + merges.txt folder or a tiktoken rank file; the config names the specials'
    ids (``added_tokens_decoder``), as a published folder without tokenizer.json does."""
    import json

    import tokfiles

    out.mkdir()
    tj = model_dir / "tokenizer.json"
    config = json.loads((model_dir / "tokenizer_config.json").read_text("utf-8"))
    config["added_tokens_decoder"] = {
        str(t["id"]): {"content": t["content"], "special": True}
        for t in json.loads(tj.read_text("utf-8"))["added_tokens"]}
    if fmt == "tiktoken":
        tokfiles.write_tiktoken(tj, out / "tokenizer.model")
    else:
        tokfiles.write_bpe_folder(tj, out)
    (out / "tokenizer_config.json").write_text(json.dumps(config), "utf-8")
    return out


def test_tokenizer_in_any_format_splits_as_tokenizer_json(
        srv: LocalOpenAIServer, model_dir: Path, tmp_path: Path) -> None:
    """``tokenizer_path`` is read by kaieval.tokenizer: a vocab.json + merges.txt folder and
    a tiktoken ``tokenizer.model`` (with its pattern) send the same ids as tokenizer.json,
    and a tokenizer.json keeps its own file hash in the fingerprint."""
    import hashlib

    from kaieval.tokenizer.encodings import GPT2_PATTERN

    reqs = [LoglikelihoodRequest(c, x) for c, x in ALIGNED + STRADDLE]
    ref = backend(srv, tokenizer_path=model_dir)
    want = ref.loglikelihood(reqs)
    sent = sorted(map(str, srv.faults.prompts))  # arrival order varies
    assert ref.describe()["tokenizer"]["sha256"] == hashlib.sha256(
        (model_dir / "tokenizer.json").read_bytes()).hexdigest()
    for fmt in ("vocab.json + merges.txt", "tiktoken"):
        folder = _tokenizer_as(model_dir, tmp_path / fmt.replace(" ", ""), fmt)
        srv.reset()
        be = backend(srv, tokenizer_path=folder,
                     tokenizer_pattern=GPT2_PATTERN if fmt == "tiktoken" else None)
        assert be.loglikelihood(reqs) == want, fmt
        assert sorted(map(str, srv.faults.prompts)) == sent, fmt
        assert be.fingerprint() != ref.fingerprint()
    with pytest.raises(KaiError, match=r"unknown encoding .*--pattern"):
        backend(srv, tokenizer_path=tmp_path / "tiktoken")


def test_greedy_flag_true_for_the_models_own_argmax(srv: LocalOpenAIServer,
                                                     model_dir: Path) -> None:
    import torch

    context = "2026년 3월 20일 기준"
    ids = list(srv.tok(context, add_special_tokens=False).input_ids)
    with torch.no_grad():
        nxt = srv.model.generate(torch.tensor([ids]), max_new_tokens=2, do_sample=False,
                                 pad_token_id=srv.tok.pad_token_id)[0, len(ids):]
    continuation = srv.tok.decode(nxt)
    assert direct_ll(srv, context, continuation)[1] is True  # re-encodes to the same ids
    wrong = " 연금" if continuation != " 연금" else " 신청"
    got = backend(srv, tokenizer_path=model_dir).loglikelihood(
        [LoglikelihoodRequest(context, continuation), LoglikelihoodRequest(context, wrong)])
    assert [g.greedy for g in got] == [True, False]


def test_empty_context_without_tokenizer_is_refused(srv: LocalOpenAIServer) -> None:
    with pytest.raises(KaiError, match=r"token_logprobs\[0\] is None"):
        backend(srv).loglikelihood([LoglikelihoodRequest("", "연금 신청")])


def test_concurrency_overlaps_within_bound_and_keeps_order(srv: LocalOpenAIServer) -> None:
    srv.faults.delay_s = 0.25
    pairs = [(f"{i}월 {i * 3}일 기준", f" 연금 {i}건") for i in range(1, 13)]
    be = backend(srv, concurrency=3)
    got = be.loglikelihood([LoglikelihoodRequest(c, x) for c, x in pairs])
    assert srv.faults.max_in_flight == 3  # overlapped, never above the bound
    for (c, x), r in zip(pairs, got, strict=True):  # each answer is its own request's
        assert abs(r.logprob - direct_ll(srv, c, x)[0]) < 1e-4
    assert len({round(r.logprob, 6) for r in got}) == len(pairs)


def test_two_500s_then_success(srv: LocalOpenAIServer) -> None:
    srv.faults.statuses = [500, 503]
    be = backend(srv)
    [r] = be.loglikelihood([LoglikelihoodRequest(*ALIGNED[0])])
    assert abs(r.logprob - direct_ll(srv, *ALIGNED[0])[0]) < 1e-4
    assert srv.faults.posts == 3 and be.attempts == 3


def test_429_is_retried_and_5xx_gives_up_after_bound(srv: LocalOpenAIServer) -> None:
    srv.faults.statuses = [429]
    assert backend(srv).generate([GenerationRequest("연금", max_tokens=2)])[0].text is not None
    srv.reset()
    srv.faults.statuses = [502] * 10
    with pytest.raises(KaiError) as err:
        backend(srv, max_retries=2).generate([GenerationRequest("연금", max_tokens=2)])
    msg = str(err.value)
    assert f"{srv.base_url}/completions" in msg and "HTTP 502" in msg
    assert "3 attempts" in msg and "\n" not in msg
    assert srv.faults.posts == 3


def test_4xx_fails_at_once(srv: LocalOpenAIServer) -> None:
    srv.faults.statuses = [400]
    with pytest.raises(KaiError, match=r"HTTP 400.*multiple_choice_generate"):
        backend(srv).loglikelihood([LoglikelihoodRequest(*ALIGNED[0])])
    assert srv.faults.posts == 1


def test_down_server_errors_after_bounded_retries() -> None:
    url = f"http://127.0.0.1:{free_port()}/v1"
    be = OpenAIBackend(url, "m", max_retries=2, backoff_base=0.05)
    t0 = time.monotonic()
    with pytest.raises(KaiError, match=r"down or unreachable.*gave up after 3 attempts") as err:
        be.generate([GenerationRequest("x")])
    assert time.monotonic() - t0 < 5
    assert str(err.value).startswith(f"{url}/completions: ")
    assert be.attempts == 3


def test_timeout_is_retried_then_reported(srv: LocalOpenAIServer) -> None:
    srv.faults.delay_s = 1.0
    with pytest.raises(KaiError, match=r"timed out after 0.2 s.*2 attempts"):
        backend(srv, timeout=0.2, max_retries=1).generate([GenerationRequest("x")])


def test_malformed_json_and_missing_fields(srv: LocalOpenAIServer) -> None:
    srv.faults.malformed = 5
    with pytest.raises(KaiError, match=r"bad answer: malformed JSON.*the same after 3 "
                                       r"attempts") as err:
        backend(srv).generate([GenerationRequest("x")])
    assert "\n" not in str(err.value)
    assert srv.faults.posts == 3  # a bad answer is retried twice, then reported
    srv.reset()
    srv.faults.missing_choices = 5
    with pytest.raises(KaiError, match=r"response field 'choices' is missing"):
        backend(srv).loglikelihood([LoglikelihoodRequest(*ALIGNED[0])])
    assert srv.faults.posts == 3
    srv.reset()
    srv.faults.malformed = 1  # a glitch: the retry gets a good answer
    assert backend(srv).generate([GenerationRequest("x")])[0].text is not None
    assert srv.faults.posts == 2


def test_a_bad_answer_once_is_retried_and_the_good_one_scored(srv: LocalOpenAIServer) -> None:
    """NaN log-probs or missing log-probs on the first answer only: the retry's (honest)
    answer is the one returned, equal to the direct computation."""
    want = direct_ll(srv, *ALIGNED[0])[0]
    srv.faults.logprob_value, srv.faults.lie_first = float("nan"), 1
    [r] = backend(srv).loglikelihood([LoglikelihoodRequest(*ALIGNED[0])])
    assert abs(r.logprob - want) < 1e-4 and srv.faults.posts == 2
    srv.reset()
    srv.faults.drop_logprobs = 1
    [r] = backend(srv).loglikelihood([LoglikelihoodRequest(*ALIGNED[0])])
    assert abs(r.logprob - want) < 1e-4 and srv.faults.posts == 2


@pytest.mark.parametrize(("fault", "value", "says"), [
    ("extra_tokens", 2, r"echoed \d+ token log-probs for a prompt of \d+ tokens"),
    ("usage_delta", 1, r"usage.prompt_tokens is \d+ for a prompt of \d+ tokens"),
])
def test_token_counts_that_contradict_the_request_are_refused(
        srv: LocalOpenAIServer, model_dir: Path, fault: str, value: int, says: str) -> None:
    """Token ids sent: the echo must hold one log-prob per prompt token (plus the one
    generated), and usage must agree."""
    setattr(srv.faults, fault, value)
    with pytest.raises(KaiError, match=f"bad answer: {says}.*the same after 3 attempts"):
        backend(srv, tokenizer_path=model_dir).loglikelihood(
            [LoglikelihoodRequest(*ALIGNED[0])])
    assert srv.faults.posts == 3


def test_usage_beyond_the_echo_is_refused_on_the_text_path(srv: LocalOpenAIServer) -> None:
    srv.faults.usage_delta = 100
    with pytest.raises(KaiError, match=r"usage.prompt_tokens is \d+ but only \d+ token "
                                       r"log-probs were echoed"):
        backend(srv).loglikelihood([LoglikelihoodRequest(*ALIGNED[0])])


def test_bad_answers_stay_within_max_retries(srv: LocalOpenAIServer) -> None:
    srv.faults.logprob_value = float("nan")
    with pytest.raises(KaiError, match="log-probability is finite") as err:
        backend(srv, max_retries=0).loglikelihood([LoglikelihoodRequest(*ALIGNED[0])])
    assert srv.faults.posts == 1 and "the same after" not in str(err.value)


def test_endpoint_without_echo_logprobs_points_to_generate_variant(
        srv: LocalOpenAIServer) -> None:
    srv.faults.echo = False
    with pytest.raises(KaiError, match=r"no echoed log-probs.*multiple_choice_generate"):
        backend(srv).loglikelihood([LoglikelihoodRequest(*ALIGNED[0])])


def test_generation_completions_and_chat(srv: LocalOpenAIServer) -> None:
    import torch

    def greedy(prompt: str, n: int) -> str:
        ids = srv.tok(prompt, add_special_tokens=False, return_tensors="pt").input_ids
        with torch.no_grad():
            out = srv.model.generate(ids, max_new_tokens=n, do_sample=False,
                                     pad_token_id=srv.tok.pad_token_id)
        return str(srv.tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True))

    prompts = ["연금 신청", "위원회는", "2026년"]
    got = backend(srv).generate([GenerationRequest(p, max_tokens=5) for p in prompts])
    assert [g.text for g in got] == [greedy(p, 5) for p in prompts]
    full = got[0].text
    stop = full[2:4] if len(full) >= 4 else full
    [cut] = backend(srv).generate([GenerationRequest(prompts[0], stop=(stop,), max_tokens=5)])
    assert cut.text == full[: full.find(stop)]
    many = ("<no1>", "<no2>", "<no3>", "<no4>", stop)  # the 5th is cut client-side
    [cut5] = backend(srv).generate([GenerationRequest(prompts[0], stop=many, max_tokens=5)])
    assert cut5.text == cut.text and srv.faults.prompts[-1] == prompts[0]
    chat = backend(srv, chat=True).generate([GenerationRequest("연금", max_tokens=4)])
    assert chat[0].text == greedy("user: 연금\nassistant:", 4)
    assert srv.faults.prompts[-1] == [{"role": "user", "content": "연금"}]


def test_fingerprint_and_describe_never_hold_the_key(srv: LocalOpenAIServer) -> None:
    be = backend(srv, api_key="sk-secret-123")
    d = be.describe()
    assert "sk-secret" not in repr(d) and d["api_key_set"] is True
    assert d["served_model"] == {"id": "tiny-ko", "root": "tests/local-model"}
    fp = be.fingerprint()
    assert fp == backend(srv).fingerprint()  # the key does not change answers
    assert fp != backend(srv, chat=True).fingerprint()
    assert fp != OpenAIBackend(srv.base_url, "other").fingerprint()
    assert be.generate([GenerationRequest("연금", max_tokens=1)])
    assert srv.faults.auth[-1] == "Bearer sk-secret-123"  # sent, just never recorded


def test_sync_call_inside_running_loop(srv: LocalOpenAIServer) -> None:
    async def main() -> float:
        return backend(srv).loglikelihood([LoglikelihoodRequest(*ALIGNED[0])])[0].logprob

    assert abs(asyncio.run(main()) - direct_ll(srv, *ALIGNED[0])[0]) < 1e-4


@pytest.mark.parametrize("kw", [{"base_url": "127.0.0.1:8000/v1"}, {"concurrency": 0},
                                {"model": ""}])
def test_bad_settings(kw: dict[str, Any]) -> None:
    args: dict[str, Any] = {"base_url": "http://127.0.0.1:1/v1", "model": "m", **kw}
    with pytest.raises(KaiError):
        OpenAIBackend(args.pop("base_url"), args.pop("model"), **args)


def test_empty_batch_makes_no_request(srv: LocalOpenAIServer) -> None:
    assert backend(srv).loglikelihood([]) == [] and srv.faults.posts == 0


def test_engine_scores_equal_hf_backend(srv: LocalOpenAIServer, model_dir: Path,
                                        tmp_path: Path) -> None:
    """Through the whole engine, a catalogue task scores the same over HTTP as locally."""
    import json

    from kaieval.bench.run import evaluate

    def lls(path: Path) -> list[tuple[float, ...]]:
        rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]
        return [tuple(r["loglikelihoods"]) for r in rows]

    hf = evaluate(str(model_dir), ["kobest_copa"], backend="hf", limit=8, progress=False,
                  log_samples=tmp_path / "hf.jsonl")
    oa = evaluate(srv.base_url, ["kobest_copa"], backend="openai", model_name="tiny-ko",
                  tokenizer_path=model_dir, limit=8, progress=False,
                  log_samples=tmp_path / "oa.jsonl")
    a, b = lls(tmp_path / "hf.jsonl"), lls(tmp_path / "oa.jsonl")
    assert len(a) == 8 and [len(x) for x in a] == [len(x) for x in b]
    assert max(abs(x - y) for xs, ys in zip(a, b, strict=True)
               for x, y in zip(xs, ys, strict=True)) < 1e-4
    assert oa.tasks[0].metrics["acc"].value == hf.tasks[0].metrics["acc"].value
    assert oa.backend["backend"] == "openai" and "api_key" not in oa.backend


@pytest.mark.parametrize("lie", [float("nan"), float("inf"), float("-inf"), 0.5])
def test_non_finite_or_positive_log_probs_are_an_error_not_a_score(
        srv: LocalOpenAIServer, tmp_path: Path, lie: float) -> None:
    """A lying endpoint (issue 11): NaN, infinite or positive log-probs are refused in one
    line, and nothing reaches the request cache."""
    from kaieval.bench.cache import RequestCache
    from kaieval.bench.run import CACHE_FILE, evaluate

    srv.faults.logprob_value = lie
    be = backend(srv)
    with pytest.raises(KaiError, match="log-probability is finite and at most 0") as err:
        be.loglikelihood([LoglikelihoodRequest(context=c, continuation=x) for c, x in ALIGNED])
    assert "\n" not in str(err.value)
    with pytest.raises(KaiError, match="log-probability is finite and at most 0"):
        evaluate(srv.base_url, ["kobest_copa"], backend="openai", model_name="tiny-ko", limit=2,
                 cache_dir=tmp_path, progress=False, backoff_base=0.01,
                 approximate_split=True)
    cache = RequestCache(tmp_path / CACHE_FILE)
    try:
        assert len(cache) == 0  # nothing non-finite is kept for a rerun to score
    finally:
        cache.close()


def test_kai_eval_against_a_nan_endpoint_exits_with_one_line(srv: LocalOpenAIServer,
                                                              tmp_path: Path) -> None:
    """Issue 11: `kai eval` against an endpoint answering NaN log-probs reported an
    accuracy and cached the NaNs. Now: exit 2, one line naming the endpoint, no cache row."""
    import os
    import subprocess

    from kaieval.bench.cache import RequestCache
    from kaieval.bench.run import CACHE_FILE

    srv.faults.logprob_value = float("nan")
    srv.faults.tokenize = True  # as vLLM: ids from its /tokenize
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2] / "src")}
    proc = subprocess.run(
        [sys.executable, "-m", "kaieval.cli", "eval", "--model", srv.base_url, "--backend",
         "openai", "--model-name", "tiny-ko", "--tasks", "kobest_copa", "--limit", "2",
         "--cache-dir", str(tmp_path)], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in proc.stderr, proc.stderr  # (+ progress)
    assert f"{srv.base_url}/completions" in errors[0]
    assert "bad answer" in errors[0] and "log-probability is finite and at most 0" in errors[0]
    assert "acc" not in proc.stdout
    cache = RequestCache(tmp_path / CACHE_FILE)
    try:
        assert len(cache) == 0
    finally:
        cache.close()
    assert b"NaN" not in (tmp_path / CACHE_FILE).read_bytes()


def test_without_a_tokenizer_or_tokenize_log_likelihood_is_refused_before_any_post(
        srv: LocalOpenAIServer) -> None:
    """Text offsets are an approximation: not taken silently (issue 15)."""
    be = backend(srv, approximate_split=False)
    with pytest.raises(KaiError, match=r"--tokenizer PATH.*/tokenize.*--approximate-split"):
        be.loglikelihood([LoglikelihoodRequest(*ALIGNED[0])])
    assert srv.faults.posts == 0
    assert be.generate([GenerationRequest("연금", max_tokens=2)])[0].text is not None


def test_the_servers_tokenize_splits_as_the_named_tokenizer(
        srv: LocalOpenAIServer, model_dir: Path) -> None:
    """A server that serves /tokenize (vLLM) is asked for the ids: the same prompts, the
    same numbers as with the tokenizer named, each distinct text tokenized once."""
    pairs = [(c, x) for c, x in ALIGNED + STRADDLE if c]
    reqs = [LoglikelihoodRequest(c, x) for c, x in pairs]
    want = backend(srv, tokenizer_path=model_dir).loglikelihood(reqs)
    sent = sorted(map(str, srv.faults.prompts))
    srv.reset()
    srv.faults.tokenize = True
    be = backend(srv, approximate_split=False)
    assert be.loglikelihood(reqs) == want
    assert sorted(map(str, srv.faults.prompts)) == sent
    texts = {t for c, x in pairs for t in (c.rstrip(), c + x)}
    assert srv.faults.tokenized == len(texts) + 1  # + the probe
    described = be.describe()
    assert described["loglikelihood_split"] == "server_tokenize" and not described["approximate"]
    with pytest.raises(KaiError, match=r"empty context.*--tokenizer"):
        be.loglikelihood([LoglikelihoodRequest("", "연금 신청")])
    srv.faults.tokenize = False
    offsets = backend(srv)
    assert offsets.describe()["approximate"] is True
    assert be.fingerprint() != offsets.fingerprint()


def test_an_approximate_run_says_so_in_every_number(srv: LocalOpenAIServer) -> None:
    from kaieval.bench.run import evaluate, to_benchmark_results

    run = evaluate(srv.base_url, ["kobest_copa"], backend="openai", model_name="tiny-ko",
                   limit=2, progress=False, approximate_split=True)
    assert run.backend["loglikelihood_split"] == "text_offset" and run.backend["approximate"]
    lines = run.summary_lines()
    assert lines and all("approximate" in line for line in lines)
    [rec] = to_benchmark_results(run, stage_id="s1", team_id="t", role="candidate")
    assert "text offsets" in rec.settings["approximate"]


def test_a_generation_prompt_longer_than_the_served_context_is_cut_from_the_left(
        srv: LocalOpenAIServer) -> None:
    """As the local backends and lm-eval's API models do: the server's own token ids of
    the prompt, cut from the left to leave room for the answer (a server refuses a prompt
    that does not fit, and the run stopped with HTTP 400)."""
    long_prompt = " ".join(["연금 개혁은 어렵다."] * 40)
    short = "연금"
    srv.faults.context = 48
    with pytest.raises(KaiError, match=r"HTTP 400.*maximum context length is 48"):
        backend(srv, max_retries=0).generate([GenerationRequest(long_prompt, max_tokens=8)])
    srv.faults.tokenize = True
    be = backend(srv)
    got = be.generate([GenerationRequest(long_prompt, max_tokens=8),
                       GenerationRequest(short, max_tokens=8)])
    ids = srv.tok(long_prompt)["input_ids"]
    assert len(ids) + 8 > 48
    sent = srv.faults.prompts[-2:]
    assert ids[-40:] in sent and short in sent  # the long one as its last 40 ids, short as text
    assert srv.faults.tokenized == 2  # the probe, then the long prompt: a short one fits
    srv.faults.context, srv.faults.tokenize = None, False
    assert got[0].text == srv.completion({"prompt": ids[-40:], "max_tokens": 8})["choices"][0][
        "text"]
    assert got[1].text and be.describe()["generation_prompts_left_cut"] == 1
