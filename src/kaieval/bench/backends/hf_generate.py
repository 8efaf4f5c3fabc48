"""Greedy generation for the HF backend: several prompts per pass, few-shot prefix computed once.

Why this exists: generating one prompt at a time costs one forward pass per
new token per prompt, and on CPU a pass has a fixed cost (~11 ms for the
benchmark's small model) whatever its size, so a 120-prompt, 24-token task
spent most of its time in pass overheads, re-reading the 3-shot prefix for
every prompt.

How: prompts that share leading blocks with another prompt (the few-shot
examples) are grouped by those blocks, sorted longest first (ties by their
tokens) and cut into batches of ``GEN_ROWS`` -- a fixed number, never the batch
size, and capped in tokens by ``GEN_TOKENS`` -- so every batch size builds the
same batches and decodes the same way. A
batch's shared blocks come from the tree scorer's block cache (the few-shot
prefix is computed once per task, not once per prompt); the rest of
each prompt is left-padded into one prefill pass, then every step decodes one
token for every row with the KV cache (finished rows leave the batch once half
of it is done: each removal copies the whole cache). A row stops at EOS, at its
token budget, or as soon as one of its stop strings appears, checked on the
decoded tail of the new tokens only (a stop missed there would only cost more
tokens: the final text is the whole decode cut at the stops, as before).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kaieval.bench.backends.hf_pack import shared_run
from kaieval.bench.backends.hf_prefix import attention_mask

GEN_ROWS = 64  # prompts decoded together at most (fixed: the batch size never changes an output)
GEN_TOKENS = 16384  # ...and at most this many rows x (longest prompt + its new tokens)


@dataclass(frozen=True)
class Prompt:
    """One greedy request, tokenised: prompt ids, new-token budget and stop strings."""

    ids: tuple[int, ...]
    max_tokens: int
    stops: tuple[str, ...]


def _stopped(tokenizer: Any, generated: list[int], stops: tuple[str, ...]) -> bool:
    """Whether a stop string ends in the last token's text (window: 4 tokens per char)."""
    window = 4 * (max(len(s) for s in stops) + 1)
    tail = str(tokenizer.decode(generated[-window:], skip_special_tokens=True))
    return any(s in tail for s in stops)


