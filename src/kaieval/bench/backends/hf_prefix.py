"""Exact shared-prefix scoring on one device: a block KV cache plus one tree pass per context.

Why this exists: on a 5-shot task every question's context starts with the same
few-shot block (~200 of ~230 tokens in the vs-lm-eval benchmark), and a
question's answers differ only in their last few tokens. Profiling the earlier
path (one pass per context, then a second pass over row copies of its KV cache)
showed the time was almost all GEMMs over tokens already computed for the
previous question, ~40 % of it in the continuation pass and its cache copies.
On CPU each forward pass also costs a fixed ~11 ms here (every weight is read
once per pass), so the number of passes matters as much as the token count.

Two ideas, both exact up to float rounding and both independent of the batch size:

* **Block cache.** A context's tokens are cut at fixed multiples of ``block``
  tokens. Each full block's keys and values are computed in a pass over exactly
  that block, attending to the cached run before it, and the run up to the
  block's end is kept under the key "all tokens up to here" in a small LRU. A
  block's values therefore never depend on which requests came before or beside
  it -- a cache hit returns bit for bit what a miss computes -- so batch size,
  chunking and order cannot change a log-likelihood.
* **Tree pass.** The context's remaining tokens (after its last full block) and
  every choice's continuation but its last token (a "branch") go through ONE
  forward pass. A 4-D mask lets a branch token see the cached run, the context
  tail and the earlier tokens of its own branch only; its position ids continue
  the context. So each choice is computed as in a full pass over
  ``context + continuation``, without a second pass or cache row copies, and
  only the scored positions reach the LM head. Branches are laid out in a
  canonical order, so request order within a group cannot change the rounding.

Only models whose attention is full (no sliding window) with the sdpa or eager
attention implementation qualify (``supports``); others use the prefix-cache
path in ``hf.py``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

BLOCK_TOKENS = 64  # KV-cache block: smaller reuses more tokens, larger needs fewer passes
CACHE_BYTES = 512 << 20  # LRU bound on cached keys/values (bytes)...
CACHE_ENTRIES = 8  # ...and on cached runs: the hot few-shot run stays, one-off runs go
TREE_MAX_TOKENS = 8192  # context tail + branch tokens of one tree pass (the mask is its square)

Pair = tuple[tuple[int, ...], tuple[int, ...]]
KV = list[tuple[Any, Any]]  # per layer: (keys, values), shape (1, heads, tokens, head_dim)


def supports(model: Any) -> bool:
    """Whether ``model``'s attention takes our 4-D masks and plain per-layer KV tensors."""
    cfg = model.config
    if getattr(cfg, "_attn_implementation", None) not in ("sdpa", "eager"):
        return False
    if getattr(cfg, "sliding_window", None) is not None:
        return False
    types = getattr(cfg, "layer_types", None)
    return not (types and any(t != "full_attention" for t in types))


