"""Length-sorted grouping and batching of requests (after lm-eval's ``Collator``).

Two ideas, one small class:

* **group** requests that share a key (the context): the group is computed once
  and every member is answered from it -- this is what makes shared-prefix
  scoring cheap;
* **sort** groups longest first, so the first batch is the largest (an
  out-of-memory error shows up at once, not at 95 %) and each batch holds
  similar lengths, which keeps padding small.

The order is a pure function of the inputs (ties broken by first appearance),
so the same requests always form the same batches, and ``restore`` puts the
answers back in the caller's order.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterator, Sequence
from dataclasses import dataclass
from typing import Generic, TypeVar

T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class Group(Generic[T]):
    """Requests sharing one key; ``indices`` are their positions in the input."""

    key: Hashable
    indices: tuple[int, ...]
    items: tuple[T, ...]


class Collator(Generic[T]):
    """Group items by ``key``, order groups by descending ``length``, cut into batches."""

    def __init__(self, items: Sequence[T], *, key: Callable[[T], Hashable],
                 length: Callable[[T], int]) -> None:
        self._n = len(items)
        by_key: dict[Hashable, list[int]] = {}
        for i, item in enumerate(items):
            by_key.setdefault(key(item), []).append(i)
        groups = [Group(k, tuple(ix), tuple(items[i] for i in ix)) for k, ix in by_key.items()]
        # stable sort: equal lengths keep first-appearance order -> deterministic batches
        self.groups: list[Group[T]] = sorted(groups, key=lambda g: -max(length(x) for x in g.items))

    def batches(self, groups_per_batch: int) -> Iterator[list[Group[T]]]:
        """Consecutive runs of at most ``groups_per_batch`` groups (longest first)."""
        size = max(1, groups_per_batch)
        for start in range(0, len(self.groups), size):
            yield self.groups[start:start + size]

    def restore(self, answers: dict[int, R]) -> list[R]:
        """Answers keyed by input position -> list in input order (every position required)."""
        missing = [i for i in range(self._n) if i not in answers]
        if missing:
            raise RuntimeError(f"collator: no answer for request positions {missing[:5]}")
        return [answers[i] for i in range(self._n)]
