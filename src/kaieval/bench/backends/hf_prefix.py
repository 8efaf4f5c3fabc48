"""Exact shared-prefix scoring on one device: a block KV cache plus packed tree passes.

Why this exists: on a 5-shot task every question's context starts with the same
few-shot block (~200 of ~230 tokens in the vs-lm-eval benchmark), and a
question's answers differ only in their last few tokens. Profiling the earlier
path (one pass per context, then a second pass over row copies of its KV cache)
showed the time was almost all GEMMs over tokens already computed for the
previous question, ~40 % of it in the continuation pass and its cache copies.
On CPU each forward pass also costs a fixed ~11 ms here (every weight is read
once per pass), so the number of passes matters as much as the token count.

Three ideas, all exact up to float rounding and all independent of the batch size:

* **Block cache.** A context's leading tokens that other contexts of the same
  call share (``hf_pack.shared_run``) are cut at fixed multiples of ``block``
  tokens. Each full block's keys and values are computed in a pass over exactly
  that block, attending to the cached run before it, and the run up to the
  block's end is kept under the key "all tokens up to here" in a small LRU. A
  block's values therefore never depend on which requests came before or beside
  it -- a cache hit returns bit for bit what a miss computes.
* **Tree.** The context's remaining tokens and every choice's continuation but
  its last token (a "branch") form one tree. A 4-D mask lets a branch token see
  the cached run, the context tail and the earlier tokens of its own branch
  only; its position ids continue the context. So each choice is computed as in
  a full pass over ``context + continuation``, without a second pass or cache
  row copies, and only the scored positions reach the LM head. Branches are laid
  out in a canonical order, so request order within a group cannot change the
  rounding.
* **Packs.** Several contexts' trees that share the same cached run go through
  one forward pass, one left-padded row each (``hf_pack.plan``: longest first,
  up to a fixed token budget, decided by the token ids alone). On CPU a pass
  costs a fixed ~11 ms on top of its tokens, so one pass per question left the
  cores idle.

Only models whose attention is full (no sliding window) with the sdpa or eager
attention implementation qualify (``supports``); others use the prefix-cache
path in ``hf.py``.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from typing import Any

from kaieval.bench.backends.hf_pack import PACK_TOKENS, Pack, plan

BLOCK_TOKENS = 64  # KV-cache block: smaller reuses more tokens, larger needs fewer passes
CACHE_BYTES = 512 << 20  # LRU bound on cached keys/values (bytes)...
CACHE_ENTRIES = 8  # ...and on cached runs: the hot few-shot run stays, one-off runs go
TREE_MAX_TOKENS = 8192  # context + branch tokens of one tree (its mask row is its square)

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


def attention_mask(model: Any, visible: Any, device: str) -> Any:
    """``visible`` (rows, queries, keys; bool) as the 4-D mask ``model`` takes: the bool
    itself for sdpa, an additive float mask for eager attention."""
    import torch

    if model.config._attn_implementation == "eager":
        dtype = model.dtype
        visible = torch.zeros(visible.shape, dtype=dtype).masked_fill_(~visible,
                                                                       torch.finfo(dtype).min)
    return visible[:, None].to(device)


class PrefixScorer:
    """Scores groups of requests that share one context (see the module docstring)."""

    def __init__(self, model: Any, device: str, *, cache_arg: str, keep_arg: str | None,
                 block: int = BLOCK_TOKENS, cache_bytes: int = CACHE_BYTES,
                 pack_tokens: int = PACK_TOKENS) -> None:
        import torch

        self._torch = torch
        self.model, self.device = model, device
        self.cache_arg, self.keep_arg = cache_arg, keep_arg
        self.block, self.cache_bytes = block, cache_bytes
        self._blocks: OrderedDict[tuple[int, ...], KV] = OrderedDict()
        self._bytes = 0
        self.pack_tokens = pack_tokens
        self.blocks_computed = 0  # counters, for tests and profiling
        self.blocks_reused = 0
        self.passes = 0  # packed tree passes

    def fits(self, members: Sequence[int], pairs: Sequence[Pair]) -> bool:
        """Whether the group's tree stays under ``TREE_MAX_TOKENS`` tokens even if none of
        its context comes from the block cache (that depends on the other contexts)."""
        n_prefix = len(pairs[members[0]][0])
        return n_prefix + sum(len(pairs[i][1]) - 1 for i in members) <= TREE_MAX_TOKENS

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

    def prefix_kv(self, prefix: Sequence[int], upto: int) -> KV | None:
        """Keys/values of ``prefix[:upto]`` (``upto`` a multiple of the block; None if 0).

        The cache maps "tokens up to a block's end" to the keys/values of that whole
        run, so the longest cached run is found by key and extended block by block;
        each extension is one pass over exactly that block, whatever was cached.
        """
        n_blocks = upto // self.block
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
        return past

    # ---------------------------------------------------------------- packed tree pass

    def score_groups(self, groups: Sequence[Sequence[int]], pairs: Sequence[Pair]
                     ) -> dict[int, tuple[float, bool, int]]:
        """(log-likelihood, greedy, n_tokens) per request; each group shares one context.

        The groups' trees are packed (``hf_pack.plan``: by content and a fixed token
        budget) and each pack is one forward pass.
        """
        prefixes = [pairs[g[0]][0] for g in groups]
        extra = [sum(len(pairs[i][1]) - 1 for i in g) for g in groups]
        out: dict[int, tuple[float, bool, int]] = {}
        for pack in plan(prefixes, extra, self.block, self.pack_tokens):
            self.passes += 1
            out.update(self._score_pack(pack, [groups[t.group] for t in pack.trees], pairs))
        return out

    def _layout(self, members: Sequence[int], pairs: Sequence[Pair], cached: int
                ) -> tuple[list[int], list[int], dict[int, int], int]:
        """One tree: (tokens, positions, branch start per member, context tail length)."""
        prefix = pairs[members[0]][0]
        tokens = list(prefix[cached:])
        positions = list(range(cached, len(prefix)))
        n_tail = len(tokens)
        start: dict[int, int] = {}
        # branches in a canonical order (by tokens), so that the request order within a
        # group cannot change the tree's layout and hence its rounding
        for i in sorted(members, key=lambda m: (pairs[m][1], m)):
            body = pairs[i][1][:-1]
            if body:
                start[i] = len(tokens)
                tokens.extend(body)
                positions.extend(range(len(prefix), len(prefix) + len(body)))
        return tokens, positions, start, n_tail

    def _score_pack(self, pack: Pack, groups: Sequence[Sequence[int]], pairs: Sequence[Pair]
                    ) -> dict[int, tuple[float, bool, int]]:
        """One forward pass over a pack's trees, one row each, left-padded.

        Left padding puts every row's scored positions (its context's last token, then
        its branches) at the end, so ``logits_to_keep`` takes the last ``n_keep``
        positions of all rows at once. A pad position sees only itself (no row of the
        mask is empty, which would give NaN); no real token sees a pad.
        """
        torch = self._torch
        n_past = pack.cached
        past = self.prefix_kv(pairs[groups[0][0]][0], n_past) if n_past else None
        trees = [self._layout(g, pairs, n_past) for g in groups]
        rows, width = len(trees), max(len(t[0]) for t in trees)
        n_keep = max(len(t[0]) - t[3] + 1 for t in trees)
        ids = torch.zeros((rows, width), dtype=torch.long)
        positions = torch.zeros((rows, width), dtype=torch.long)
        visible = torch.zeros((rows, width, n_past + width), dtype=torch.bool)
        for r, (tokens, where, start, n_tail) in enumerate(trees):
            n, pad = len(tokens), width - len(tokens)
            ids[r, pad:] = torch.tensor(tokens)
            positions[r, pad:] = torch.tensor(where)
            view = visible[r]
            view[:pad, n_past:n_past + pad] = torch.eye(pad, dtype=torch.bool)
            view[pad:, :n_past] = True
            view[pad:, n_past + pad:] = torch.ones((n, n), dtype=torch.bool).tril_()
            for i, s in start.items():  # a branch does not see the branches before it
                view[pad + s:pad + s + len(pairs[i][1]) - 1,
                     n_past + pad + n_tail:n_past + pad + s] = False
        kwargs: dict[str, Any] = {"input_ids": ids.to(self.device),
                                  "attention_mask": attention_mask(self.model, visible,
                                                                   self.device),
                                  "position_ids": positions.to(self.device)}
        if past is not None:
            expanded = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in past]
            kwargs.update({self.cache_arg: self._cache(expanded), "use_cache": True})
        else:
            kwargs["use_cache"] = False
        base = width - n_keep if self.keep_arg else 0  # kept index = position - base
        if self.keep_arg:
            kwargs[self.keep_arg] = torch.arange(base, width, device=self.device)
        logits = self.model(**kwargs).logits
        row_i: list[int] = []
        col_i: list[int] = []
        targets: list[int] = []
        order: list[int] = []
        for r, (g, (tokens, _p, start, n_tail)) in enumerate(zip(groups, trees, strict=True)):
            pad = width - len(tokens)
            for i in g:  # the context's last position scores every first token
                cont = pairs[i][1]
                cols = [pad + n_tail - 1]
                if i in start:
                    cols.extend(range(pad + start[i], pad + start[i] + len(cont) - 1))
                row_i.extend([r] * len(cols))
                col_i.extend(c - base for c in cols)
                targets.extend(cont)
                order.append(i)
        at = logits.device
        picked_logits = logits[torch.tensor(row_i, device=at), torch.tensor(col_i, device=at)]
        logp = torch.log_softmax(picked_logits.float(), dim=-1)
        target_t = torch.tensor(targets, device=logp.device)
        picked = logp.gather(1, target_t[:, None])[:, 0].double().cpu().tolist()
        hits = (logp.argmax(-1) == target_t).cpu().tolist()
        out: dict[int, tuple[float, bool, int]] = {}
        at_token = 0
        for i in order:  # float64 sum in token order, as the other paths do
            n = len(pairs[i][1])
            out[i] = (float(sum(picked[at_token:at_token + n])),
                      bool(all(hits[at_token:at_token + n])), n)
            at_token += n
        return out