class PrefixScorer:
    """Scores groups of requests that share one context (see the module docstring)."""

    def __init__(self, model: Any, device: str, *, cache_arg: str, keep_arg: str | None,
                 block: int = BLOCK_TOKENS, cache_bytes: int = CACHE_BYTES) -> None:
        import torch

        self._torch = torch
        self.model, self.device = model, device
        self.cache_arg, self.keep_arg = cache_arg, keep_arg
        self.block, self.cache_bytes = block, cache_bytes
        self._blocks: OrderedDict[tuple[int, ...], KV] = OrderedDict()
        self._bytes = 0
        self.blocks_computed = 0  # counters, for tests and profiling
        self.blocks_reused = 0

    def fits(self, members: Sequence[int], pairs: Sequence[Pair]) -> bool:
        """Whether the group's tree pass stays under ``TREE_MAX_TOKENS`` tokens."""
        n_prefix = len(pairs[members[0]][0])
        tail = n_prefix - self.block * ((n_prefix - 1) // self.block)
        return tail + sum(len(pairs[i][1]) - 1 for i in members) <= TREE_MAX_TOKENS

    # ---------------------------------------------------------------- block cache

    def _remember(self, key: tuple[int, ...], kv: KV) -> None:
        size = sum(k.numel() * k.element_size() + v.numel() * v.element_size() for k, v in kv)
        if size > self.cache_bytes:
            return
        self._blocks[key] = kv
        self._bytes += size
        while self._bytes > self.cache_bytes or len(self._blocks) > CACHE_ENTRIES:
            _key, old = self._blocks.popitem(last=False)
            self._bytes -= sum(k.numel() * k.element_size() + v.numel() * v.element_size()
                               for k, v in old)

    def _cache(self, past: KV | None) -> Any:
        from transformers import DynamicCache

        if past is None:
            return DynamicCache(config=self.model.config)
        return DynamicCache(ddp_cache_data=past, config=self.model.config)

    def _compute_block(self, tokens: Sequence[int], start: int, past: KV | None) -> KV:
        """Keys/values of ``prefix[:start + len(tokens)]``, given those of ``prefix[:start]``."""
        torch = self._torch
        cache = self._cache(past)
        kwargs: dict[str, Any] = {
            "input_ids": torch.tensor([list(tokens)], device=self.device),
            "position_ids": torch.arange(start, start + len(tokens), device=self.device)[None],
            "use_cache": True, self.cache_arg: cache}
        if self.keep_arg:
            kwargs[self.keep_arg] = 1  # no logits are needed, only the keys and values
        self.model(**kwargs)
        self.blocks_computed += 1
        # the cache's own (concatenated) tensors: the whole run so far, no extra copy
        return [(layer.keys, layer.values) for layer in cache.layers]

    def prefix_kv(self, prefix: Sequence[int]) -> tuple[int, KV | None]:
        """Keys/values of the context's full blocks (all but its last token): (tokens, kv).

        The cache maps "tokens up to a block's end" to the keys/values of that whole
        run, so the longest cached run is found by key and extended block by block;
        each extension is one pass over exactly that block, whatever was cached.
        """
        n_blocks = (len(prefix) - 1) // self.block
        done, past = 0, None
        for j in range(n_blocks, 0, -1):
            key = tuple(prefix[:j * self.block])
            hit = self._blocks.get(key)
            if hit is not None:
                self._blocks.move_to_end(key)
                done, past = j, hit
                self.blocks_reused += j
                break
        for j in range(done, n_blocks):
            start = j * self.block
            past = self._compute_block(prefix[start:start + self.block], start, past)
            self._remember(tuple(prefix[:start + self.block]), past)
        return n_blocks * self.block, past

    # ---------------------------------------------------------------- tree pass

    def score(self, members: Sequence[int], pairs: Sequence[Pair]
              ) -> list[tuple[float, bool, int]]:
        """(log-likelihood, greedy, n_tokens) per member; all members share one context."""
        torch = self._torch
        prefix = pairs[members[0]][0]
        n_cached, past = self.prefix_kv(prefix)
        tail = list(prefix[n_cached:])
        n_tail = len(tail)
        tokens, positions = tail, list(range(n_cached, len(prefix)))
        start: dict[int, int] = {}
        # branches in a canonical order (by tokens), so that the request order within a
        # group cannot change the tree's layout and hence its rounding
        for i in sorted(members, key=lambda m: (pairs[m][1], m)):
            body = pairs[i][1][:-1]
            if body:
                start[i] = len(tokens)
                tokens.extend(body)
                positions.extend(range(len(prefix), len(prefix) + len(body)))
        total = len(tokens)
        visible = torch.ones((total, n_cached + total), dtype=torch.bool)
        visible[:, n_cached:] = torch.ones((total, total), dtype=torch.bool).tril_()
        for i, s in start.items():  # a branch does not see the branches before it
            visible[s:s + len(pairs[i][1]) - 1, n_cached + n_tail:n_cached + s] = False
        dtype = self.model.dtype
        mask = (torch.zeros(visible.shape, dtype=dtype).masked_fill_(~visible,
                                                                      torch.finfo(dtype).min)
                if self.model.config._attn_implementation == "eager" else visible)
        keep = [n_tail - 1, *range(n_tail, total)]  # context's last position, then branches
        kwargs: dict[str, Any] = {
            "input_ids": torch.tensor([tokens], device=self.device),
            "attention_mask": mask[None, None].to(self.device),
            "position_ids": torch.tensor([positions], device=self.device)}
        if past is not None:
            kwargs.update({self.cache_arg: self._cache(past), "use_cache": True})
        else:
            kwargs["use_cache"] = False
        if self.keep_arg:
            kwargs[self.keep_arg] = torch.tensor(keep, device=self.device)
            logits = self.model(**kwargs).logits[0]
        else:
            logits = self.model(**kwargs).logits[0, keep]
        logp = torch.log_softmax(logits.float(), dim=-1)
        rows: list[int] = []
        targets: list[int] = []
        for i in members:  # kept row 0 scores every first token, branch rows the rest
            cont = pairs[i][1]
            rows.append(0)
            if i in start:
                first = start[i] - n_tail + 1
                rows.extend(range(first, first + len(cont) - 1))
            targets.extend(cont)
        row_t = torch.tensor(rows, device=logp.device)
        target_t = torch.tensor(targets, device=logp.device)
        picked = logp[row_t, target_t].double().cpu().tolist()
        hits = (logp.argmax(-1)[row_t] == target_t).cpu().tolist()
        out, pos = [], 0
        for i in members:  # float64 sum in token order, as the other paths do
            n = len(pairs[i][1])
            out.append((float(sum(picked[pos:pos + n])), bool(all(hits[pos:pos + n])), n))
            pos += n
        return out
