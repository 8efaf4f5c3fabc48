"""lm-eval's request -> token ids mapping, shared by every local backend.

Why a module of its own: the HF and vLLM backends must send the *same* token ids
for a request -- the context/continuation split decides which log-probs are
summed, so one token of difference changes a score by nats (measured on the
openai path: 2 of 42 predictions moved). Both backends mix this class in and
encode with the tokenizer kaieval's own loader built
(:func:`kaieval.bench.backends.common.load_hf_tokenizer`); neither lets its
engine tokenise.

The rules copy lm-evaluation-harness's ``HFLM`` exactly: trailing context spaces
move to the continuation; the pair is encoded whole and the continuation is the
tail; an empty context is scored after BOS (else EOS); no second BOS when the
text starts with one; ``(context + continuation)[-(max_length + 1):]`` is kept.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from kaieval.bench.api import LoglikelihoodRequest
from kaieval.errors import KaiError

TOKENISATION = "lm-eval-hflm-v1"  # bump if the request -> tokens mapping ever changes
CONTEXT_MEMO = 1024  # distinct contexts remembered (every choice of a question shares one)

Encoded = dict[tuple[str, bool | None], list[int]]  # (text, add_special_tokens) -> ids


class LMEvalTokens:
    """Mixin: ``tokens(request)`` and prompt encoding, given ``tokenizer``, ``path``,
    ``chat_template`` and ``max_length`` on the instance; call :meth:`_init_tokens`
    once the tokenizer is set."""

    tokenizer: Any
    path: Path
    chat_template: bool
    max_length: int

    def _init_tokens(self) -> None:
        bos = self.tokenizer.bos_token_id
        self.prefix_token_id = int(bos if bos is not None else self.tokenizer.eos_token_id)
        self._prefix_str = str(self.tokenizer.decode([self.prefix_token_id]))
        self._context_memo: dict[str, list[int]] = {}

    def _wrap(self, text: str, chat: bool) -> str:
        if not (chat or self.chat_template):
            return text
        if not getattr(self.tokenizer, "chat_template", None):
            raise KaiError("a chat request needs a tokenizer chat template", where=str(self.path))
        out = self.tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True)
        return str(out)

    def _special(self, text: str, add_special_tokens: bool | None) -> dict[str, bool]:
        """lm-eval ``tok_encode``'s arguments: tokenizer defaults, but no second BOS if
        the text has one."""
        if add_special_tokens is not None:
            return {"add_special_tokens": add_special_tokens}
        if self._prefix_str and text.startswith(self._prefix_str):
            return {"add_special_tokens": False}
        return {}

    def _encode(self, text: str, add_special_tokens: bool | None = None,
                encoded: Encoded | None = None) -> list[int]:
        """lm-eval ``tok_encode`` (from ``encoded`` when :meth:`_encode_all` did it)."""
        if encoded is not None and (text, add_special_tokens) in encoded:
            return encoded[text, add_special_tokens]
        return list(self.tokenizer.encode(text, **self._special(text, add_special_tokens)))

    def _encode_all(self, texts: Iterable[tuple[str, bool | None]]) -> Encoded:
        """Many texts in one batched tokenizer call per argument set.

        Why: a 120-question task encodes 600 texts; one call each took 0.41 s, one
        batched call (the Rust tokenizer's own loop) 0.16 s, with identical ids.
        """
        groups: dict[tuple[tuple[str, bool], ...], list[tuple[str, bool | None]]] = {}
        for text, flag in dict.fromkeys(texts):
            key = tuple(sorted(self._special(text, flag).items()))
            groups.setdefault(key, []).append((text, flag))
        out: Encoded = {}
        for key, members in groups.items():
            ids = self.tokenizer([t for t, _ in members], **dict(key))["input_ids"]
            out.update({m: list(i) for m, i in zip(members, ids, strict=True)})
        return out

    def _context_ids(self, context: str, encoded: Encoded | None = None) -> list[int]:
        """``_encode(context)``, memoised: every choice of a question has the same context."""
        ids = self._context_memo.get(context)
        if ids is None:
            if len(self._context_memo) >= CONTEXT_MEMO:
                self._context_memo.clear()
            ids = self._context_memo[context] = self._encode(context, None, encoded)
        return list(ids)

    def _split(self, request: LoglikelihoodRequest) -> tuple[str, str] | None:
        """(context, continuation) as lm-eval encodes them -- the chat wrap applied and
        the context's trailing spaces moved to the continuation -- or None for an empty
        context (scored after BOS)."""
        context, continuation = self._wrap(request.context, False), request.continuation
        if context == "":
            return None
        n_spaces = len(context) - len(context.rstrip())
        if n_spaces:
            continuation, context = context[-n_spaces:] + continuation, context[:-n_spaces]
        return context, continuation

    def token_pairs(self, requests: Sequence[LoglikelihoodRequest]
                    ) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
        """:meth:`tokens` of every request, their texts encoded in batched calls."""
        texts: list[tuple[str, bool | None]] = []
        for r in requests:
            split = self._split(r)
            if split is None:
                texts.append((r.continuation, False))
            else:
                texts += [(split[0] + split[1], None), (split[0], None)]
        encoded = self._encode_all(texts)
        return [self.tokens(r, encoded) for r in requests]

    def tokens(self, request: LoglikelihoodRequest, encoded: Encoded | None = None
               ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """(prefix, continuation) token ids exactly as lm-eval's model input is built."""
        split = self._split(request)
        if split is None:
            cont = self._encode(request.continuation, False, encoded)
            if not cont:
                raise KaiError("empty continuation in a log-likelihood request")
            ctx, cont = (([self.prefix_token_id], cont) if self.prefix_token_id != cont[0]
                         else (cont[:1], cont[1:]))
        else:
            whole = self._encode(split[0] + split[1], None, encoded)
            ctx = self._context_ids(split[0], encoded)
            cont = whole[len(ctx):]
        if not cont:
            raise KaiError(f"continuation {request.continuation!r} encodes to no tokens")
        full = (ctx + cont)[-(self.max_length + 1):]
        n_cont = min(len(cont), len(full) - 1)
        return tuple(full[:-n_cont]), tuple(full[-n_cont:])

    def prompt_ids(self, context: str, chat: bool, max_tokens: int) -> list[int]:
        """A generation prompt's ids, left-truncated to leave room for ``max_tokens``."""
        budget = max(1, self.max_length - max_tokens)
        return self._encode(self._wrap(context, chat))[-budget:]

    def finish(self, generated: list[int], stops: tuple[str, ...] | list[str]) -> str:
        """The generated text cut at each stop string in turn (lm-eval's post-processing)."""
        result = str(self.tokenizer.decode(generated, skip_special_tokens=True))
        for stop in stops:
            if stop:
                result = result.split(stop)[0]
        return result
