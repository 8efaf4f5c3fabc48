"""Hugging Face transformers backend: local directory, shared-prefix scoring, batch invariant.

Tokenisation copies lm-evaluation-harness's ``HFLM`` exactly (trailing context
spaces move to the continuation; the pair is encoded whole and the continuation
is the tail; ``(context + continuation)[-(max_length + 1):][:-1]`` is the model
input), so per-choice log-likelihoods match lm-eval's within float rounding.

What is different is *how* those inputs are computed. A request's input splits
into a prefix (the context tokens) and the continuation's tokens but the last.
All choices of one question share the prefix, so each distinct prefix is run
once and its KV cache is kept; the
logits at its last position give every continuation's first token, and the
remaining tokens of multi-token continuations are scored in one small extra
forward pass over row copies of that cache. lm-eval reuses a forward
pass only when every answer is one token; here a 5-shot question with four
sentence answers costs about one prefix pass instead of four.

On a full-attention model with sdpa or eager attention (the default on CPU) the
exact mode goes further (``hf_prefix.PrefixScorer``): context blocks that
several questions share (a common few-shot block) are computed once in fixed
64-token blocks and cached, and the rest of each context plus every choice's
tokens form one tree; several questions' trees go through one forward pass,
packed by content up to a fixed token budget (``hf_pack``). Other models use the
path below.

Batch-size invariance, exactly: the engine hands this backend a fixed number of
contexts per call (``CONTEXTS_PER_CALL``), and inside a call the packs depend
only on the token ids and fixed constants, so no tensor shape a request sees
depends on ``--batch-size``, and each request's sum is taken in float64 in token
order -- batch sizes 1, 8 and 32 give bit-identical log-likelihoods. (A request
scored in another call -- a resumed run, a different set of documents -- may
share a pass with other neighbours and differ by float rounding, ~1e-6.) Without
the tree scorer each distinct prefix gets its own pass. On a GPU,
``prefix_batching=True`` runs ``batch_size`` prefixes per pass (right padding,
attention mask, position ids that continue each row's own prefix): faster there,
invariant to ~1e-5 only. Generation is greedy, up to ``GEN_ROWS`` prompts per
pass in batches decided by content (``hf_generate``), so it is batch-size
invariant too.
"""

from __future__ import annotations

import ctypes
import functools
import hashlib
import inspect
import sys
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
from kaieval.bench.backends.hf_generate import GEN_ROWS, GEN_TOKENS, GreedyDecoder, Prompt
from kaieval.bench.backends.hf_prefix import BLOCK_TOKENS, PrefixScorer
from kaieval.bench.backends.hf_prefix import supports as prefix_supports
from kaieval.bench.backends.lmeval_tokens import TOKENISATION, LMEvalTokens
from kaieval.bench.collate import Collator
from kaieval.errors import KaiError
from kaieval.quiet import quiet_transformers

DTYPES = ("float32", "float16", "bfloat16")
DEFAULT_MAX_LENGTH = 2048  # lm-eval's default when neither config nor tokenizer says
TOKENIZER_INFINITY = 1000000000000000019884624838656
CONTEXTS_PER_CALL = 64  # contexts per engine call: packs and decode batches form inside one


TOP_PAD_BYTES = 128 << 20  # glibc M_TOP_PAD: see keep_freed_memory


