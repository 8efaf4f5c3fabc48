"""Which context blocks are worth caching, and which trees share one forward pass.

Why this exists: the tree scorer (``hf_prefix``) used to run one question per
forward pass. On CPU a pass has a fixed cost (~11 ms for the benchmark's small
model: every weight is read once and the framework's per-layer overhead is paid
once), so 300 one-question passes left the cores mostly idle, and when every
question brings its own few-shot examples the block cache had nothing to share.

This module decides, from the token ids alone, two things:

* **Shared runs.** A context's first ``j * block`` tokens come from the block
  cache only if a quarter of the call's contexts (at least two) start with the
  same ``j * block`` tokens: a few-shot block common to every question is
  computed once; examples drawn per question are not cut into blocks that
  nobody reuses (they go through the packed tree pass instead, which is one
  pass for several questions rather than one pass per block). The quarter is
  there because a run shared by chance -- two questions whose first drawn
  example is the same -- saved a few dozen tokens but split the call into many
  small packs, one per run, each with its own block passes (measured: 2.4x
  slower on a 5-shot one-letter task with shots drawn per item).
* **Packs.** Trees (context tail + every choice's tokens but its last) whose
  contexts share the same cached run are sorted longest first and cut greedily
  into packs of at most ``budget`` tokens, counted as rows x (run + longest
  tree) -- the size of the pass's keys and values. One pack is one forward pass.

Both are pure functions of the calls' token ids (ties are broken by the tokens,
never by request order) and of fixed constants -- never of ``--batch-size`` --
so every batch size builds the same passes and gets bit-identical
log-likelihoods.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

PACK_TOKENS = 4096  # rows x (cached run + longest tree) of one packed pass


@dataclass(frozen=True)
class Tree:
    """One context's part of a pass: group ``group``, ``cached`` tokens from the block cache,
    ``length`` tokens in the pass (context tail + branch bodies)."""

    group: int
    cached: int
    length: int


@dataclass(frozen=True)
class Pack:
    """Trees computed in one forward pass; all share the cached run of ``cached`` tokens."""

    cached: int
    trees: tuple[Tree, ...]  # longest first


def shared_run(prefixes: Sequence[Sequence[int]], block: int) -> list[int]:
    """Per context: how many leading tokens (a multiple of ``block``) it shares with at
    least ``min_share(len(prefixes))`` contexts of the call, itself included.

    A run must leave the context's last token outside (its logits score every
    answer's first token), so at most ``(len - 1) // block`` blocks count.
    """
    need = min_share(len(prefixes))
    limits = [(len(p) - 1) // block for p in prefixes]
    counts: Counter[tuple[int, ...]] = Counter()
    for prefix, n_blocks in zip(prefixes, limits, strict=True):
        for j in range(1, n_blocks + 1):
            counts[tuple(prefix[:j * block])] += 1
    out = []
    for prefix, n_blocks in zip(prefixes, limits, strict=True):
        j = n_blocks
        while j > 0 and counts[tuple(prefix[:j * block])] < need:
            j -= 1
        out.append(j * block)
    return out


def min_share(n_contexts: int) -> int:
    """Contexts that must share a run for it to be cached: a quarter of the call, at least 2."""
    return max(2, -(-n_contexts // 4))


def plan(prefixes: Sequence[Sequence[int]], branch_tokens: Sequence[int], block: int,
         budget: int = PACK_TOKENS) -> list[Pack]:
    """Packs for contexts ``prefixes`` whose answers add ``branch_tokens`` tokens each.

    ``prefixes`` must be distinct (one per group of requests sharing a context).
    A tree longer than the budget gets a pack of its own.
    """
    cached = shared_run(prefixes, block)
    by_run: dict[tuple[int, ...], list[Tree]] = {}
    for g, (prefix, n_cached, extra) in enumerate(zip(prefixes, cached, branch_tokens,
                                                      strict=True)):
        tree = Tree(group=g, cached=n_cached, length=len(prefix) - n_cached + extra)
        by_run.setdefault(tuple(prefix[:n_cached]), []).append(tree)
    packs: list[Pack] = []
    for run in sorted(by_run):  # runs in token order: independent of request order
        trees = sorted(by_run[run], key=lambda t: (-t.length, tuple(prefixes[t.group])))
        current: list[Tree] = []
        for tree in trees:
            width = len(run) + (current[0].length if current else tree.length)
            if current and (len(current) + 1) * width > budget:
                packs.append(Pack(len(run), tuple(current)))
                current = []
            current.append(tree)
        if current:
            packs.append(Pack(len(run), tuple(current)))
    return packs
