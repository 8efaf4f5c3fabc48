"""OpenAI-compatible HTTP backend: completions with echoed log-probs, and chat.

Why it looks like this:

* **Log-likelihoods** come from ``/v1/completions`` with ``echo=true, logprobs=1,
  max_tokens=1`` over ``context + continuation`` (what lm-evaluation-harness's
  ``local-completions`` sends). The prompt is sent as token ids split exactly as
  lm-eval splits the pair, so numbers match the local HF backend: encoded by the
  tokenizer the user names (``tokenizer_path``), else by the server's own
  ``/tokenize`` (vLLM serves it). Without either, splitting by the echoed
  ``text_offset`` is an approximation (a token that straddles the boundary is counted
  whole; measured against a real vLLM server, 2 of 42 predictions changed): refused
  unless ``approximate_split`` asks for it, and then every number says so. An endpoint
  that returns no echoed log-probs (``transformers
  serve``, most hosted chat APIs) gets one clear error pointing at the
  ``multiple_choice_generate`` task variants instead of silently wrong scores.
* **Async with a bound.** ``concurrency`` workers share one ``httpx.AsyncClient``;
  a fixed worker pool (not one task per request) keeps the event loop small for
  100k-request runs, and the results land in request order whatever finishes first.
* **Retries** with exponential backoff and seeded jitter on connection errors,
  timeouts, 429 and 5xx (up to ``max_retries``); any other 4xx fails at once.
* **Answers are checked** before anything is kept: malformed JSON, a missing field
  (``choices``, ``logprobs``, ``text``/``message``), log-probs that are not finite or
  are positive, and token counts that contradict the request (echoed log-probs, tokens,
  offsets and ``usage.prompt_tokens`` must agree with the prompt sent) are a bad answer
  for that request: retried up to :data:`BAD_ANSWER_RETRIES` times (a glitch), then one
  error. Nothing from a bad answer is returned, so nothing is cached or scored.
  Every failure is one line naming the URL and what happened.
* The API key is sent, never recorded: ``describe()`` and ``fingerprint()`` do not see it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
import random
import threading
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import httpx

from kaieval.bench.api import (
    GenerationRequest,
    GenerationResponse,
    LoglikelihoodRequest,
    LoglikelihoodResponse,
)
from kaieval.errors import KaiError
from kaieval.io import (
    CONFIG_MAX_BYTES,
    load_json_file,
)

T = TypeVar("T")

_MC_HINT = ("it cannot score log-likelihood (multiple_choice) tasks; use the task's "
            "multiple_choice_generate variant, or serve the model with vLLM (which echoes "
            "prompt log-probs)")
_NO_SPLIT = ("no tokenizer to split context and continuation into token ids: give the "
             "served model's tokenizer (--tokenizer PATH; in a dossier, model.tokenizer), "
             "serve /tokenize (vLLM does), or "
             "accept the text-offset approximation (--approximate-split; every number is "
             "then marked approximate)")
LL_VIA = ("auto", "echo", "prompt_logprobs")
_BACKOFF_MAX = 30.0
_GREEDY_EPS = 1e-6
BAD_ANSWER_RETRIES = 2
"""Further attempts after a bad answer (never more than ``max_retries``): a glitch passes,
a server that always answers wrongly is reported within seconds."""


class _Retryable(Exception):
    """A transient failure (connection, timeout, 429, 5xx): worth another attempt."""

    def __init__(self, what: str, retry_after: float | None = None) -> None:
        super().__init__(what)
        self.what = what
        self.retry_after = retry_after


class _BadAnswer(Exception):
    """A 200 whose content is wrong (missing field, non-finite log-prob, counts that
    contradict the request): retried a little, then reported; never kept."""

    def __init__(self, what: str, no_echo: bool = False) -> None:
        super().__init__(what)
        self.what = what
        self.no_echo = no_echo


class _NoEchoError(KaiError):
    """The endpoint answered no echoed prompt log-probs (reported after the retries)."""


def _one_line(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def _get(obj: Any, path: Sequence[str | int], url: str) -> Any:
    """``obj[path[0]][path[1]]...``; a missing or mistyped step names the field."""
    cur = obj
    for i, key in enumerate(path):
        ok = (isinstance(key, int) and isinstance(cur, list) and -len(cur) <= key < len(cur)) or (
            isinstance(key, str) and isinstance(cur, dict) and key in cur)
        if not ok:
            name = "".join(f"[{k}]" if isinstance(k, int) else f".{k}" for k in path[: i + 1])
            raise _BadAnswer(f"response field '{name.lstrip('.')}' is missing or malformed")
        cur = cur[key]  # type: ignore[index]
    return cur


class _Tokenizer:
    """The served model's tokenizer, read by :mod:`kaieval.tokenizer` (no torch): lets
    loglikelihood send token ids split the way lm-eval splits a context/continuation pair.

    Any format the loader reads -- a folder or a file: ``tokenizer.json``, ``vocab.json`` +
    ``merges.txt``, SentencePiece, WordPiece ``vocab.txt``, tiktoken (``pattern`` for an
    encoding the registry does not know) -- encoded without BOS/EOS, as before. The hash
    of a ``tokenizer.json`` is the file's own sha256 (fingerprints of earlier runs hold).
    """

    def __init__(self, path: Path, pattern: str | None = None) -> None:
        from kaieval.tokenizer import load_tokenizer

        loaded = load_tokenizer(path, pattern=pattern)  # bounded reads, one-line errors
        self._encoder = loaded.encoder()  # built now: an unknown tiktoken pattern fails here
        self.sha256 = loaded.sha256.removeprefix("sha256:")
        self.path = loaded.files[0] if len(loaded.files) == 1 else loaded.path
        self.format = loaded.format
        folder = path if path.is_dir() else path.parent
        self.eos_id = self._eos_id(folder / "tokenizer_config.json", loaded)

    @staticmethod
    def _eos_id(config: Path, loaded: Any) -> int | None:
        if not config.exists():
            return None
        cfg = load_json_file(config, max_bytes=CONFIG_MAX_BYTES, what="config files")
        if not isinstance(cfg, dict):
            return None
        eos = cfg.get("eos_token")
        if isinstance(eos, dict):
            eos = eos.get("content")
        if not isinstance(eos, str):
            return None
        found = loaded.specials.get(eos, loaded.vocab.get(eos))
        if found is None:  # a rank file's specials are named by the config's id table
            from kaieval.tokenizer.bpe_folder import config_added_tokens

            found = next((i for c, i, _ in config_added_tokens(cfg, str(config)) if c == eos),
                         None)
        return None if found is None else int(found)

    def encode(self, text: str) -> list[int]:
        return list(self._encoder.encode([text])[0])


_SPECIALS_MARGIN = 8
"""Tokens a server may add to a prompt beyond one per UTF-8 byte (BOS, a dummy prefix)."""


def _split_spaces(context: str, continuation: str) -> tuple[str, str]:
    """lm-eval's rule: trailing spaces of the context belong to the continuation."""
    n = len(context) - len(context.rstrip())
    return (context[:-n], context[-n:] + continuation) if n else (context, continuation)