@functools.cache
def keep_freed_memory() -> None:
    """Keep a 128 MiB pad at the top of glibc's heap, so activations are not re-faulted.

    A forward pass allocates and frees multi-MiB activations in every layer. Served by
    ``mmap`` (glibc's default for large blocks, and what an earlier version forced
    with a 1 MiB mmap threshold to keep peak RSS low), each one comes back as fresh
    zeroed pages: a 120-question 5-shot run took 2.7 million minor page faults and
    9-10 s of system time in a 19-23 s process. With ``M_TOP_PAD`` the heap grows
    and shrinks in pad-sized steps, large blocks are carved from its top and freed
    back into it. Measured on that run (issue 14, docs/performance.md): pad 64 MiB
    2.3 M faults, 4.6 s system; 128 MiB 0.54 M, 2.2 s; 256 MiB 0.14 M, 1.3 s. Peak RSS
    grows with the pad (592 / 639 / 674 MB; 3-shot generation 666 / 665 / 688 MB
    against lm-eval's 676 MB), so 128 MiB: most of the time back, and generation still
    under lm-eval's peak. Linux/glibc only; a no-op elsewhere.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-2, TOP_PAD_BYTES)  # M_TOP_PAD
    except (OSError, AttributeError):
        return


def _out_cache(out: Any) -> Any:
    """The KV cache of a forward output (``cache`` in transformers 5, else the old name)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def _choose_forward(path: Path, forward: str, trust_remote_code: bool) -> tuple[str, str]:
    """Which forward runs the model -- ``kaieval`` (``llama_native``) or ``transformers``
    -- and why, from ``--forward`` (auto, kaieval, transformers) and the checkpoint."""
    from kaieval.bench.backends import llama_native

    if forward not in llama_native.FORWARDS:
        raise KaiError(f"forward {forward!r} unknown; use one of "
                       f"{', '.join(llama_native.FORWARDS)}", where="--forward")
    if forward == "transformers":
        return "transformers", "asked for (--forward transformers)"
    why = llama_native.unsupported(path, trust_remote_code=trust_remote_code)
    if why is None:
        return "kaieval", f"a plain {llama_native.ARCHITECTURE} (llama_native)"
    if forward == "kaieval":
        raise KaiError(f"--forward kaieval runs only a plain {llama_native.ARCHITECTURE}: "
                       f"{why}", where=str(path))
    return "transformers", why


def load_causal_lm(path: Path, *, dtype: str = "float32", device: str = "cpu",
                   forward: str = "auto", trust_remote_code: bool = False
                   ) -> tuple[Any, str, str]:
    """The one way kaieval loads a local causal LM (the HF backend, held-out bits per
    character): safetensors only, on kaieval's Llama forward or transformers' model
    (:func:`_choose_forward`), in eval mode on ``device``. Returns the model, which
    forward runs it and why."""
    import torch
    from safetensors import SafetensorError

    from kaieval.safetensors_header import read_header

    for weights in sorted(path.glob("*.safetensors")):  # broken: its file named, one line
        read_header(weights)
    impl, why = _choose_forward(path, forward, trust_remote_code)
    model: Any
    try:
        if impl == "kaieval":
            from kaieval.bench.backends import llama_native

            model = llama_native.load(path, getattr(torch, dtype), device)
        else:
            from transformers import AutoModelForCausalLM

            with quiet_transformers():
                model = AutoModelForCausalLM.from_pretrained(
                    str(path), dtype=getattr(torch, dtype), use_safetensors=True,
                    trust_remote_code=trust_remote_code)
            model = model.to(device)
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise KaiError(f"cannot load model: {first}", where=str(path)) from exc
    model.eval()
    return model, impl, why


