"""What the black-box test asks of a model, from a local folder or an endpoint alike.

Three questions, answered the same way by both kinds so that a test can be calibrated
on local folders and run on endpoints:

* greedy continuations of the prompts (the bench backends' ``generate``);
* top-k next-token log-probs at every token of a text, and after its end: locally from
  one forward pass; from an OpenAI-compatible endpoint by ``/v1/completions`` with
  ``echo: true, logprobs: k, max_tokens: 1`` (what vLLM, llama.cpp and TGI answer; vLLM
  reports prompt log-probs this way). Positions are character offsets into the text,
  rebuilt from the token strings on both sides (:mod:`.blackbox_offsets`): the echoed
  ``tokens`` of an endpoint, the raw pieces of a local tokenizer. The endpoint's own
  ``text_offset`` is not used: vLLM's counts decoded token strings, which drift on
  characters split across tokens. A local model's answer is built as an endpoint's is:
  the text's own token and the top-k, keyed by their names (tokens named alike keep one
  entry, the last), named as vLLM names them, or decoded alone where the endpoints in the
  comparison do that;
* when an endpoint gives no log-probs: sampled next tokens after each prompt
  (temperature 1, seeded per request), the fallback the result then reports.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from kaieval.bench.api import GenerationRequest
from kaieval.errors import KaiError
from kaieval.provenance.blackbox_offsets import FFFD, past_shared, token_starts
from kaieval.provenance.blackbox_stats import (
    STATISTICS,
    TextDists,
    compare,
    empirical,
    project,
    text_statistics,
    unit,
)

_EPS = 1e-6


class ModelSession:
    """One model opened for the test (a local model is loaded once, then dropped)."""

    def __init__(self, spec: Any, *, seed: int, naming: str = "vllm") -> None:
        from kaieval.provenance.blackbox import open_backend

        self.spec = spec
        self.seed = seed
        # how top-k alternatives are named: "vllm" ("" for one that ends inside a
        # character) or "plain" (decoded alone); a folder names them as the endpoints do.
        # An endpoint's own naming, once seen in its answers, is left in `naming_seen`.
        self.naming = naming
        self.naming_seen: str | None = None
        self.backend: Any = open_backend(spec, seed=seed)
        self.local = spec.url is None
        self._strings: dict[int, str] = {}  # token id -> decoded string, decoded once

    def close(self) -> None:
        self.backend = None

    def generate(self, prompts: Sequence[str], max_new_tokens: int) -> tuple[str, ...]:
        requests = [GenerationRequest(p, max_tokens=max_new_tokens, chat=self.spec.chat)
                    for p in prompts]
        return tuple(r.text for r in self.backend.generate(requests))

    def dists(self, texts: Sequence[str], k: int) -> list[TextDists] | None:
        """Per text, offset -> projected top-k distribution; None: no log-probs here."""
        if self.local:
            return [self._local_dists(t, k) for t in texts]
        bodies = [{"prompt": t, "echo": True, "logprobs": k, "max_tokens": 1, "temperature": 0}
                  for t in texts]
        first = self.backend.post_completions(bodies[:1], lambda data: _parse_echo(data, k))
        if first[0] is None:  # no log-probs: asking for the other texts would be wasted
            return None
        answers = first + self.backend.post_completions(bodies[1:],
                                                        lambda data: _parse_echo(data, k))
        if any(a is None for a in answers):
            return None
        tokens = [t for a in answers for t in a["tokens"][1:]]
        self.naming_seen = ("vllm" if "" in tokens else "plain"
                            if any(t.endswith("\ufffd") for t in tokens) else None)
        return [_echo_dists(a, t, k) for a, t in zip(answers, texts, strict=True)]

    def sample_next(self, prompts: Sequence[str], n: int) -> list[list[str | None]]:
        """Per prompt, the units of ``n`` sampled next tokens (seeded, temperature 1)."""
        if self.local:
            return [self._local_samples(p, n, i) for i, p in enumerate(prompts)]
        bodies = [{"prompt": p, "max_tokens": 1, "temperature": 1.0,
                   "seed": self.seed * 1_000_003 + i * n + r}
                  for i, p in enumerate(prompts) for r in range(n)]
        texts = self.backend.post_completions(bodies, _parse_text)
        return [[unit(t) for t in texts[i * n:(i + 1) * n]] for i in range(len(prompts))]

    def starts(self, text: str, ids: Sequence[int]) -> list[int]:
        """Where each token of ``ids`` starts in ``text`` (-1: not on a character
        boundary, special, or not told by the strings), from the token strings an
        endpoint would echo for them (:meth:`names`), read the same way as an endpoint's:
        the same model served and local then has the same starts, even where the strings
        leave one open."""
        special = set(self.backend.tokenizer.all_special_ids)
        return token_starts(text, self.names(ids), [i in special for i in ids])

    def names(self, ids: Sequence[int]) -> list[str]:
        """The echoed token strings of ``ids``: decoded alone ("plain"), or as vLLM 0.32
        names prompt tokens ("vllm", ``vllm/v1/engine/logprobs.py``): one whose decoding
        ends in U+FFFD is decoded with the fewest of the 4 earlier tokens (never the
        prompt's first) that finish it, less the text of those before the ones that end
        in U+FFFD, or ``""``."""
        out = [self._string(i) for i in ids]
        if self.naming != "vllm":
            return out
        decode = self.backend.tokenizer.decode
        for i in range(1, len(ids)):
            if out[i].endswith(FFFD):
                out[i] = _vllm_name(decode, ids[i], list(ids[max(1, i - 4):i]),
                                    self._string)
        return out

    # --- local ----------------------------------------------------------------------

    def _forward(self, text: str) -> tuple[Any, list[int], list[int]]:
        """Log-probs at each position, the character offset each position predicts at,
        and the token it predicts there (the text's own; after the end, the greedy one)."""
        import torch

        tok, model = self.backend.tokenizer, self.backend.model
        ids = list(tok(text)["input_ids"])  # special tokens as a server adds them
        if not ids:
            raise KaiError("the model's tokenizer gives no tokens for a prompt",
                           where=str(self.spec.path))
        starts = self.starts(text, ids)
        with torch.no_grad():
            logits = model(input_ids=torch.tensor([ids], device=self.backend.device)).logits
        lp = torch.log_softmax(logits[0].float(), dim=-1)
        # position i predicts token i + 1, which starts at starts[i + 1]; the last, the end
        return lp, [*starts[1:], len(text)], [*ids[1:], int(lp[-1].argmax())]

    def _string(self, token: int) -> str:
        """The token decoded alone."""
        if token not in self._strings:
            self._strings[token] = str(self.backend.tokenizer.decode([token]))
        return self._strings[token]

    def _name(self, token: int) -> str:
        """The token as vLLM names a top-k alternative at a character boundary: decoded
        alone, ``""`` when that ends inside a character (vLLM cannot finish it with the
        context, which ends on a boundary there). Why: an endpoint's answer keeps one
        entry per name, so the folder's answer is built the same way."""
        name = self._string(token)
        return "" if self.naming == "vllm" and name.endswith("\ufffd") else name

    def _local_dists(self, text: str, k: int) -> TextDists:
        import torch

        lp, at, own = self._forward(text)
        values, idx = torch.topk(lp, min(k, lp.shape[-1]), dim=-1)
        out: TextDists = {}
        for i, off in enumerate(at):
            if off < 0 or off in out:  # special, mid-character (or a repeat): first only
                continue
            # as vLLM answers: the text's own token, then the top-k, keyed by its names
            top = {self._name(own[i]): float(lp[i, own[i]])}
            top.update((self._name(int(t)), float(v)) for t, v in
                       zip(idx[i].tolist(), values[i].tolist(), strict=True))
            out[off] = project(top, k)
        return out

    def _local_samples(self, prompt: str, n: int, index: int) -> list[str | None]:
        import torch

        lp, _, _ = self._forward(prompt)
        gen = torch.Generator().manual_seed(self.seed * 1_000_003 + index)
        picks = torch.multinomial(lp[-1].exp(), n, replacement=True, generator=gen)
        tok = self.backend.tokenizer  # as a server's completion text: special tokens dropped
        return [unit(str(tok.decode([int(t)], skip_special_tokens=True)))
                for t in picks.tolist()]


def _vllm_name(decode: Any, token: int, context: list[int], alone: Any) -> str:
    """vLLM 0.32's ``LogprobsProcessor._correct_decoded_token`` (see :meth:`ModelSession.names`)."""
    for n in range(1, min(len(context), 4) + 1):
        ctx = context[-n:]
        full = str(decode([*ctx, token]))
        if full.endswith(FFFD):
            continue
        clean = len(ctx)
        while clean > 0 and alone(ctx[clean - 1]).endswith(FFFD):
            clean -= 1
        prefix = str(decode(ctx[:clean])) if clean else ""
        return past_shared(full, prefix)
    return ""


def _parse_text(data: Any) -> str:
    try:
        text = data["choices"][0]["text"]
    except (KeyError, IndexError, TypeError):
        raise ValueError("response field 'choices[0].text' is missing") from None
    if not isinstance(text, str):
        raise ValueError("response field 'choices[0].text' is not a string")
    return text


def _parse_echo(data: Any, k: int) -> dict[str, Any] | None:
    """The echoed token strings, top-k alternatives and prompt length; None where the
    endpoint answered without log-probs (``transformers serve``, most hosted chat APIs).
    ``text_offset`` is not read (see the module doc)."""
    try:
        lp = data["choices"][0].get("logprobs")
    except (KeyError, IndexError, TypeError, AttributeError):
        raise ValueError("response field 'choices[0]' is missing or malformed") from None
    if not isinstance(lp, dict) or not lp.get("top_logprobs"):
        return None
    tokens, top = lp.get("tokens"), lp.get("top_logprobs")
    if not (isinstance(tokens, list) and isinstance(top, list) and len(tokens) == len(top) > 0):
        raise ValueError("choices[0].logprobs: tokens and top_logprobs are not lists of one "
                         "length")
    if not all(isinstance(t, str) for t in tokens):
        raise ValueError("choices[0].logprobs.tokens holds a non-string")
    for alts in top:
        if alts is None:
            continue
        if not isinstance(alts, dict) or not all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                and v <= _EPS for v in alts.values()):
            raise ValueError("choices[0].logprobs.top_logprobs holds a value that is not a "
                             "finite log-probability")
    usage = data.get("usage") if isinstance(data, dict) else None
    n = usage.get("prompt_tokens") if isinstance(usage, dict) else None
    if not (isinstance(n, int) and not isinstance(n, bool) and 0 < n <= len(tokens)):
        n = len(tokens) - 1  # max_tokens 1: everything but the last token is the prompt
    return {"tokens": tokens, "top": top, "n_prompt": n}


def _echo_dists(a: dict[str, Any], text: str, k: int) -> TextDists:
    """An echo's distributions at the offsets its token strings start at in ``text``
    (:func:`~.blackbox_offsets.token_starts`; a BOS or a token starting inside a character
    has none); the generated token's alternatives are the distribution after the text."""
    tokens, top, n = a["tokens"], a["top"], a["n_prompt"]
    starts = token_starts(text, tokens[:n])
    out: TextDists = {}
    for i, alts in enumerate(top):
        off = len(text) if i >= n else starts[i]
        if not isinstance(alts, dict) or not alts or off < 0 or off in out:
            continue
        out[off] = project({str(t): float(v) for t, v in alts.items()}, k)
    return out


@dataclass
class Measured:
    """Every model's greedy outputs and the pairwise similarities the test needs."""

    outputs: list[tuple[str, ...]]  # per model, per prompt
    sims: dict[str, np.ndarray]  # statistic -> [prompt, model, model], symmetric, NaN diagonal
    shared: np.ndarray  # [model, model]: compared offsets per prompt (mean)
    # [model, model]: share of token starts two models have in common on the same texts
    # (1: they tokenize alike; NaN in the sampled fallback, where no offsets are seen)
    tokenization: np.ndarray
    mode: str  # "logprobs", or "sampled" when some model gave none
    no_logprobs: list[int]  # indices of the models that gave no log-probs


def measure(specs: Sequence[Any], prompts: Sequence[str], *, seed: int, max_new_tokens: int,
            top_k: int, n_samples: int, compare_chars: int) -> Measured:
    """Greedy continuations of every model, then every model's distributions on every
    model's texts (``prompt + continuation``), so each pair is compared on both models'
    own texts; one model loaded at a time (each is opened twice: generation decides the
    texts every model is then scored on)."""
    from kaieval.provenance.blackbox import agreement

    n, m = len(prompts), len(specs)
    outputs = []
    for spec in specs:
        s = ModelSession(spec, seed=seed)
        outputs.append(s.generate(prompts, max_new_tokens))
        s.close()
    flat = [p + o for outs in outputs for p, o in zip(prompts, outs, strict=True)]
    dists: list[list[TextDists] | None] = [None] * m
    missing: list[int] = []
    # endpoints first: once one gives no log-probs every model is sampled instead, so the
    # local forward passes are skipped and the other endpoints are asked one text only
    naming = "vllm"  # a folder names its alternatives as the endpoints do
    for j in sorted(range(m), key=lambda j: specs[j].url is None):
        if missing and specs[j].url is None:
            continue
        s = ModelSession(specs[j], seed=seed, naming=naming)
        dists[j] = s.dists(flat[:1] if missing else flat, top_k)
        naming = "plain" if s.naming_seen == "plain" else naming
        s.close()
        if dists[j] is None:
            missing.append(j)
    missing.sort()
    samples: list[list[list[str | None]]] = []
    if missing:  # every model on the same footing: all sampled, none from log-probs
        for spec in specs:
            s = ModelSession(spec, seed=seed)
            samples.append(s.sample_next(prompts, n_samples))
            s.close()
    sims = {name: np.full((n, m, m), np.nan) for name in ("greedy", *STATISTICS)}
    shared = np.zeros((m, m))
    tokenization = np.full((m, m), np.nan)
    for a in range(m):
        for b in range(a + 1, m):
            for i in range(n):
                vals: dict[str, float] = {"greedy": agreement(outputs[a][i], outputs[b][i],
                                                               compare_chars)}
                if missing:
                    got = compare(empirical(samples[a][i], top_k),
                                  empirical(samples[b][i], top_k))
                    vals.update(zip(STATISTICS, got, strict=True))
                else:
                    da, db = dists[a], dists[b]
                    assert da is not None and db is not None
                    on_a, na = text_statistics(da[a * n + i], db[a * n + i])
                    on_b, nb = text_statistics(da[b * n + i], db[b * n + i])
                    with warnings.catch_warnings():  # a text with no shared offset: NaN
                        warnings.simplefilter("ignore", RuntimeWarning)
                        both = np.nanmean([on_a, on_b], axis=0)
                    vals.update(zip(STATISTICS, (float(v) for v in both), strict=True))
                    shared[a, b] += (na + nb) / (2 * n)
                    most = sum(max(len(da[t]), len(db[t]), 1) for t in (a * n + i, b * n + i))
                    agree = (na + nb) / most / n
                    tokenization[a, b] = agree + (tokenization[a, b] if i else 0.0)
                for name, v in vals.items():
                    sims[name][i, a, b] = sims[name][i, b, a] = v
            shared[b, a] = shared[a, b]
            tokenization[b, a] = tokenization[a, b]
    return Measured(outputs, sims, shared, tokenization, "sampled" if missing else "logprobs",
                    missing)