class OpenAIBackend:
    """A model behind an OpenAI-compatible endpoint (vLLM, llama.cpp, TGI, ``transformers
    serve``, hosted APIs). ``base_url`` ends in ``/v1``; ``model`` is the served name."""

    name = "openai"

    def __init__(self, base_url: str, model: str, *, api_key: str | None = None,
                 concurrency: int = 8, timeout: float = 60.0, max_retries: int = 4,
                 chat: bool = False, tokenizer_path: Path | None = None,
                 tokenizer_pattern: str | None = None, approximate_split: bool = False,
                 backoff_base: float = 0.5, seed: int = 0,
                 loglikelihood_via: str = "auto", prompts_per_request: int = 1) -> None:
        if prompts_per_request < 1:
            raise KaiError(f"prompts_per_request must be >= 1, got {prompts_per_request}",
                           where="openai backend")
        if loglikelihood_via not in LL_VIA:
            raise KaiError(f"must be one of {', '.join(LL_VIA)}, got {loglikelihood_via!r}",
                           where="--loglikelihood-via")
        if not base_url.startswith(("http://", "https://")):
            raise KaiError(f"endpoint URL must start with http:// or https://, got {base_url!r}",
                           where="--model")
        if not model:
            raise KaiError("the served model name is empty", where="--model-name")
        if concurrency < 1 or max_retries < 0 or timeout <= 0 or backoff_base < 0:
            raise KaiError("concurrency must be >= 1, max_retries >= 0, timeout > 0 and "
                           "backoff_base >= 0", where="openai backend")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.concurrency = concurrency
        self.timeout = timeout
        self.max_retries = max_retries
        self.chat = chat
        self.backoff_base = backoff_base
        self.seed = seed
        self._api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY")
        self._tokenizer = (_Tokenizer(Path(tokenizer_path), tokenizer_pattern) if tokenizer_path
                           else None)
        self.approximate_split = approximate_split
        self._served: dict[str, Any] | None = None
        self._served_checked = False
        self._server_tokenize: bool | None = None  # asked once, when first needed
        self.loglikelihood_via = loglikelihood_via
        self.prompts_per_request = prompts_per_request
        # echo (OpenAI's echo + logprobs) or prompt_logprobs (vLLM's extension): found by
        # the first log-likelihood request unless asked for
        self._ll_via: str | None = None if loglikelihood_via == "auto" else loglikelihood_via
        self.attempts = 0  # HTTP attempts made (retries included): for logs and tests
        self.left_cut = 0  # generation prompts cut to the served context (this process)
        self._context: int | None = None  # the server's max_model_len, if /tokenize says

    # --- Backend Protocol -------------------------------------------------------------

    def fingerprint(self) -> str:
        """sha256 of endpoint, model name, chat flag, the served model's id (and ``root``,
        i.e. weights path, when the server reports one) and the tokenizer used to split."""
        parts = {"base_url": self.base_url, "model": self.model, "chat": self.chat,
                 "served": self._served_model(),
                 "tokenizer": self._tokenizer.sha256 if self._tokenizer else
                 ("server /tokenize" if self._split() == "server_tokenize" else None)}
        return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()

    def _split(self) -> str:
        """How log-likelihood prompts are split: ``token_ids`` (the named tokenizer),
        ``server_tokenize`` (the server's /tokenize) or ``text_offset`` (approximate)."""
        if self._tokenizer is not None:
            return "token_ids"
        if self._server_tokenize is None:
            self._server_tokenize = _run_sync(self._probe_tokenize)
        return "server_tokenize" if self._server_tokenize else "text_offset"

    @property
    def _tokenize_url(self) -> str:
        """vLLM serves /tokenize beside /v1, not under it."""
        return f"{self.base_url.removesuffix('/v1')}/tokenize"

    async def _probe_tokenize(self) -> bool:
        """Whether the server tokenizes for this model (``POST /tokenize`` answers ids)."""
        try:
            async with self._client() as client:
                resp = await client.post(self._tokenize_url, json={
                    "model": self.model, "prompt": "kaieval", "add_special_tokens": False})
            answer = resp.json() if resp.status_code == 200 else {}
            tokens = answer.get("tokens")
            limit = answer.get("max_model_len")
        except (httpx.HTTPError, ValueError, AttributeError):
            return False
        if isinstance(limit, int) and not isinstance(limit, bool) and limit > 0:
            self._context = limit
        return isinstance(tokens, list) and bool(tokens) and all(
            isinstance(t, int) and not isinstance(t, bool) for t in tokens)

    def describe(self) -> dict[str, Any]:
        """Settings for the run record; the API key is deliberately absent."""
        tok = self._tokenizer
        return {"backend": self.name, "base_url": self.base_url, "model": self.model,
                "chat": self.chat, "concurrency": self.concurrency, "timeout_s": self.timeout,
                "max_retries": self.max_retries, "served_model": self._served_model(),
                "api_key_set": self._api_key is not None,
                "tokenizer": None if tok is None else {"path": str(tok.path),
                                                       "sha256": tok.sha256},
                "loglikelihood_split": self._split(),
                "loglikelihood_via": self._ll_via,
                "prompts_per_request": self.prompts_per_request,
                "approximate": self._split() == "text_offset" and self.approximate_split,
                "generation_prompts_left_cut": self.left_cut}

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]
                      ) -> list[LoglikelihoodResponse]:
        return _run_sync(lambda: self.aloglikelihood(requests))

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        return _run_sync(lambda: self.agenerate(requests))

    # --- async API --------------------------------------------------------------------

    async def aloglikelihood(self, requests: Sequence[LoglikelihoodRequest]
                             ) -> list[LoglikelihoodResponse]:
        """Async twin of :meth:`loglikelihood`, for callers that already run a loop."""
        if not requests:
            return []
        if self._tokenizer is None and self._server_tokenize is None:
            self._server_tokenize = await self._probe_tokenize()
        if self._tokenizer is None and not self._server_tokenize:
            if not self.approximate_split:
                raise KaiError(_NO_SPLIT, where=self.base_url)
            prepared = [self._ll_body(r) for r in requests]
        elif self._tokenizer is None:
            prepared = await self._server_bodies(requests)
        else:
            prepared = [self._ll_body(r) for r in requests]
        url = f"{self.base_url}/completions"
        by_ids = prepared[0][2] >= 0
        if not by_ids and self._ll_via == "prompt_logprobs":
            raise KaiError("prompt_logprobs needs token ids: give --tokenizer or serve "
                           "/tokenize", where=self.base_url)
        if self._ll_via is not None or not by_ids:
            return await self._ll_pass(url, prepared, self._ll_via or "echo")
        # auto: the OpenAI API's echo first; a server that answers no echoed log-probs
        # gets vLLM's prompt_logprobs extension before the run is refused
        try:
            answers = await self._ll_pass(url, prepared, "echo")
        except _NoEchoError as no_echo:
            try:
                answers = await self._ll_pass(url, prepared, "prompt_logprobs")
            except KaiError:
                raise no_echo from None
            self._ll_via = "prompt_logprobs"
            return answers
        self._ll_via = "echo"
        return answers

    async def _ll_pass(self, url: str, prepared: list[tuple[dict[str, Any], int, int]],
                       via: str) -> list[LoglikelihoodResponse]:
        """Every prepared log-likelihood request, asked one way (``echo`` or
        ``prompt_logprobs``), ``prompts_per_request`` token-id prompts per HTTP request
        (the completions API takes a list of prompts; text prompts go one by one)."""
        k = self.prompts_per_request if prepared and prepared[0][2] >= 0 else 1
        groups = [list(range(i, min(i + k, len(prepared)))) for i in range(0, len(prepared), k)]

        def parse_one(data: Any, i: int) -> LoglikelihoodResponse:
            body, boundary, n_prompt = prepared[i]
            if via == "prompt_logprobs":
                return _parse_prompt_logprobs(data, url, boundary, body["prompt"])
            return self._parse_ll(data, url, boundary, n_prompt, len(body["prompt"]))

        def parse_group(data: Any, group: list[int]) -> list[LoglikelihoodResponse]:
            if len(group) == 1:
                return [parse_one(data, group[0])]
            choices = _get(data, ["choices"], url)
            if not isinstance(choices, list) or len(choices) != len(group):
                raise _BadAnswer(f"{len(group)} prompts sent, "
                                 f"{len(choices) if isinstance(choices, list) else 0} "
                                 "choices answered")
            by_index = {c.get("index"): c for c in choices if isinstance(c, dict)}
            if set(by_index) != set(range(len(group))):
                raise _BadAnswer("choices[].index does not number the prompts sent")
            # usage covers the whole list, so each prompt is checked without it
            return [parse_one({"choices": [by_index[j]]}, i) for j, i in enumerate(group)]

        async def one(client: httpx.AsyncClient, g: int) -> list[LoglikelihoodResponse]:
            group = groups[g]
            body = dict(prepared[group[0]][0])
            if len(group) > 1:
                body["prompt"] = [prepared[i][0]["prompt"] for i in group]
            if via == "prompt_logprobs":
                body = _prompt_logprobs_body(body)
            return await self._post(client, url, body, g, lambda data: parse_group(data, group),
                                    hint=_MC_HINT)

        return [a for answers in await self._map(len(groups), one) for a in answers]

    async def agenerate(self, requests: Sequence[GenerationRequest]
                        ) -> list[GenerationResponse]:
        """Async twin of :meth:`generate`: greedy (temperature 0), stop strings applied
        client-side too, since some servers ignore ``stop``."""

        async def one(client: httpx.AsyncClient, i: int) -> GenerationResponse:
            r = requests[i]
            chat = r.chat or self.chat
            body: dict[str, Any] = {"model": self.model, "max_tokens": r.max_tokens,
                                    "temperature": 0}
            if r.stop:  # the OpenAI API takes at most 4; the rest are cut client-side,
                # which gives the same greedy text (the prefix before any stop is the same)
                body["stop"] = list(r.stop)[:4]
            if chat:
                body["messages"] = [{"role": "user", "content": r.context}]
                url = f"{self.base_url}/chat/completions"
            else:
                body["prompt"] = await self._fitted_prompt(client, i, r.context, r.max_tokens)
                url = f"{self.base_url}/completions"
            path: list[str | int] = (["choices", 0, "message", "content"] if chat
                                     else ["choices", 0, "text"])

            def parse(data: Any) -> GenerationResponse:
                text = _get(data, path, url)
                if text is None and chat:
                    text = ""  # a chat reply with only tool calls / refusal: no text
                if not isinstance(text, str):
                    raise _BadAnswer(f"response field '{'.'.join(map(str, path))}' is not a "
                                     "string")
                return GenerationResponse(text=_cut_at_stop(text, r.stop))

            return await self._post(client, url, body, i, parse)

        if self._server_tokenize is None and not all(r.chat or self.chat for r in requests):
            self._server_tokenize = await self._probe_tokenize()  # once, not per prompt
        return await self._map(len(requests), one)

    async def _fitted_prompt(self, client: httpx.AsyncClient, i: int, text: str,
                             max_tokens: int) -> str | list[int]:
        """The prompt as text, or -- when prompt and answer would not fit the served
        context -- the server's own token ids of it cut from the left, as the local
        backends and lm-eval's API models cut a long few-shot prompt (a server refuses
        one with HTTP 400 instead). Needs the server's ``/tokenize``, which reports
        ``max_model_len`` (vLLM); without it the text is sent as it is."""
        if self._server_tokenize is None:
            self._server_tokenize = await self._probe_tokenize()
        if not self._server_tokenize or self._context is None:
            return text
        # every token stands for at least one UTF-8 byte (byte-level BPE, SentencePiece
        # with byte fallback); a few more for special tokens and a dummy prefix: a prompt
        # this short fits without asking the server (no extra round trip per prompt)
        if len(text.encode("utf-8")) + _SPECIALS_MARGIN + max_tokens <= self._context:
            return text

        def parse(data: Any) -> tuple[list[int], int | None]:
            tokens = data.get("tokens") if isinstance(data, dict) else None
            limit = data.get("max_model_len") if isinstance(data, dict) else None
            if not isinstance(tokens, list) or not all(
                    isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in tokens):
                raise _BadAnswer("/tokenize answered no list of token ids ('tokens')")
            ok = isinstance(limit, int) and not isinstance(limit, bool) and limit > 0
            return tokens, limit if ok else None

        ids, limit = await self._post(client, self._tokenize_url, {
            "model": self.model, "prompt": text, "add_special_tokens": True}, i, parse)
        if limit is None or len(ids) + max_tokens <= limit:
            return text
        room = limit - max_tokens
        if room < 1:
            raise KaiError(f"max_tokens {max_tokens} leaves no room for a prompt in the "
                           f"served context of {limit} tokens", where=self.base_url)
        self.left_cut += 1
        return ids[-room:]

    def post_completions(self, bodies: Sequence[dict[str, Any]],
                         parse: Callable[[Any], T]) -> list[T]:
        """POST each body (``model`` added) to ``/completions`` and ``parse`` the answers.

        For callers with their own request shapes (the provenance black-box test asks for
        top-k echoed log-probs and sampled continuations): they get the same bounded
        concurrency, retries and one-line errors. ``parse`` raises ``ValueError`` for a bad
        answer, which is retried like any other and then reported naming the URL.
        """
        url = f"{self.base_url}/completions"

        def checked(data: Any) -> T:
            try:
                return parse(data)
            except ValueError as err:
                raise _BadAnswer(str(err)) from None

        async def one(client: httpx.AsyncClient, i: int) -> T:
            return await self._post(client, url, {"model": self.model, **bodies[i]}, i,
                                    checked)

        return _run_sync(lambda: self._map(len(bodies), one))

    # --- requests and parsing ---------------------------------------------------------

    def _ll_body(self, r: LoglikelihoodRequest) -> tuple[dict[str, Any], int, int]:
        """The completions body, where the continuation starts (a character offset, or
        a token index with a tokenizer) and how many prompt tokens there are (-1: unknown)."""
        context, continuation = _split_spaces(r.context, r.continuation)
        body: dict[str, Any] = {"model": self.model, "echo": True, "logprobs": 1,
                                "max_tokens": 1, "temperature": 0}
        if self._tokenizer is None:
            body["prompt"] = context + continuation
            return body, len(context), -1
        tok = self._tokenizer
        if context:
            whole = tok.encode(context + continuation)
            ctx = whole[: len(tok.encode(context))]
            ids = whole
        else:  # as lm-eval: an empty context is scored after the end-of-text token
            if tok.eos_id is None:
                raise KaiError("an empty context needs the tokenizer's eos_token "
                               "(tokenizer_config.json)", where=str(tok.path))
            ctx = [tok.eos_id]
            ids = ctx + tok.encode(continuation)
        body["prompt"] = ids
        return body, len(ctx), len(ids)

    async def _server_bodies(self, requests: Sequence[LoglikelihoodRequest]
                             ) -> list[tuple[dict[str, Any], int, int]]:
        """:meth:`_ll_body` with the server's /tokenize as the tokenizer: each distinct
        context and context + continuation is tokenized once."""
        pairs = [_split_spaces(r.context, r.continuation) for r in requests]
        if any(not c for c, _ in pairs):
            raise KaiError("an empty context is scored after the end-of-text token, which "
                           "/tokenize does not name: give the served model's tokenizer "
                           "(--tokenizer PATH)", where=self._tokenize_url)
        texts = sorted({t for c, x in pairs for t in (c, c + x)})
        url = self._tokenize_url

        def parse(data: Any) -> list[int]:
            tokens = data.get("tokens") if isinstance(data, dict) else None
            if not isinstance(tokens, list) or not all(
                    isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in tokens):
                raise _BadAnswer("/tokenize answered no list of token ids ('tokens')")
            return tokens

        async def one(client: httpx.AsyncClient, i: int) -> list[int]:
            return await self._post(client, url, {"model": self.model, "prompt": texts[i],
                                                  "add_special_tokens": False}, i, parse)

        ids = dict(zip(texts, await self._map(len(texts), one), strict=True))
        out = []
        for context, continuation in pairs:
            whole = ids[context + continuation]
            n_ctx = len(ids[context])
            body = {"model": self.model, "echo": True, "logprobs": 1, "max_tokens": 1,
                    "temperature": 0, "prompt": whole}
            out.append((body, n_ctx, len(whole)))
        return out

    def _parse_ll(self, data: Any, url: str, boundary: int, n_prompt: int,
                  prompt_len: int) -> LoglikelihoodResponse:
        choice = _get(data, ["choices", 0], url)
        lp = choice.get("logprobs") if isinstance(choice, dict) else None
        if not isinstance(lp, dict) or not isinstance(lp.get("token_logprobs"), list):
            raise _BadAnswer(f"the endpoint returned no echoed log-probs "
                             f"(choices[0].logprobs); {_MC_HINT}", no_echo=True)
        token_lps: list[Any] = lp["token_logprobs"]
        top: list[Any] = lp.get("top_logprobs") or []
        tokens: list[Any] = lp.get("tokens") or []
        n_lps = len(token_lps)
        for name, other in (("tokens", tokens), ("top_logprobs", top)):
            if other and len(other) != n_lps:
                raise _BadAnswer(f"choices[0].logprobs.{name} has {len(other)} entries but "
                                 f"token_logprobs has {n_lps}")
        usage = data.get("usage") if isinstance(data, dict) else None
        reported = usage.get("prompt_tokens") if isinstance(usage, dict) else None
        if isinstance(reported, int) and not isinstance(reported, bool) and reported > n_lps:
            raise _BadAnswer(f"usage.prompt_tokens is {reported} but only {n_lps} token "
                             "log-probs were echoed")
        if n_prompt >= 0:  # token ids sent: the continuation is the tail of the prompt
            # echo gives one log-prob per prompt token, plus the max_tokens=1 generated one
            if not n_prompt <= n_lps <= n_prompt + 1:
                raise _BadAnswer(f"echoed {n_lps} token log-probs for a prompt of "
                                 f"{n_prompt} tokens and 1 new token "
                                 "(choices[0].logprobs.token_logprobs)")
            if isinstance(reported, int) and reported != n_prompt:
                raise _BadAnswer(f"usage.prompt_tokens is {reported} for a prompt of "
                                 f"{n_prompt} tokens")
            picked = list(range(boundary, n_prompt))
        else:  # text sent: the tokens that end within the continuation's characters
            picked = _tail_by_offsets(data, url, n_lps, tokens, prompt_len,
                                      prompt_len - boundary)
        if not picked and prompt_len > boundary:
            raise _BadAnswer("no echoed token covers the continuation (the prompt's token "
                             "log-probs are missing or do not reach its end)")
        total, greedy = 0.0, True
        for i in picked:
            value = token_lps[i]
            if not isinstance(value, int | float) or isinstance(value, bool):
                raise _BadAnswer(f"choices[0].logprobs.token_logprobs[{i}] is {value!r}, not "
                                 "a number (is the continuation the whole prompt?)")
            if not math.isfinite(value) or value > _GREEDY_EPS:
                raise _BadAnswer(f"choices[0].logprobs.token_logprobs[{i}] is {value!r}: a "
                                 "log-probability is finite and at most 0")
            total += float(value)
            alts = top[i] if i < len(top) else None
            if isinstance(alts, dict) and alts:
                best_tok, best = max(alts.items(), key=lambda kv: kv[1])
                same = i < len(tokens) and tokens[i] == best_tok
                greedy = greedy and (same or float(value) >= float(best) - _GREEDY_EPS)
            else:
                greedy = False  # no alternatives reported: cannot claim argmax
        return LoglikelihoodResponse(logprob=total, greedy=greedy, n_tokens=len(picked))

    # --- transport --------------------------------------------------------------------

    def _client(self) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {self._api_key}"} if self._api_key else {}
        limits = httpx.Limits(max_connections=self.concurrency,
                              max_keepalive_connections=self.concurrency)
        return httpx.AsyncClient(timeout=self.timeout, limits=limits, headers=headers)

    async def _map(self, n: int, fn: Callable[[httpx.AsyncClient, int], Awaitable[T]]
                   ) -> list[T]:
        """Run ``fn`` for indices 0..n-1 with at most ``concurrency`` in flight; results in
        index order. The first error cancels the rest and is raised as it is."""
        results: list[T | None] = [None] * n
        if n == 0:
            return []
        counter = iter(range(n))
        async with self._client() as client:
            async def worker() -> None:
                for i in counter:  # shared iterator: each index is taken exactly once
                    results[i] = await fn(client, i)

            try:
                async with asyncio.TaskGroup() as group:
                    for _ in range(min(self.concurrency, n)):
                        group.create_task(worker())
            except BaseExceptionGroup as eg:
                raise _first(eg) from None
        return results  # type: ignore[return-value]  # every slot filled when no error

    async def _post(self, client: httpx.AsyncClient, url: str, body: dict[str, Any],
                    index: int, parse: Callable[[Any], T], hint: str | None = None) -> T:
        """POST ``body`` and ``parse`` the answer; transient failures and bad answers are
        retried (each within its own bound), then reported in one line."""
        rng = random.Random(f"{self.seed}:{index}")  # jitter independent of scheduling
        attempts = self.max_retries + 1
        bad_attempts = min(self.max_retries, BAD_ANSWER_RETRIES) + 1
        bad = 0
        for attempt in range(attempts):
            retry_after: float | None = None
            try:
                return parse(await self._attempt(client, url, body, hint))
            except _BadAnswer as err:
                bad += 1
                if bad == bad_attempts or attempt + 1 == attempts:
                    again = f"; the same after {bad} attempts" if bad > 1 else ""
                    error = _NoEchoError if err.no_echo else KaiError
                    raise error(f"bad answer: {err.what}{again} (nothing from it was "
                                "cached or scored)", where=url) from None
            except _Retryable as err:
                if attempt + 1 == attempts:
                    raise KaiError(f"{err.what} (gave up after {attempts} attempts)",
                                   where=url) from None
                retry_after = err.retry_after
            delay = min(_BACKOFF_MAX, self.backoff_base * 2 ** attempt)
            delay *= 0.5 + 0.5 * rng.random()
            if retry_after is not None:
                delay = max(delay, min(retry_after, _BACKOFF_MAX))
            await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _attempt(self, client: httpx.AsyncClient, url: str, body: dict[str, Any],
                       hint: str | None) -> Any:
        self.attempts += 1
        try:
            resp = await client.post(url, json=body)
        except httpx.ConnectError as exc:
            raise _Retryable(f"endpoint is down or unreachable ({_one_line(str(exc))})"
                             ) from exc
        except httpx.TimeoutException as exc:
            raise _Retryable(f"timed out after {self.timeout:g} s ({type(exc).__name__})"
                             ) from exc
        except httpx.TransportError as exc:
            raise _Retryable(f"connection failed ({type(exc).__name__}: "
                             f"{_one_line(str(exc))})") from exc
        status = resp.status_code
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status}: {_one_line(resp.text) or '(empty body)'}",
                             _retry_after(resp.headers.get("retry-after")))
        if status >= 400:
            why = {401: "check the API key", 403: "check the API key",
                   404: "check the base URL (ends in /v1) and the model name"}.get(status, hint)
            raise KaiError(f"HTTP {status}: {_one_line(resp.text) or '(empty body)'}"
                           + (f" -- {why}" if why else ""), where=url)
        try:
            return resp.json()
        except ValueError:
            raise _BadAnswer(f"malformed JSON in HTTP {status} response: "
                             f"{_one_line(resp.text, 80)!r}") from None

    def _served_model(self) -> dict[str, Any] | None:
        """The entry of ``GET /v1/models`` for this model (id, and root when given), fetched
        once; None when the endpoint does not list models."""
        if not self._served_checked:
            self._served_checked = True
            self._served = _run_sync(self._fetch_served)
        return self._served

    async def _fetch_served(self) -> dict[str, Any] | None:
        try:
            async with self._client() as client:
                resp = await client.get(f"{self.base_url}/models")
            listed = resp.json().get("data") if resp.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError):
            return None
        if not isinstance(listed, list):
            return None
        entries = [e for e in listed if isinstance(e, dict) and isinstance(e.get("id"), str)]
        match = [e for e in entries if e["id"] == self.model] or (
            entries if len(entries) == 1 else [])
        if not match:
            return None
        return {k: match[0][k] for k in ("id", "root") if isinstance(match[0].get(k), str)}


