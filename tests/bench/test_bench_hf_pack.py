"""Packing plan of the tree scorer: which blocks are shared, which trees share a pass.

Pure functions of token ids (no model): the plan must not depend on request order,
must respect the token budget, and must cache only blocks another context shares.
"""

from __future__ import annotations

import random

from kaieval.bench.backends.hf_pack import Pack, plan, shared_run

SHOTS = tuple(range(100, 120))  # 20 tokens every "shared-shot" context starts with


def _contexts() -> list[tuple[int, ...]]:
    """Two contexts behind the shared shots, two with shots of their own, one short."""
    return [(*SHOTS, 1, 2, 3), (*SHOTS, 4, 5, 6, 7, 8), tuple(range(200, 226)),
            tuple(range(300, 317)), (9, 9)]


def test_shared_run_counts_only_blocks_another_context_shares() -> None:
    got = shared_run(_contexts(), block=8)
    assert got == [16, 16, 0, 0, 0]  # 2 whole blocks of the shots; nothing else is shared
    # a run always leaves the context's last token out of the cache
    assert shared_run([(1, 2, 3, 4), (1, 2, 3, 4, 5)], block=4) == [0, 0]
    assert shared_run([(1, 2, 3, 4, 0), (1, 2, 3, 4, 5)], block=4) == [4, 4]
    assert shared_run([(1,), (1,)], block=1) == [0, 0]


def test_a_run_shared_by_chance_is_not_cached() -> None:
    # twelve contexts: two start with the same block by chance, ten begin alike
    chance = [(1, 2, 3, 4, 50 + i, 0) for i in range(2)]
    common = [(7, 7, 7, 7, 60 + i, 0) for i in range(10)]
    got = shared_run(chance + common, block=4)
    assert got == [0, 0] + [4] * 10  # 2 of 12 is under a quarter; 10 of 12 is not


def _by_group(packs: list[Pack], prefixes: list[tuple[int, ...]]
              ) -> list[tuple[int, tuple[tuple[tuple[int, ...], int, int], ...]]]:
    """Packs described by content (context, cached, length), not by group number."""
    return [(p.cached, tuple((prefixes[t.group], t.cached, t.length) for t in p.trees))
            for p in packs]


def test_plan_groups_by_run_sorts_longest_first_and_keeps_the_budget() -> None:
    prefixes = _contexts()
    extra = [6, 6, 9, 3, 40]
    packs = plan(prefixes, extra, block=8, budget=72)
    # the two shared-shot contexts form one pack over their 16-token run
    shared = [p for p in packs if p.cached == 16]
    assert len(shared) == 1 and sorted(t.group for t in shared[0].trees) == [0, 1]
    assert {t.length for t in shared[0].trees} == {23 - 16 + 6, 25 - 16 + 6}
    for pack in packs:
        lengths = [t.length for t in pack.trees]
        assert lengths == sorted(lengths, reverse=True)
        assert len(pack.trees) == 1 or len(pack.trees) * (pack.cached + lengths[0]) <= 72
    assert sorted(t.group for p in packs for t in p.trees) == [0, 1, 2, 3, 4]
    # the uncached trees: (9, 9)+40 = 42, 26+9 = 35, 17+3 = 20 -> 42 alone, then 35 + 20
    assert [[t.length for t in p.trees] for p in packs if p.cached == 0] == [[42], [35, 20]]


def test_plan_depends_on_content_not_on_order() -> None:
    prefixes = _contexts()
    extra = [6, 6, 9, 3, 40]
    base = _by_group(plan(prefixes, extra, block=8, budget=64), prefixes)
    rng = random.Random(3)
    for _ in range(5):
        order = list(range(len(prefixes)))
        rng.shuffle(order)
        shuffled = [prefixes[i] for i in order]
        got = _by_group(plan(shuffled, [extra[i] for i in order], block=8, budget=64), shuffled)
        assert got == base


def test_a_tree_over_the_budget_gets_a_pass_of_its_own() -> None:
    prefixes = [tuple(range(50)), (1, 2), (3, 4)]
    packs = plan(prefixes, [0, 0, 0], block=64, budget=16)
    assert [[t.group for t in p.trees] for p in packs] == [[0], [1, 2]]
    one = plan(prefixes, [0, 0, 0], block=64, budget=1 << 20)
    assert len(one) == 1 and [t.group for t in one[0].trees] == [0, 1, 2]
