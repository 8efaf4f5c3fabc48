"""HF backend: shared-prefix scoring equals full-sequence scoring, batch-size invariance,
lm-eval tokenisation rules, truncation, generation, refusals."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from kaieval.artifacts import model_hash
from kaieval.bench.api import GenerationRequest, LoglikelihoodRequest
from kaieval.bench.backends import get_backend
from kaieval.bench.backends.hf import HFBackend
from kaieval.errors import KaiError

pytestmark = pytest.mark.slow  # builds the demo stand-in model (torch)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from kaieval.demo.standins import build_standins

    return build_standins(tmp_path_factory.mktemp("standins"), names=["nc"])["nc"]


@pytest.fixture(scope="module")
def backend(model_dir: Path) -> HFBackend:
    return HFBackend(model_dir, batch_size=8)


def _requests() -> list[LoglikelihoodRequest]:
    from kaieval.synth.corpus import corpus_text

    text = corpus_text("train", 4000)
    reqs = []
    for i in range(7):  # 7 contexts of different lengths, 4 choices of 1..many tokens each
        ctx = text[i * 350: i * 350 + 60 + 25 * i] + " 정답:"
        for k in range(4):
            start = 3000 + 40 * k
            reqs.append(LoglikelihoodRequest(ctx, " " + text[start: start + 1 + 6 * k]))
    reqs.append(LoglikelihoodRequest("질문 ", "답"))  # trailing context space
    reqs.append(LoglikelihoodRequest("", "처음부터 끝까지"))  # empty context
    return reqs


def test_shared_prefix_equals_full_sequence_scoring(model_dir: Path, backend: HFBackend) -> None:
    reqs = _requests()
    shared = backend.loglikelihood(reqs)
    reference = HFBackend(model_dir, shared_prefix=False).loglikelihood(reqs)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(shared, reference, strict=True)) < 1e-4
    assert [a.greedy for a in shared] == [b.greedy for b in reference]
    assert [a.n_tokens for a in shared] == [b.n_tokens for b in reference]
    assert {a.n_tokens for a in shared[:28]} != {1}  # multi-token answers were exercised
    assert all(a.logprob < 0 for a in shared)


@pytest.mark.parametrize("bs", [1, 32])
def test_batch_size_does_not_change_loglikelihoods(model_dir: Path, backend: HFBackend,
                                                   bs: int) -> None:
    reqs = _requests()
    base = backend.loglikelihood(reqs)
    other = HFBackend(model_dir, batch_size=bs).loglikelihood(reqs)
    assert [a.logprob for a in other] == [b.logprob for b in base]  # bit-identical
    batched = HFBackend(model_dir, batch_size=bs, prefix_batching=True).loglikelihood(reqs)
    assert max(abs(a.logprob - b.logprob) for a, b in zip(base, batched, strict=True)) < 1e-5
    assert [a.greedy for a in batched] == [b.greedy for b in base]


def test_order_and_grouping_do_not_change_answers(backend: HFBackend) -> None:
    reqs = _requests()
    forward = backend.loglikelihood(reqs)
    backward = backend.loglikelihood(list(reversed(reqs)))[::-1]
    single = [backend.loglikelihood([r])[0] for r in reqs[:5]]
    assert max(abs(a.logprob - b.logprob) for a, b in zip(forward, backward, strict=True)) < 1e-5
    assert max(abs(a.logprob - b.logprob) for a, b in zip(forward, single, strict=False)) < 1e-5


def test_lm_eval_tokenisation_rules(backend: HFBackend) -> None:
    moved = backend.tokens(LoglikelihoodRequest("질문 ", "답"))
    assert moved == backend.tokens(LoglikelihoodRequest("질문", " 답"))
    prefix, cont = backend.tokens(LoglikelihoodRequest("가나다라", " 마바사"))
    whole = backend.tokenizer.encode("가나다라 마바사")
    assert list(prefix) == backend.tokenizer.encode("가나다라")
    assert list(prefix + cont) == list(prefix) + whole[len(prefix):]
    p0, c0 = backend.tokens(LoglikelihoodRequest("", "가나다"))
    assert p0 == (backend.prefix_token_id,) and len(c0) >= 1


def test_batched_encoding_gives_the_ids_of_one_request_at_a_time(model_dir: Path) -> None:
    """token_pairs encodes all texts in batched calls; the ids must be tokens()'s, for
    every rule: moved spaces, an empty context, a context of spaces only, a text that
    starts with BOS (no second BOS), repeated contexts, left truncation."""
    fresh = HFBackend(model_dir, max_length=24)
    bos = fresh._prefix_str
    reqs = [*_requests()[:12], LoglikelihoodRequest("질문 ", "답"),
            LoglikelihoodRequest("", "가나다"), LoglikelihoodRequest("   ", "가"),
            LoglikelihoodRequest(bos + "가나다", " 라"), LoglikelihoodRequest("가나다", " 라"),
            LoglikelihoodRequest("가나다", " 라")]
    other = HFBackend(model_dir, max_length=24)
    one_by_one = [other.tokens(r) for r in reqs]
    assert fresh.token_pairs(reqs) == one_by_one
    assert fresh.token_pairs([]) == []


def test_left_truncation_matches_reference(model_dir: Path) -> None:
    reqs = _requests()[:8]
    short = HFBackend(model_dir, max_length=24)
    ref = HFBackend(model_dir, max_length=24, shared_prefix=False)
    for r in reqs:
        prefix, cont = short.tokens(r)
        assert len(prefix) + len(cont) <= 25
    a, b = short.loglikelihood(reqs), ref.loglikelihood(reqs)
    assert max(abs(x.logprob - y.logprob) for x, y in zip(a, b, strict=True)) < 1e-4


def test_generation_greedy_stops_and_is_batch_invariant(backend: HFBackend) -> None:
    reqs = [GenerationRequest("오늘 회의에서", max_tokens=12),
            GenerationRequest("위원회는", stop=("다",), max_tokens=30)]
    both = backend.generate(reqs)
    alone = backend.generate(reqs[1:])
    assert both[1] == alone[0]
    assert "다" not in both[1].text
    assert backend.generate(reqs[:1]) == both[:1]  # deterministic


def _gen_requests() -> list[GenerationRequest]:
    """Few-shot prompts sharing their shots, a few on their own; stops, budgets, a zero."""
    from kaieval.synth.corpus import corpus_text

    text = corpus_text("train", 3000, seed=3)
    shots = "".join(f"질문: {text[i * 60:i * 60 + 40]}\n답: {i * 7}\n\n" for i in range(3))
    reqs = [GenerationRequest(f"{shots}질문: {text[900 + q * 45:930 + q * 45 + 3 * q]}\n답:",
                              stop=("\n\n", "다"), max_tokens=6 + 3 * (q % 4))
            for q in range(12)]
    reqs += [GenerationRequest(text[1500 + q * 90:1520 + q * 90 + 8 * q], max_tokens=10)
             for q in range(5)]
    reqs.append(GenerationRequest("오늘", max_tokens=0))
    return reqs


def test_batched_generation_equals_one_prompt_at_a_time(model_dir: Path) -> None:
    reqs = _gen_requests()
    backend = HFBackend(model_dir, batch_size=8, prefix_block=16)
    got = backend.generate(reqs)
    with backend._torch.inference_mode():
        ref = [backend._generate_one(r) for r in reqs]
    assert got == ref
    assert got[-1].text == ""
    assert sum(len(g.text) for g in got) > 50  # the prompts generated something
    assert backend.prefix_scorer is not None and backend.prefix_scorer.blocks_computed > 0
    for bs in (1, 32):
        assert HFBackend(model_dir, batch_size=bs, prefix_block=16).generate(reqs) == got
    # without the tree scorer (e.g. a sliding-window model) prompts go one at a time
    assert HFBackend(model_dir, shared_prefix=False).generate(reqs[:3]) == got[:3]


def test_fingerprint_tracks_files_and_settings(model_dir: Path, backend: HFBackend,
                                               tmp_path: Path) -> None:
    assert backend.fingerprint() == HFBackend(model_dir).fingerprint()
    assert backend.fingerprint() != HFBackend(model_dir, max_length=64).fingerprint()
    copy = tmp_path / "copy"
    shutil.copytree(model_dir, copy)
    before = model_hash(copy)
    cfg = copy / "generation_config.json"
    cfg.write_text(cfg.read_text(encoding="utf-8") + "\n", encoding="utf-8")
    assert model_hash(copy) != before
    described: dict[str, Any] = backend.describe()
    assert described["dtype"] == "float32" and described["fingerprint"] == backend.fingerprint()


def test_refusals(model_dir: Path, tmp_path: Path) -> None:
    pickled = tmp_path / "pickled"
    pickled.mkdir()
    for f in model_dir.iterdir():
        if f.name != "model.safetensors":
            shutil.copy(f, pickled / f.name)
    (pickled / "pytorch_model.bin").write_bytes(b"not loaded")
    with pytest.raises(KaiError, match=r"pickle checkpoint pytorch_model\.bin refused"):
        HFBackend(pickled)
    no_tok = tmp_path / "no_tok"
    no_tok.mkdir()
    for f in model_dir.iterdir():
        if not f.name.startswith("tokenizer"):
            shutil.copy(f, no_tok / f.name)
    with pytest.raises(KaiError, match="no tokenizer"):
        HFBackend(no_tok)
    with pytest.raises(KaiError, match="not found"):
        HFBackend(tmp_path / "missing")
    with pytest.raises(KaiError, match="dtype"):
        HFBackend(model_dir, dtype="int3")
    no_chat = tmp_path / "no_chat"
    shutil.copytree(model_dir, no_chat)
    config = json.loads((no_chat / "tokenizer_config.json").read_text("utf-8"))
    del config["chat_template"]
    (no_chat / "tokenizer_config.json").write_text(json.dumps(config), "utf-8")
    with pytest.raises(KaiError, match="chat template"):
        HFBackend(no_chat, chat_template=True)


@pytest.mark.parametrize(("case", "message"), [
    ("not-json", r"tokenizer\.json: not valid JSON"),
    ("garbage-model", r"tokenizer\.model: not a tokenizer file kaieval can read; tried "
                      r"SentencePiece \(.*\); .*tiktoken"),
])
def test_bad_tokenizer_is_one_line_before_any_model_load(
        model_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, case: str,
        message: str) -> None:
    """kaieval.tokenizer reads the folder's tokenizer first (the loader tokenizer efficiency
    and lineage use): a broken one is its one line, and transformers is never reached."""
    import transformers

    def never(*_: Any, **__: Any) -> Any:
        raise AssertionError("transformers was asked to load a folder with a bad tokenizer")

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", never)
    monkeypatch.setattr(transformers.AutoModelForCausalLM, "from_pretrained", never)
    bad = tmp_path / case
    shutil.copytree(model_dir, bad)
    if case == "not-json":
        (bad / "tokenizer.json").write_text("{not json", encoding="utf-8")
    else:
        (bad / "tokenizer.json").unlink()
        (bad / "tokenizer.model").write_bytes(b"\x0a\x05not a model")
    with pytest.raises(KaiError, match=message) as err:
        HFBackend(bad)
    assert "\n" not in str(err.value)


def test_stand_in_chat_template_wraps_chat_requests(model_dir: Path, backend: HFBackend) -> None:
    """Stand-ins carry a chat template, so chat tasks (IFEval) can be measured on them."""
    assert backend._wrap("질문", chat=True) == "<|user|>\n질문\n<|assistant|>\n"
    assert backend._wrap("질문", chat=False) == "질문"
    chat, = backend.generate([GenerationRequest("질문", max_tokens=4, chat=True)])
    plain, = backend.generate([GenerationRequest("<|user|>\n질문\n<|assistant|>\n",
                                                 max_tokens=4)])
    assert chat.text == plain.text
    assert HFBackend(model_dir, chat_template=True).chat_template_hash is not None


def test_registry(model_dir: Path) -> None:
    with pytest.raises(KaiError, match="unknown backend 'nope'"):
        get_backend("nope")
    assert get_backend("hf", path=model_dir, batch_size=2).name == "hf"
    try:
        import vllm  # noqa: F401
    except ImportError:
        with pytest.raises(KaiError, match="vllm"):
            get_backend("vllm", path=model_dir)


def test_loading_a_stand_in_writes_nothing_to_the_terminal(
        model_dir: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """No "Loading weights" bars or transformers advice leak into kai's own output."""
    from kaieval.bench.heldout import heldout_bits_per_char

    capfd.readouterr()
    HFBackend(model_dir).loglikelihood([LoglikelihoodRequest("질문", " 답")])
    heldout_bits_per_char(model_dir, "정부는 인공지능 정책을 발표했다.")
    out, err = capfd.readouterr()
    assert err == "" and out == ""