def _first(eg: BaseExceptionGroup[BaseException]) -> BaseException:
    """The first leaf of an exception group: a KaiError when one caused it."""
    leaves: list[BaseException] = []

    def walk(e: BaseException) -> None:
        if isinstance(e, BaseExceptionGroup):
            for sub in e.exceptions:
                walk(sub)
        else:
            leaves.append(e)

    walk(eg)
    return next((e for e in leaves if isinstance(e, KaiError)), leaves[0])


def _tail_by_offsets(data: Any, url: str, n_lps: int, tokens: list[Any], prompt_len: int,
                     cont_len: int) -> list[int]:
    """Indices of the continuation's tokens, found by ``text_offset``.

    Measured back from the end of the prompt, not from its start: servers such as vLLM
    count offsets over the decoded tokens, so a BOS token ("<s>") shifts every offset.
    The prompt's token count comes from ``usage.prompt_tokens`` when reported.
    """
    offsets = _get(data, ["choices", 0, "logprobs", "text_offset"], url)
    if (not isinstance(offsets, list) or len(offsets) != n_lps
            or not all(isinstance(o, int) for o in offsets)):
        raise _BadAnswer("choices[0].logprobs.text_offset is not a list of integers matching "
                         "token_logprobs")
    usage = data.get("usage") if isinstance(data, dict) else None
    n = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if not isinstance(n, int) or not 0 < n <= n_lps:
        n = sum(1 for o in offsets if o < prompt_len)  # no usage: assume unshifted offsets
    if n == 0:
        return []
    if n < n_lps:
        end = offsets[n]  # where the generated token starts: the end of the prompt
    elif n - 1 < len(tokens) and isinstance(tokens[n - 1], str):
        end = offsets[n - 1] + len(tokens[n - 1])
    else:
        end = prompt_len
    start = end - cont_len
    ends = [*offsets[1:n], end]
    return [i for i in range(n) if offsets[i] >= start or ends[i] > start]