class GreedyDecoder:
    """Batched greedy decoding with a KV cache (see the module docstring)."""

    def __init__(self, model: Any, tokenizer: Any, device: str, *, cache_arg: str,
                 keep_arg: str | None, scorer: Any = None, rows: int = GEN_ROWS,
                 tokens: int = GEN_TOKENS) -> None:
        import torch

        self._torch = torch
        self.model, self.tokenizer, self.device = model, tokenizer, device
        self.cache_arg, self.keep_arg = cache_arg, keep_arg
        self.scorer, self.rows, self.tokens = scorer, rows, tokens
        self.passes = 0  # counter, for tests and profiling

    def run(self, prompts: Sequence[Prompt]) -> list[list[int]]:
        """Generated token ids per prompt (EOS excluded), in the input order.

        Prompts are grouped by the leading blocks they share with another prompt
        (``hf_pack.shared_run``), then sorted longest first (ties by tokens) and cut
        into batches of ``rows``: all decided by the token ids alone.
        """
        block = self.scorer.block if self.scorer is not None else 0
        runs = (shared_run([p.ids for p in prompts], block) if block
                else [0] * len(prompts))
        by_run: dict[tuple[int, ...], list[int]] = {}
        for i, (p, n_run) in enumerate(zip(prompts, runs, strict=True)):
            by_run.setdefault(p.ids[:n_run], []).append(i)
        out: list[list[int]] = [[] for _ in prompts]
        for run in sorted(by_run):
            order = sorted(by_run[run], key=lambda i: (-len(prompts[i].ids), prompts[i].ids))
            for batch in self._batches([prompts[i] for i in order], order):
                for i, ids in zip(batch, self._decode([prompts[i] for i in batch], len(run)),
                                  strict=True):
                    out[i] = ids
        return out

    def _batches(self, prompts: Sequence[Prompt], order: list[int]) -> list[list[int]]:
        """Consecutive runs of ``order`` (longest prompt first) within the row and token caps."""
        batches: list[list[int]] = []
        width = 0
        for i, p in zip(order, prompts, strict=True):
            size = len(p.ids) + p.max_tokens
            if batches and len(batches[-1]) < self.rows and (
                    (len(batches[-1]) + 1) * max(width, size) <= self.tokens):
                batches[-1].append(i)
                width = max(width, size)
            else:
                batches.append([i])
                width = size
        return batches

    def _past(self, prompts: Sequence[Prompt], n_past: int) -> Any:
        """Keys/values of the batch's shared leading blocks, from the block cache."""
        if self.scorer is None or n_past == 0:
            return None
        return self.scorer.prefix_kv(prompts[0].ids, n_past)

    def _decode(self, prompts: Sequence[Prompt], n_past: int) -> list[list[int]]:
        """Greedy tokens of one batch: a left-padded prefill pass, then one pass per token.

        Masks are 4-D and explicit: a pad position sees only itself (no mask row is
        empty, which would give NaN) and no real token ever sees a pad.
        """
        torch = self._torch
        past = self._past(prompts, n_past)
        rows = len(prompts)
        width = max(len(p.ids) for p in prompts) - n_past
        ids = torch.zeros((rows, width), dtype=torch.long)
        positions = torch.zeros((rows, width), dtype=torch.long)
        keys = torch.ones((rows, n_past + width), dtype=torch.bool)  # real keys, per row
        visible = torch.zeros((rows, width, n_past + width), dtype=torch.bool)
        for r, p in enumerate(prompts):  # left padding: every row's last token is at the end
            tail = p.ids[n_past:]
            pad = width - len(tail)
            ids[r, pad:] = torch.tensor(tail)
            positions[r, pad:] = torch.arange(n_past, len(p.ids))
            keys[r, n_past:n_past + pad] = False
            visible[r, :pad, n_past:n_past + pad] = torch.eye(pad, dtype=torch.bool)
            visible[r, pad:, :n_past] = True
            visible[r, pad:, n_past + pad:] = torch.ones((len(tail), len(tail)),
                                                         dtype=torch.bool).tril_()
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config) if past is None else DynamicCache(
            ddp_cache_data=[(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1))
                            for k, v in past], config=self.model.config)
        eos = self.tokenizer.eos_token_id
        generated: list[list[int]] = [[] for _ in prompts]
        live = list(range(rows))  # rows in the batch, in cache order
        done: set[int] = set()  # rows that stopped (left in the batch until half are done)
        step_ids, step_pos = ids, positions
        while True:
            kwargs: dict[str, Any] = {
                "input_ids": step_ids.to(self.device), "position_ids": step_pos.to(self.device),
                "attention_mask": attention_mask(self.model, visible, self.device),
                "use_cache": True, self.cache_arg: cache}
            if self.keep_arg:
                kwargs[self.keep_arg] = 1
            logits = self.model(**kwargs).logits[:, -1]
            self.passes += 1
            tokens = logits.float().argmax(-1).cpu().tolist()
            for r, token in zip(live, tokens, strict=True):
                if r in done:  # a finished row still in the batch: its output is ignored
                    continue
                p = prompts[r]
                if eos is not None and token == eos:
                    done.add(r)
                    continue
                generated[r].append(token)
                if len(generated[r]) >= p.max_tokens or (
                        p.stops and _stopped(self.tokenizer, generated[r], p.stops)):
                    done.add(r)
            keep = [j for j, r in enumerate(live) if r not in done]
            if not keep:
                return generated
            if 2 * len(keep) <= len(live):  # compact only when half the rows are done:
                # each compaction copies the whole cache; a finished row costs little
                index = torch.tensor(keep)
                cache.reorder_cache(index.to(self.device))
                keys = keys.index_select(0, index)
                live = [live[j] for j in keep]
            keys = torch.cat([keys, torch.ones((len(live), 1), dtype=torch.bool)], dim=1)
            visible = keys[:, None, :]
            step_ids = torch.tensor([[generated[r][-1] if generated[r] else 0] for r in live])
            step_pos = torch.tensor([[len(prompts[r].ids) + len(generated[r]) + (r in done) - 1]
                                     for r in live])
