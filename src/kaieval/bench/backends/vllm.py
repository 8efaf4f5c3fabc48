"""vLLM backend: the same request semantics as the HF backend, on vLLM's engine (CPU or GPU).

Why it looks like this:

* **kaieval tokenises, vLLM does not.** The engine is built with
  ``skip_tokenizer_init=True`` and every request goes in as token ids
  (``prompt_token_ids``) from the tokenizer kaieval's own loader built
  (:func:`~kaieval.bench.backends.common.load_hf_tokenizer`) and the HF backend's
  context/continuation split (:class:`~kaieval.bench.backends.lmeval_tokens.LMEvalTokens`).
  So both backends score exactly the same tokens; a tokenizer vLLM would load
  differently (another class, remote code) cannot change a number.
* **Log-likelihood** is lm-eval's vLLM recipe: ``prompt_logprobs=1, max_tokens=1`` on
  ``prefix + continuation``, summing the continuation tokens' prompt log-probs;
  greedy means every continuation token has rank 1. vLLM wants the whole prompt
  plus the one token it generates inside ``max_model_len``, so the request is
  truncated to ``max_length + 1`` tokens with ``max_length = max_model_len - 2``
  (the HF backend keeps ``max_length + 1`` and feeds all but the last): with the
  same ``max_length`` both backends score the same tokens, also when truncated.
  vLLM does not read its prefix cache for prompt-log-prob requests (cached positions
  would have none), so each request computes its whole prompt.
* **Generation** is greedy with the request's stop strings, all prompts in one
  engine call (vLLM batches them itself). Without vLLM's detokenizer the stop strings
  are applied here: the text is cut at them exactly as the HF backend cuts it, and the
  engine is told to stop at EOS and at every vocabulary token whose text contains a
  stop string -- once such a token is out the cut text cannot change, so stopping
  there is exact and saves the rest of the budget.
* **Engine settings** (prefix caching on, tensor / data parallel sizes, dtype, context
  length, eager mode, the CPU KV-cache size) are passed through and recorded in the
  run record and the request-cache fingerprint. vLLM starts its engine in a spawned
  process: a script that builds this backend must do so under
  ``if __name__ == "__main__":``.
"""

from __future__ import annotations

import hashlib
import os
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
from kaieval.bench.backends.common import chat_template_hash, load_hf_tokenizer
from kaieval.bench.backends.lmeval_tokens import TOKENISATION, LMEvalTokens
from kaieval.errors import KaiError

DTYPES = ("float32", "float16", "bfloat16")
CPU_KV_ENV = "VLLM_CPU_KVCACHE_SPACE"  # GiB of KV cache the CPU build reserves


def _config_max_length(path: Path) -> int | None:
    """The context length ``config.json`` declares (what vLLM would take by default)."""
    from kaieval.io import CONFIG_MAX_BYTES, load_json_file

    cfg = load_json_file(path / "config.json", max_bytes=CONFIG_MAX_BYTES, what="config files")
    if not isinstance(cfg, dict):
        return None
    text_config = cfg.get("text_config")
    if isinstance(text_config, dict):
        cfg = text_config
    for key in ("max_position_embeddings", "n_positions", "n_ctx"):
        value = cfg.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value > 1:
            return value
    return None