class HFBackend(LMEvalTokens):
    """A local transformers causal LM answering log-likelihood and generation requests."""

    name = "hf"

    def __init__(self, path: str | Path, *, dtype: str = "float32", device: str = "cpu",
                 batch_size: int = 8, chat_template: bool = False,
                 trust_remote_code: bool = False, max_length: int | None = None,
                 shared_prefix: bool = True, prefix_batching: bool = False,
                 prefix_block: int = BLOCK_TOKENS, tokenizer_pattern: str | None = None,
                 forward: str = "auto") -> None:
        import torch

        self.path = Path(path).expanduser().resolve()
        check_model_dir(self.path, pickles_beside_safetensors=True)  # use_safetensors below
        if dtype not in DTYPES:
            raise KaiError(f"dtype {dtype!r} not supported; use one of {', '.join(DTYPES)}",
                           where="--dtype")
        if batch_size < 1:
            raise KaiError(f"batch size must be >= 1, got {batch_size}", where="--batch-size")
        self.dtype, self.device, self.batch_size = dtype, device, batch_size
        self.chat_template, self.shared_prefix = chat_template, shared_prefix
        self.prefix_batching = prefix_batching
        self._torch = torch
        self.tokenizer_pattern = tokenizer_pattern
        # kaieval.tokenizer reads the tokenizer (any format) before the weights load
        self.tokenizer: Any = load_hf_tokenizer(self.path, trust_remote_code=trust_remote_code,
                                                pattern=tokenizer_pattern)
        keep_freed_memory()
        self.model, self.forward_impl, self.forward_why = load_causal_lm(
            self.path, dtype=dtype, device=device, forward=forward,
            trust_remote_code=trust_remote_code)
        self.chat_template_hash = chat_template_hash(self.tokenizer, chat_template, self.path)
        self.max_length = max_length or self._resolve_max_length()
        self._init_tokens()
        params = inspect.signature(self.model.forward).parameters
        self._cache_arg = "cache" if "cache" in params else "past_key_values"
        self._keep_arg = "logits_to_keep" if "logits_to_keep" in params else None
        self._fingerprint: str | None = None
        # exact mode on a full-attention model: block KV cache + one tree pass per context
        if prefix_block < 1:
            raise KaiError(f"prefix block must be >= 1 token, got {prefix_block}")
        self.prefix_scorer: PrefixScorer | None = (
            PrefixScorer(self.model, device, cache_arg=self._cache_arg, keep_arg=self._keep_arg,
                         block=prefix_block)
            if shared_prefix and not prefix_batching and prefix_supports(self.model) else None)
        self.decoder = GreedyDecoder(self.model, self.tokenizer, device,
                                     cache_arg=self._cache_arg, keep_arg=self._keep_arg,
                                     scorer=self.prefix_scorer)
        # the engine hands this many contexts per call whatever the batch size, so the
        # scorer's packs (and hence every rounding) are the same for every batch size
        self.contexts_per_call = CONTEXTS_PER_CALL

    # ---------------------------------------------------------------- identity

    def _resolve_max_length(self) -> int:
        cfg = getattr(self.model.config, "text_config", None) or self.model.config
        for attr in ("n_positions", "max_position_embeddings", "n_ctx"):
            value = getattr(cfg, attr, None)
            if value is not None:
                return int(value)
        mml = getattr(self.tokenizer, "model_max_length", None)
        if mml is not None and mml != TOKENIZER_INFINITY:
            return int(mml)
        return DEFAULT_MAX_LENGTH

    def fingerprint(self) -> str:
        if self._fingerprint is None:
            parts = [TOKENISATION, self._scoring(), f"greedy-rows-{GEN_ROWS}-{GEN_TOKENS}",
                     f"forward={self.forward_impl}",
                     model_hash(self.path), self.dtype,
                     self._torch.device(self.device).type, str(self.max_length),
                     f"chat={self.chat_template}:{self.chat_template_hash}"]
            if self.tokenizer_pattern is not None:  # it changes the tokens; absent otherwise
                parts.append(f"pattern={self.tokenizer_pattern}")
            self._fingerprint = hashlib.sha256("|".join(parts).encode()).hexdigest()
        return self._fingerprint

    def _scoring(self) -> str:
        """Which scoring path answers log-likelihoods: part of the request-cache identity,
        so answers computed by one path (equal only up to float rounding) are never mixed
        with another's."""
        if self.prefix_scorer is not None:
            return f"packed-trees-{self.prefix_scorer.block}-{self.prefix_scorer.pack_tokens}"
        return "prefix-batched" if self.prefix_batching else "prefix-cache"

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "model": str(self.path), "dtype": self.dtype,
                "device": self.device, "batch_size": self.batch_size,
                "max_length": self.max_length, "chat_template": self.chat_template,
                "chat_template_hash": self.chat_template_hash,
                "shared_prefix": self.shared_prefix, "prefix_batching": self.prefix_batching,
                "scoring": self._scoring(), "tokenizer_pattern": self.tokenizer_pattern,
                "forward": self.forward_impl, "forward_reason": self.forward_why,
                "generation": f"greedy, up to {GEN_ROWS} prompts per pass",
                "tokenisation": TOKENISATION, "fingerprint": self.fingerprint()}

    # ---------------------------------------------------------------- tokens

    # ---------------------------------------------------------------- scoring

    def loglikelihood(self, requests: Sequence[LoglikelihoodRequest]
                      ) -> list[LoglikelihoodResponse]:
        if not self.shared_prefix:  # reference path: one full sequence per request, batch 1
            with self._torch.inference_mode():
                return [self._full_sequence(r) for r in requests]
        pairs = self.token_pairs(requests)
        items = list(range(len(pairs)))
        collator: Collator[int] = Collator(items, key=lambda i: pairs[i][0],
                                           length=lambda i: len(pairs[i][0]) + len(pairs[i][1]))
        answers: dict[int, LoglikelihoodResponse] = {}
        with self._torch.inference_mode():
            if self.prefix_scorer is not None and not self.prefix_batching:
                scorer = self.prefix_scorer
                packed = [g.indices for g in collator.groups if scorer.fits(g.indices, pairs)]
                for i, (logprob, greedy, n) in scorer.score_groups(packed, pairs).items():
                    answers[i] = LoglikelihoodResponse(logprob=logprob, greedy=greedy,
                                                       n_tokens=n)
                rest = [g for g in collator.groups if g.indices[0] not in answers]
                for g in rest:  # a tree over TREE_MAX_TOKENS: one context per pass
                    self._score_batch([pairs[g.indices[0]][0]], [list(g.indices)], pairs, answers)
            else:
                per_pass = self.batch_size if self.prefix_batching else 1
                for batch in collator.batches(per_pass):
                    prefixes = [pairs[g.indices[0]][0] for g in batch]
                    self._score_batch(prefixes, [list(g.indices) for g in batch], pairs,
                                      answers)
        return collator.restore(answers)

    def _full_sequence(self, request: LoglikelihoodRequest) -> LoglikelihoodResponse:
        """Score ``(prefix + continuation)[:-1]`` in one pass, as lm-eval does (reference)."""
        torch = self._torch
        prefix, cont = self.tokens(request)
        inp = torch.tensor([list(prefix + cont)[:-1]], device=self.device)
        logits = self.model(input_ids=inp).logits[0, -len(cont):].float()
        logp = torch.log_softmax(logits, dim=-1)
        target = torch.tensor(cont, device=self.device)
        picked = logp.gather(1, target[:, None])[:, 0].double().cpu().tolist()
        greedy = bool((logp.argmax(-1) == target).all())
        return LoglikelihoodResponse(logprob=float(sum(picked)), greedy=greedy,
                                     n_tokens=len(cont))

    def _score_batch(self, prefixes: list[tuple[int, ...]], members: list[list[int]],
                     pairs: list[tuple[tuple[int, ...], tuple[int, ...]]],
                     answers: dict[int, LoglikelihoodResponse]) -> None:
        torch = self._torch
        lengths = [len(p) for p in prefixes]
        width = max(lengths)
        ids = torch.zeros((len(prefixes), width), dtype=torch.long)
        mask = torch.zeros((len(prefixes), width), dtype=torch.long)
        for row, prefix in enumerate(prefixes):
            ids[row, :len(prefix)] = torch.tensor(prefix)
            mask[row, :len(prefix)] = 1
        keep = sorted({n - 1 for n in lengths})
        kwargs: dict[str, Any] = {"input_ids": ids.to(self.device),
                                  "attention_mask": mask.to(self.device), "use_cache": True}
        if self._keep_arg:
            kwargs[self._keep_arg] = torch.tensor(keep, device=self.device)
        out = self.model(**kwargs)
        cache = _out_cache(out)
        firsts = [torch.log_softmax(
            out.logits[row, keep.index(n - 1) if self._keep_arg else n - 1].float(), dim=-1)
            for row, n in enumerate(lengths)]
        multi = [(row, i) for row, idx in enumerate(members) for i in idx if len(pairs[i][1]) > 1]
        rest: list[Any] = []
        # exact mode: one context per pass and all its choices together, so no shape
        # depends on the batch size; batching mode bounds the cache copies instead
        per_pass = self.batch_size if self.prefix_batching else max(1, len(multi))
        for start in range(0, len(multi), per_pass):
            part = multi[start:start + per_pass]
            rest.extend(self._continue(cache, lengths, width,
                                       [(row, pairs[i][1]) for row, i in part]))
        rest_of = {i: j for j, (_row, i) in enumerate(multi)}
        for row, idx in enumerate(members):
            for i in idx:
                cont = pairs[i][1]
                rows = [firsts[row]] + ([rest[rest_of[i]][t] for t in range(len(cont) - 1)]
                                        if i in rest_of else [])
                picked = [float(lp[tok]) for lp, tok in zip(rows, cont, strict=True)]
                greedy = all(int(lp.argmax()) == tok for lp, tok in zip(rows, cont, strict=True))
                answers[i] = LoglikelihoodResponse(logprob=float(sum(picked)), greedy=greedy,
                                                   n_tokens=len(cont))

    def _continue(self, cache: Any, lengths: list[int], width_prefix: int,
                  conts: list[tuple[int, tuple[int, ...]]]) -> list[Any]:
        """Log-probs for tokens 2.. of every multi-token continuation, in one forward pass.

        Row ``j`` continues prefix row ``conts[j][0]`` of the right-padded batch cache:
        its cache row is copied, the pad slots after that prefix are masked out, and
        its tokens get positions ``len(prefix) + t``; so each continuation sees exactly
        its own prefix, as in a full-sequence pass.
        """
        torch = self._torch
        from transformers import DynamicCache

        n, width = len(conts), max(len(c) for _r, c in conts) - 1
        ids = torch.zeros((n, width), dtype=torch.long)
        mask = torch.zeros((n, width_prefix + width), dtype=torch.long)
        positions = torch.zeros((n, width), dtype=torch.long)
        for j, (row, cont) in enumerate(conts):
            body = cont[:-1]
            ids[j, :len(body)] = torch.tensor(body)
            mask[j, :lengths[row]] = 1
            mask[j, width_prefix:width_prefix + len(body)] = 1
            positions[j] = torch.arange(lengths[row], lengths[row] + width)
        source = torch.tensor([row for row, _c in conts], device=self.device)
        layers = [(layer.keys.index_select(0, source), layer.values.index_select(0, source))
                  for layer in cache.layers]
        copy = DynamicCache(ddp_cache_data=layers, config=self.model.config)
        out = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device),
                         position_ids=positions.to(self.device), use_cache=True,
                         **{self._cache_arg: copy})
        logp = torch.log_softmax(out.logits.float(), dim=-1)
        return [logp[j] for j in range(n)]

    # ---------------------------------------------------------------- generation

    def generate(self, requests: Sequence[GenerationRequest]) -> list[GenerationResponse]:
        """Greedy, up to ``GEN_ROWS`` prompts per pass (``hf_generate``); same text as one
        prompt at a time. Models the tree scorer does not take (sliding-window or
        flash attention: our explicit 4-D masks would be wrong or refused there) decode
        one prompt at a time."""
        if self.prefix_scorer is None:
            with self._torch.inference_mode():
                return [self._generate_one(r) for r in requests]
        prompts = []
        for request in requests:
            ids = self.prompt_ids(request.context, request.chat, request.max_tokens)
            prompts.append(Prompt(tuple(ids), request.max_tokens,
                                  tuple(s for s in request.stop if s)))
        todo = [i for i, p in enumerate(prompts) if p.max_tokens >= 1]
        generated: list[list[int]] = [[] for _ in prompts]
        with self._torch.inference_mode():
            for i, ids in zip(todo, self.decoder.run([prompts[i] for i in todo]), strict=True):
                generated[i] = ids
        return [GenerationResponse(text=self.finish(ids, r.stop))
                for ids, r in zip(generated, requests, strict=True)]

    def _generate_one(self, request: GenerationRequest) -> GenerationResponse:
        """Reference path: one prompt, one token per pass (what ``generate`` must equal)."""
        torch = self._torch
        ids = self.prompt_ids(request.context, request.chat, request.max_tokens)
        eos = self.tokenizer.eos_token_id
        stops = [s for s in request.stop if s]  # no stop strings: nothing to decode per step
        generated: list[int] = []
        cache: Any = None
        step = torch.tensor([ids], device=self.device)
        pos = 0
        with torch.inference_mode():
            for _ in range(request.max_tokens):
                n = step.shape[1]
                out = self.model(input_ids=step, use_cache=True,
                                 position_ids=torch.arange(pos, pos + n, device=self.device)[None],
                                 **({self._cache_arg: cache} if cache is not None else {}))
                cache = _out_cache(out)
                pos += n
                token = int(out.logits[0, -1].float().argmax())
                if eos is not None and token == eos:
                    break
                generated.append(token)
                if stops and any(s in self.tokenizer.decode(generated, skip_special_tokens=True)
                                 for s in stops):
                    break
                step = torch.tensor([[token]], device=self.device)
        return GenerationResponse(text=self.finish(generated, request.stop))