def _prompt_logprobs_body(body: dict[str, Any]) -> dict[str, Any]:
    """The echo body asked instead through vLLM's ``prompt_logprobs`` extension."""
    out = {k: v for k, v in body.items() if k not in ("echo", "logprobs")}
    out["prompt_logprobs"] = 1
    return out


def _parse_prompt_logprobs(data: Any, url: str, boundary: int, prompt: list[int]
                           ) -> LoglikelihoodResponse:
    """Sum the continuation's entries of ``choices[0].prompt_logprobs`` (one dict per
    prompt token, keyed by token id, the first ``null``); greedy when each has rank 1."""
    choice = _get(data, ["choices", 0], url)
    lps = choice.get("prompt_logprobs") if isinstance(choice, dict) else None
    if not isinstance(lps, list):
        raise _BadAnswer(f"the endpoint returned no choices[0].prompt_logprobs; {_MC_HINT}")
    if len(lps) != len(prompt):
        raise _BadAnswer(f"choices[0].prompt_logprobs has {len(lps)} entries for a prompt of "
                         f"{len(prompt)} tokens")
    total, greedy = 0.0, True
    for i in range(boundary, len(prompt)):
        entry = lps[i].get(str(prompt[i])) if isinstance(lps[i], dict) else None
        value = entry.get("logprob") if isinstance(entry, dict) else None
        if not isinstance(value, int | float) or isinstance(value, bool):
            raise _BadAnswer(f"choices[0].prompt_logprobs[{i}] has no log-prob for token "
                             f"{prompt[i]}")
        if not math.isfinite(value) or value > _GREEDY_EPS:
            raise _BadAnswer(f"choices[0].prompt_logprobs[{i}] is {value!r}: a "
                             "log-probability is finite and at most 0")
        total += float(value)
        greedy = greedy and entry.get("rank") == 1  # type: ignore[union-attr]
    return LoglikelihoodResponse(logprob=total, greedy=greedy, n_tokens=len(prompt) - boundary)


def _retry_after(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None  # an HTTP date: fall back to our own backoff


def _cut_at_stop(text: str, stop: Sequence[str]) -> str:
    cuts = [i for s in stop if s and (i := text.find(s)) >= 0]
    return text[: min(cuts)] if cuts else text


def _run_sync(make: Callable[[], Awaitable[T]]) -> T:
    """Run a coroutine from synchronous code; inside a running loop (Jupyter, an async
    caller) it runs on a helper thread with its own loop instead of failing."""

    async def main() -> T:
        return await make()

    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(main())
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(main())
        except BaseException as exc:  # re-raised on the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target, name="kaieval-openai")
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]  # type: ignore[no-any-return]