class VLLMBackend(LMEvalTokens):
    """A local model run in-process by vLLM (the ``vllm`` package, or ``vllm-cpu``)."""

    name = "vllm"

    def __init__(self, path: str | Path, *, dtype: str = "float32", batch_size: int = 8,
                 chat_template: bool = False, trust_remote_code: bool = False,
                 max_length: int | None = None, tensor_parallel_size: int = 1,
                 data_parallel_size: int = 1, gpu_memory_utilization: float = 0.8,
                 enforce_eager: bool = False, cpu_kv_cache_gib: float | None = None,
                 tokenizer_pattern: str | None = None, seed: int = 0,
                 distributed_executor_backend: str | None = None) -> None:
        try:
            import vllm
        except ImportError as exc:
            raise KaiError("the vllm backend needs vLLM installed (GPU: pip install vllm; "
                           "CPU: make vllm-env, see docs/backend-vllm.md)",
                           where="--backend") from exc
        self.path = Path(path).expanduser().resolve()
        check_model_dir(self.path, pickles_beside_safetensors=True)
        if dtype not in DTYPES:
            raise KaiError(f"dtype {dtype!r} not supported; use one of {', '.join(DTYPES)}",
                           where="--dtype")
        if batch_size < 1:
            raise KaiError(f"batch size must be >= 1, got {batch_size}", where="--batch-size")
        if tensor_parallel_size < 1 or data_parallel_size < 1:
            raise KaiError("tensor and data parallel sizes must be >= 1", where="--backend")
        model_len = max_length or _config_max_length(self.path)
        if model_len is not None and model_len < 3:
            raise KaiError(f"max length must be >= 3, got {model_len}", where="--max-length")
        # our tokenizer, read before the engine starts (a broken one is one line, not a
        # traceback from a spawned process a minute later)
        self.tokenizer: Any = load_hf_tokenizer(self.path, trust_remote_code=trust_remote_code,
                                                pattern=tokenizer_pattern)
        self.tokenizer_pattern = tokenizer_pattern
        self.dtype, self.batch_size, self.chat_template = dtype, batch_size, chat_template
        self.chat_template_hash = chat_template_hash(self.tokenizer, chat_template, self.path)
        self._vllm = vllm
        if cpu_kv_cache_gib is not None:
            os.environ[CPU_KV_ENV] = f"{cpu_kv_cache_gib:g}"
        self.engine_args: dict[str, Any] = {
            "dtype": dtype, "max_model_len": model_len, "enable_prefix_caching": True,
            "tensor_parallel_size": tensor_parallel_size,
            "data_parallel_size": data_parallel_size,
            "gpu_memory_utilization": gpu_memory_utilization, "enforce_eager": enforce_eager,
            "seed": seed, "trust_remote_code": trust_remote_code, "skip_tokenizer_init": True}
        if distributed_executor_backend is not None:  # "ray": TP workers in the caller's
            # Ray placement group (the Ray executor's engine actor), not local processes
            self.engine_args["distributed_executor_backend"] = distributed_executor_backend
        try:
            self.llm: Any = vllm.LLM(model=str(self.path), **self.engine_args)
        except (ValueError, RuntimeError, OSError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise KaiError(f"vLLM cannot load the model: {first}", where=str(self.path)) from exc
        model_config = self.llm.llm_engine.model_config
        self.engine_args["max_model_len"] = int(model_config.max_model_len)
        self.max_length = int(model_config.max_model_len) - 2  # prompt + 1 new token fit
        self._init_tokens()
        self.device = _device_type()
        self.kv_cache_gib = os.environ.get(CPU_KV_ENV) if self.device == "cpu" else None
        self._fingerprint: str | None = None
        self._stop_ids: dict[tuple[str, ...], list[int]] = {}
        self._vocab_text: list[str] | None = None

    def close(self) -> None:
        """Stop vLLM's engine process now. Left to garbage collection, a process whose
        engine saw an error was seen to hang at exit with the engine still running."""
        engine = getattr(getattr(self, "llm", None), "llm_engine", None)
        core = getattr(engine, "engine_core", None)
        if core is not None:
            core.shutdown()

    # ---------------------------------------------------------------- identity

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            parts = [TOKENISATION, "vllm-prompt-logprobs", model_hash(self.path), self.dtype,
                     self.device, str(self.max_length),
                     f"chat={self.chat_template}:{self.chat_template_hash}"]
            if self.tokenizer_pattern is not None:
                parts.append(f"pattern={self.tokenizer_pattern}")
            self._fingerprint = hashlib.sha256("|".join(parts).encode()).hexdigest()
        return self._fingerprint

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": str(self.path), "dtype": self.dtype,
                "device": self.device, "batch_size": self.batch_size,
                "max_length": self.max_length, "chat_template": self.chat_template,
                "chat_template_hash": self.chat_template_hash,
                "tokenizer_pattern": self.tokenizer_pattern, "tokenisation": TOKENISATION,
                "scoring": "vllm prompt_logprobs (token ids in)",
                "generation": "greedy, vllm engine, stops applied by kaieval",
                "engine": dict(self.engine_args), "cpu_kv_cache_gib": self.kv_cache_gib,
                "vllm": getattr(self._vllm, "__version__", "?"),
                "fingerprint": self.fingerprint()}

    # ---------------------------------------------------------------- scoring

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]
                      ) -> list[LoglikelihoodResponse]:
        if not requests:
            return []
        pairs = self.token_pairs(requests)
        params = self._vllm.SamplingParams(temperature=0.0, prompt_logprobs=1, max_tokens=1,
                                           detokenize=False)
        prompts = [{"prompt_token_ids": list(prefix + cont)} for prefix, cont in pairs]
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        answers = []
        for out, (_prefix, cont) in zip(outs, pairs, strict=True):
            tail = out.prompt_logprobs[-len(cont):]
            total, greedy = 0.0, True
            for pos, tok in zip(tail, cont, strict=True):
                total += float(pos[tok].logprob)
                greedy = greedy and pos[tok].rank == 1
            answers.append(LoglikelihoodResponse(logprob=total, greedy=greedy,
                                                 n_tokens=len(cont)))
        return answers

    # ---------------------------------------------------------------- generation

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        """Greedy text for every request in one engine call; ``max_tokens`` 0 answers ""."""
        asked = [i for i, r in enumerate(requests) if r.max_tokens >= 1]
        texts = ["" for _ in requests]
        if not asked:
            return [GenerationResponse(text=t) for t in texts]
        prompts, params = [], []
        for i in asked:
            r = requests[i]
            prompts.append({"prompt_token_ids": self.prompt_ids(r.context, r.chat,
                                                                r.max_tokens)})
            params.append(self._vllm.SamplingParams(
                temperature=0.0, max_tokens=r.max_tokens, detokenize=False,
                ignore_eos=True, stop_token_ids=self._stop_token_ids(tuple(r.stop))))
        outs = self.llm.generate(prompts, params, use_tqdm=False)
        eos = self.tokenizer.eos_token_id
        for i, out in zip(asked, outs, strict=True):
            ids = list(out.outputs[0].token_ids)
            if eos is not None and eos in ids:
                ids = ids[:ids.index(eos)]  # the HF backend stops before EOS
            texts[i] = self.finish(ids, requests[i].stop)
        return [GenerationResponse(text=t) for t in texts]

    def _stop_token_ids(self, stops: tuple[str, ...]) -> list[int]:
        """EOS and every token whose own text contains a stop string: after one of them
        the cut text is final (see the module docstring), so the engine may stop there."""
        stops = tuple(s for s in stops if s)
        if stops not in self._stop_ids:
            eos = self.tokenizer.eos_token_id
            ids = [] if eos is None else [int(eos)]
            if stops:
                if self._vocab_text is None:
                    n = len(self.tokenizer)
                    self._vocab_text = [str(t) for t in self.tokenizer.batch_decode(
                        [[i] for i in range(n)], skip_special_tokens=True)]
                ids += [i for i, t in enumerate(self._vocab_text)
                        if any(s in t for s in stops) and i not in ids]
            self._stop_ids[stops] = ids
        return self._stop_ids[stops]


def _device_type() -> str:
    """``cpu`` or ``cuda`` (etc.): where vLLM runs, for the run record and fingerprint."""
    try:
        from vllm.platforms import current_platform

        return str(current_platform.device_type)
    except (ImportError, AttributeError):
        return "unknown"
