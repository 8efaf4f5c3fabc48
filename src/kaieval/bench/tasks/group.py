"""A whole benchmark: its subsets run as one task, scored per subset and as a group.

lm-eval runs KMMLU as 45 subject tasks and reports each subject and the group
(``weight_by_size``: the mean over every document). ``GroupTask`` does the same
behind the one ``Task`` protocol the engine knows: its documents are the subsets'
documents (ids ``subset/doc``), each built and scored by its own subset task, and
``aggregate`` reports the group's metrics under their plain names and each
subset's as ``metric:subset``. The weighting is stated in ``describe()``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from typing import Any, Literal

from kaieval.bench.api import Doc, DocRequests, DocScore, MetricSummary, OutputType, Response
from kaieval.bench.stats import summarize
from kaieval.bench.tasks.scoring import CORPUS_METRICS
from kaieval.bench.tasks.task import ConfiguredTask
from kaieval.errors import KaiError
from kaieval.hashing import sha256_json

Weighting = Literal["size", "mean"]


class GroupTask:
    """Implements ``kaieval.bench.api.Task`` over the subset tasks of one benchmark."""

    def __init__(self, name: str, subsets: Sequence[tuple[str, ConfiguredTask]],
                 weighting: Weighting = "size") -> None:
        if not subsets:
            raise KaiError(f"task {name}: no subsets")
        self.name = name
        self.subsets = list(subsets)
        self.weighting: Weighting = weighting
        first = self.subsets[0][1]
        self.output_type: OutputType = first.output_type
        self.metrics: tuple[str, ...] = first.metrics
        self.cfg = first.cfg  # settings shared by every subset (shots, generation, metrics)
        self._by_id: dict[str, tuple[ConfiguredTask, Doc]] = {}
        self._docs: dict[int | None, list[Doc]] = {}

    def task_hash(self) -> str:
        return sha256_json({"group": self.name, "weighting": self.weighting,
                            "subsets": [[n, t.task_hash()] for n, t in self.subsets]})

    def dataset_hashes(self) -> dict[str, str]:
        return {f"{n}:{k}": v for n, t in self.subsets for k, v in t.dataset_hashes().items()}

    def describe(self) -> dict[str, Any]:
        return {"task": self.name, "group": True, "weighting": self.weighting,
                "subsets": [t.describe() for _, t in self.subsets]}

    def protocol(self, num_fewshot: int | None = None) -> dict[str, Any] | None:
        return self.subsets[0][1].protocol(num_fewshot)

    def docs(self, limit: int | None = None) -> list[Doc]:
        """Every subset's documents in subset order; ``limit`` applies per subset (lm-eval)."""
        if limit not in self._docs:
            out = []
            for sub, task in self.subsets:
                mine = task.all_docs()
                for doc in mine if limit is None else mine[:limit]:
                    gid = f"{sub}/{doc.doc_id}"
                    self._by_id[gid] = (task, doc)
                    out.append(Doc(doc_id=gid, fields=doc.fields))
            if not out:
                raise KaiError(f"task {self.name}: no subset has documents")
            self._docs[limit] = out
        return self._docs[limit]

    def _owner(self, doc_id: str) -> tuple[ConfiguredTask, Doc]:
        if not self._by_id:
            self.docs()
        found = self._by_id.get(doc_id)
        if found is None:
            raise KaiError(f"doc {doc_id!r} is not one of task {self.name}'s documents")
        return found

    def build(self, doc: Doc, num_fewshot: int | None = None) -> list[DocRequests]:
        task, own = self._owner(doc.doc_id)
        return [replace(b, doc=doc) for b in task.build(own, num_fewshot)]

    def score(self, built: Sequence[DocRequests], responses: Sequence[Sequence[Response]]
              ) -> DocScore:
        task, _ = self._owner(built[0].doc.doc_id)
        return task.score(built, responses)

    def subset_of(self, doc_id: str) -> str:
        return doc_id.split("/", 1)[0]

    def aggregate(self, scores: Sequence[DocScore]) -> dict[str, MetricSummary]:
        """Each subset's metrics as ``metric:subset``, then the group's under plain names."""
        per: dict[str, list[DocScore]] = {}
        for s in scores:
            per.setdefault(self.subset_of(s.doc_id), []).append(s)
        out: dict[str, MetricSummary] = {}
        sub_results: list[tuple[int, dict[str, MetricSummary]]] = []
        for name, task in self.subsets:
            mine = per.get(name)
            if not mine:
                continue
            res = task.aggregate(mine)
            sub_results.append((len(mine), res))
            out.update({f"{m}:{name}": v for m, v in res.items()})
        group: dict[str, MetricSummary] = {}
        for metric in self.metrics:
            if self.weighting == "size" and metric not in CORPUS_METRICS and all(
                    metric in s.metrics for s in scores):
                group[metric] = summarize([s.metrics[metric] for s in scores],
                                          seed=self.subsets[0][1].bootstrap_seed)
            else:
                group[metric] = _combine([(n, r[metric]) for n, r in sub_results],
                                         self.weighting)
        return {**group, **out}


def _combine(parts: Sequence[tuple[int, MetricSummary]], weighting: Weighting) -> MetricSummary:
    """Weighted mean of subset values (size: by documents; mean: equal), pooled stderr."""
    if not parts:
        raise KaiError("no subset scores to combine")
    weights = [float(n) if weighting == "size" else 1.0 for n, _ in parts]
    total = sum(weights)
    value = sum(w * m.value for w, (_, m) in zip(weights, parts, strict=True)) / total
    var = sum((w / total) ** 2 * m.stderr ** 2 for w, (_, m) in zip(weights, parts, strict=True)
              if not math.isnan(m.stderr))
    stderr = math.sqrt(var)
    return MetricSummary(value=value, stderr=stderr, ci_low=value - 1.96 * stderr,
                         ci_high=value + 1.96 * stderr, n=sum(n for n, _ in parts))
