"""OpenAIBackend against the real ``transformers serve`` (offline, local model directory,
127.0.0.1, free port): generation matches transformers' own greedy decoding, and since
that server ignores ``echo``/``logprobs``, log-likelihood requests fail with the one-line
error that points to the ``multiple_choice_generate`` task variants."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))
from openai_server import build_tiny_model, transformers_serve

from kaieval.bench.api import GenerationRequest, LoglikelihoodRequest
from kaieval.bench.backends.openai import OpenAIBackend
from kaieval.errors import KaiError

pytest.importorskip("fastapi", reason="needs transformers[serving]")
pytest.importorskip("uvicorn", reason="needs transformers[serving]")
if not Path(sys.executable).with_name("transformers").exists() and not shutil.which(
        "transformers"):
    pytest.skip("the transformers CLI is not installed", allow_module_level=True)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    root = tmp_path_factory.mktemp("tserve")
    model_dir = build_tiny_model(root / "tiny")
    with transformers_serve(model_dir, root / "serve.log", deadline_s=120) as url:
        yield url, model_dir


def test_generation_matches_transformers_greedy(served: tuple[str, Path]) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    url, model_dir = served
    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    prompts = ["연금 신청 건수는", "위원회는 2021년", "기자", "반도체 관련"]
    be = OpenAIBackend(url, str(model_dir), concurrency=2)
    got = be.generate([GenerationRequest(p, max_tokens=6) for p in prompts])
    for p, g in zip(prompts, got, strict=True):
        ids = tok(p, return_tensors="pt").input_ids
        with torch.no_grad():
            out = model.generate(ids, max_new_tokens=6, do_sample=False,
                                 pad_token_id=tok.pad_token_id)
        assert g.text == tok.decode(out[0, ids.shape[1]:], skip_special_tokens=True)
    assert be.describe()["served_model"] == {"id": str(model_dir)}


def test_loglikelihood_refused_with_hint(served: tuple[str, Path]) -> None:
    url, model_dir = served
    be = OpenAIBackend(url, str(model_dir), max_retries=0)
    with pytest.raises(KaiError, match=r"no tokenizer to split.*/tokenize"):  # none served
        be.loglikelihood([LoglikelihoodRequest("연금 신청", " 건수")])
    be = OpenAIBackend(url, str(model_dir), max_retries=0, tokenizer_path=model_dir)
    with pytest.raises(KaiError, match=r"multiple_choice_generate") as err:  # ids refused
        be.loglikelihood([LoglikelihoodRequest("연금 신청", " 건수")])
    assert str(err.value).startswith(f"{url}/completions: ")
