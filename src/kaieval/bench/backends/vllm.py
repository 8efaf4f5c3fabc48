"""vLLM backend (optional extra, GPU): same request semantics as the HF backend.

Log-likelihoods use lm-eval's recipe for vLLM: the HF backend's tokenisation
(imported, so both backends split context and continuation identically), then
``prompt_logprobs=1, max_tokens=1`` on ``prefix + continuation`` and the sum of
the continuation tokens' prompt log-probs. vLLM's automatic prefix caching
shares the few-shot prefix across choices. Generation is greedy
(``temperature=0``) with the request's stop strings. Checked by
``benchmarks/gpu_check.sh`` on a GPU machine; CI runs without vllm.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from kaieval.artifacts import check_model_dir, model_hash
from kaieval.bench.api import (
    GenerationRequest,
    GenerationResponse,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
)
from kaieval.bench.backends.common import chat_template_hash, check_tokenizer
from kaieval.bench.backends.hf import TOKENISATION
from kaieval.errors import KaiError


class VLLMBackend:
    """A local model served in-process by vLLM."""

    name = "vllm"

    def __init__(self, path: str | Path, *, dtype: str = "float32", batch_size: int = 8,
                 chat_template: bool = False, trust_remote_code: bool = False,
                 gpu_memory_utilization: float = 0.8, max_length: int | None = None) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise KaiError("the vllm backend needs the 'vllm' extra (pip install "
                           "'kaieval[vllm]') and a GPU", where="--backend") from exc
        self.path = Path(path).expanduser().resolve()
        check_model_dir(self.path, pickles_beside_safetensors=True)
        check_tokenizer(self.path, trust_remote_code=trust_remote_code)  # before the engine
        self.dtype, self.batch_size, self.chat_template = dtype, batch_size, chat_template
        self._vllm = vllm
        self.llm: Any = vllm.LLM(model=str(self.path), dtype=dtype,
                                 trust_remote_code=trust_remote_code, enable_prefix_caching=True,
                                 gpu_memory_utilization=gpu_memory_utilization,
                                 max_model_len=max_length, seed=0)
        self.tokenizer: Any = self.llm.get_tokenizer()
        self.chat_template_hash = chat_template_hash(self.tokenizer, chat_template, self.path)
        self.max_length = int(max_length or self.llm.llm_engine.model_config.max_model_len)
        self._fingerprint: str | None = None

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            parts = [TOKENISATION, "vllm", model_hash(self.path), self.dtype,
                     str(self.max_length), f"chat={self.chat_template}:{self.chat_template_hash}"]
            self._fingerprint = hashlib.sha256("|".join(parts).encode()).hexdigest()
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": str(self.path), "dtype": self.dtype,
                "device": "cuda", "batch_size": self.batch_size, "max_length": self.max_length,
                "chat_template": self.chat_template, "chat_template_hash": self.chat_template_hash,
                "vllm": getattr(self._vllm, "__version__", "?"),
                "fingerprint": self.fingerprint()}

    def _wrap(self, text: str, chat: bool) -> str:
        if not (chat or self.chat_template):
            return text
        return str(self.tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True))

    def _pair(self, request: LoglikelihoodRequest) -> tuple[list[int], list[int]]:
        context, continuation = self._wrap(request.context, False), request.continuation
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation, context = context[-n_spaces:] + continuation, context[:-n_spaces]
        if not context:
            bos = self.tokenizer.bos_token_id
            prefix = int(bos if bos is not None else self.tokenizer.eos_token_id)
            return [prefix], list(self.tokenizer.encode(continuation, add_special_tokens=False))
        ctx = list(self.tokenizer.encode(context))
        whole = list(self.tokenizer.encode(context + continuation))
        return ctx, whole[len(ctx):]

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]
                      ) -> list[LoglikelihoodResponse]:
        params = self._vllm.SamplingParams(temperature=0.0, prompt_logprobs=1, max_tokens=1)
        inputs, conts = [], []
        for request in requests:
            ctx, cont = self._pair(request)
            full = (ctx + cont)[-(self.max_length + 1):]
            n_cont = min(len(cont), len(full) - 1)
            inputs.append({"prompt_token_ids": full})
            conts.append(full[-n_cont:])
        outs = self.llm.generate(inputs, params, use_tqdm=False)
        answers = []
        for out, cont in zip(outs, conts, strict=True):
            tail = out.prompt_logprobs[-len(cont):]
            total, greedy = 0.0, True
            for pos, tok in zip(tail, cont, strict=True):
                total += float(pos[tok].logprob)
                greedy = greedy and pos[tok].rank == 1
            answers.append(LoglikelihoodResponse(logprob=total, greedy=greedy,
                                                 n_tokens=len(cont)))
        return answers

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        answers = []
        for request in requests:
            params = self._vllm.SamplingParams(temperature=0.0, max_tokens=request.max_tokens,
                                               stop=list(request.stop) or None)
            out = self.llm.generate([self._wrap(request.context, request.chat)], params,
                                    use_tqdm=False)
            answers.append(GenerationResponse(text=out[0].outputs[0].text))
        return answers
