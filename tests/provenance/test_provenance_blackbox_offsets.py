"""Token starts rebuilt from token strings (blackbox_offsets), on a real byte-level BPE
tokenizer trained on Korean (small vocabulary: many syllables split into bytes) and on
the real local OpenAI-compatible server echoing token strings as plain decodes and as
vLLM 0.32 names them.

The oracle is independent of the code under test: token i starts on a character boundary
iff the tokenizer's own decode of ``ids[:i]`` ends on one (no trailing U+FFFD), and then
at ``len(decode(ids[:i]))``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
from openai_server import LocalOpenAIServer, build_tiny_model

from kaieval.provenance.blackbox import ModelSpec, load_prompts
from kaieval.provenance.blackbox_models import ModelSession, _echo_dists, _parse_echo
from kaieval.provenance.blackbox_offsets import (
    decoded_starts,
    exact_starts,
    looks_special,
    token_starts,
)
from kaieval.tokenizer.model import byte_alphabet

pytest.importorskip("torch")
FFFD = "\ufffd"


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_model(tmp_path_factory.mktemp("offsets") / "m", seed=3)


@pytest.fixture(scope="module")
def texts() -> list[str]:
    prompts, _ = load_prompts()
    # rare syllables and a Latin-1 letter: byte-level pieces, split characters
    return [p.prompt for p in prompts] + ["뷁꿳 쏼랅 é café 똠얌꿍", "  두 칸\n\n줄 바꿈 끝 "]


def _oracle(tok: Any, text: str, ids: list[int]) -> list[int]:
    out = []
    for i in range(len(ids)):
        head = str(tok.decode(ids[:i], clean_up_tokenization_spaces=False))
        out.append(len(head) if not head.endswith(FFFD) and text.startswith(head) else -1)
    return out


@pytest.fixture(scope="module")
def session(model: Path) -> Iterator[ModelSession]:
    s = ModelSession(ModelSpec(name="m", path=model), seed=0)
    yield s
    s.close()


def test_raw_pieces_give_the_true_starts(session: ModelSession, texts: list[str]) -> None:
    tok = session.backend.tokenizer
    split = 0
    for text in texts:
        ids = list(tok(text)["input_ids"])
        got = exact_starts(text, tok.convert_ids_to_tokens(ids))  # byte-level pieces
        assert got == _oracle(tok, text, ids), text
        split += got.count(-1)
    assert split > 20  # the hard case is exercised: tokens starting inside a character


@pytest.mark.parametrize("vllm", [False, True])
def test_endpoint_token_strings_give_the_local_starts(model: Path, session: ModelSession,
                                                      texts: list[str], vllm: bool) -> None:
    """The same model served and local: every start the endpoint's strings give is the
    true one, and they give nearly all of them. Plain decodes of tokens split inside a
    character can be ambiguous ("\ufffd" + "\ufffd" may cut a character either way),
    so some starts are given up; vLLM's names leave fewer open. The folder names its
    tokens as the server does and reads them the same way: the same starts, and the same
    distributions there."""
    server = LocalOpenAIServer(model, name="m")
    server.faults.vllm_tokens = vllm
    session.naming = "vllm" if vllm else "plain"  # the folder names tokens as the server
    tok = session.backend.tokenizer
    wrong = found = boundary = odd = 0
    try:
        for text in texts:
            raw = server.completion({"prompt": text, "echo": True, "logprobs": 5,
                                     "max_tokens": 1})
            a = _parse_echo(raw, 5)
            assert a is not None
            ids = list(tok(text)["input_ids"])
            truth = exact_starts(text, tok.convert_ids_to_tokens(ids))
            assert truth is not None
            remote = token_starts(text, a["tokens"][:a["n_prompt"]])
            assert remote == session.starts(text, ids)  # one way, both sides
            wrong += sum(r >= 0 and r != t for r, t in zip(remote, truth, strict=True))
            found += sum(r >= 0 and r == t for r, t in zip(remote, truth, strict=True))
            boundary += sum(t >= 0 for t in truth)
            odd += sum(t == "" or FFFD in t for t in a["tokens"])
            mine = session.dists([text], 5)
            assert mine is not None
            theirs = _echo_dists(a, text, 5)
            assert set(theirs) == set(mine[0])
            for off, dist in theirs.items():  # named alike: the same answer
                assert dist == pytest.approx(mine[0][off], abs=1e-5), (text, off)
    finally:
        server.close()
    assert odd > 100  # strings that do not spell their bytes were there to be aligned
    assert wrong == 0
    assert found >= (0.97 if vllm else 0.85) * boundary


def test_decoded_starts_by_hand() -> None:
    text = "가정부"
    # tokens [가 EC] [A0 95] [부]: decoded alone, and as vLLM names them
    assert decoded_starts(text, ["가" + FFFD, FFFD * 2 + "부"]) == [0, -1]
    assert decoded_starts(text, ["", "가정", "부"]) == [0, -1, 2]
    # one byte per token: only the first of a character starts on a boundary
    assert decoded_starts("가부", [FFFD, FFFD, FFFD, "부"]) == [0, -1, -1, 1]
    assert decoded_starts("정정", [FFFD, FFFD * 2, "정"]) == [0, -1, 1]
    # vLLM: the completing token repeats only part of what the "" tokens held
    assert decoded_starts("가정부부 다", ["", "", FFFD + "부부", " 다"]) == [0, -1, -1, 4]
    # BOS and an unplaceable piece: -1, then the next one re-synchronises
    assert decoded_starts("ab cd", ["<s>", "ab", "zz", " cd"]) == [-1, 0, -1, 2]
    assert token_starts("ab cd", ["<s>", "ab", " cd"]) == [-1, 0, 2]
    assert looks_special("<|endoftext|>") and looks_special("</s>")
    assert not looks_special("<b>c") and not looks_special("a")


def test_exact_starts_by_hand() -> None:
    # SentencePiece: dummy prefix, byte fallback for a rare syllable
    text = "뷁 ok"
    pieces = ["<s>", "▁", *(f"<0x{b:02X}>" for b in "뷁".encode()), "▁ok"]
    assert exact_starts(text, pieces) == [-1, 0, 0, -1, -1, 1]
    # byte-level: "Ġ" is a space, "ì"-style characters are bytes
    raw = "정".encode()
    table = byte_alphabet()[0]
    bl = ["a", "Ġ" + table[raw[0]], table[raw[1]] + table[raw[2]]]
    assert exact_starts("a 정", bl) == [0, 1, -1]
    assert exact_starts("a 정", ["a", " 정"]) == [0, 1]  # plain text spells it too
    assert exact_starts("a 정", ["a", " ", ""]) is None  # "" is no raw piece
    assert exact_starts("a 정", ["a", FFFD]) is None
