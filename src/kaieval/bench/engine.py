"""The engine: task + backend -> per-document scores, through a persistent request cache.

Flow for one task: build every document's requests, deduplicate identical
requests (a few-shot prompt repeated across CircularEval rotations or tasks
costs once), look them up in the request cache, send only the misses to the
backend -- grouped by context and longest first, in chunks that are committed to
the cache as soon as they return -- then let the task score and aggregate.

Because answers are committed chunk by chunk, a run killed with ``kill -9``
restarts where it stopped: the rerun finds every finished request in the cache
and computes only the rest, and since answers do not depend on how requests
were batched, the final scores equal an uninterrupted run's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.progress import Task as RichTask
from rich.text import Text

from kaieval.bench.api import (
    Backend,
    Doc,
    DocRequests,
    DocScore,
    GenerationRequest,
    LoglikelihoodRequest,
    MetricSummary,
    Request,
    Response,
    Task,
)
from kaieval.bench.cache import ResponseCache, request_key, response_matches
from kaieval.bench.collate import Collator
from kaieval.errors import KaiError
from kaieval.io import atomic_write_text

Advance = Callable[[int], None]


@dataclass(frozen=True)
class AnswerStats:
    """How many requests a task needed, how many were unique, cached, computed."""

    n_requests: int
    n_unique: int
    cache_hits: int
    computed: int


@dataclass(frozen=True)
class TaskOutcome:
    """Everything a run record needs about one task."""

    task: Task
    docs: tuple[Doc, ...]
    scores: tuple[DocScore, ...]
    metrics: dict[str, MetricSummary]
    stats: AnswerStats
    wall_s: float
    built: tuple[tuple[DocRequests, ...], ...] = ()  # per doc, the requests it sent


class _RateColumn(ProgressColumn):
    """Items per second (rich's own speed column speaks bytes)."""

    def render(self, task: RichTask) -> Text:
        speed = task.finished_speed or task.speed
        shown = "-- it/s" if speed is None else f"{speed:.1f} it/s"
        return Text(shown, style="progress.data.speed")


@contextmanager
def progress_bar(label: str, total: int, enabled: bool) -> Iterator[Advance]:
    """A rich bar with done/total, items/s and ETA; a no-op when disabled or nothing to do."""
    if not enabled or total == 0:
        yield lambda _n: None
        return
    bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                   _RateColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                   console=Console(stderr=True))
    with bar:
        handle = bar.add_task(label, total=total)
        yield lambda n: bar.advance(handle, n)


def _call_backend(backend: Backend, requests: Sequence[Request]) -> list[Response]:
    """One homogeneous chunk to the backend, with its answer count checked."""
    answers: Sequence[Response]
    if isinstance(requests[0], LoglikelihoodRequest):
        answers = backend.loglikelihood(
            [r for r in requests if isinstance(r, LoglikelihoodRequest)])
    else:
        answers = backend.generate([r for r in requests if isinstance(r, GenerationRequest)])
    if len(answers) != len(requests):
        raise KaiError(f"backend {backend.name} returned {len(answers)} answers for "
                       f"{len(requests)} requests")
    return list(answers)


def answer_requests(backend: Backend, requests: Sequence[Request], *,
                    cache: ResponseCache | None = None, contexts_per_chunk: int = 16,
                    progress: bool = True, label: str = "requests"
                    ) -> tuple[list[Response], AnswerStats]:
    """Answer ``requests`` (duplicates allowed) from the cache first, the backend for the rest.

    Misses are grouped by (type, context) so all choices of a question travel
    together (the backend's shared-prefix scoring needs them in one call),
    ordered longest first, and committed to the cache one chunk at a time.
    """
    unique = list(dict.fromkeys(requests))
    fingerprint = backend.fingerprint() if cache is not None else ""
    keys = [request_key(fingerprint, r) for r in unique] if cache is not None else []
    found: dict[Request, Response] = {}
    if cache is not None:
        hits = cache.get_many(keys)
        for request, key in zip(unique, keys, strict=True):
            hit = hits.get(key)
            if hit is not None and response_matches(request, hit):
                found[request] = hit
    cache_hits = len(found)
    missing = [r for r in unique if r not in found]
    key_of = dict(zip(unique, keys, strict=True)) if cache is not None else {}
    collator: Collator[Request] = Collator(
        missing, key=lambda r: (type(r).__name__, r.context),
        length=lambda r: len(r.context) + len(getattr(r, "continuation", "")))
    with progress_bar(label, len(missing), progress) as advance:
        for groups in collator.batches(max(1, contexts_per_chunk)):
            for kind in (LoglikelihoodRequest, GenerationRequest):
                chunk = [r for g in groups for r in g.items if isinstance(r, kind)]
                if not chunk:
                    continue
                answers = _call_backend(backend, chunk)
                found.update(zip(chunk, answers, strict=True))
                if cache is not None:
                    cache.put_many(fingerprint, [(key_of[r], a) for r, a in
                                                 zip(chunk, answers, strict=True)])
                advance(len(chunk))
    stats = AnswerStats(n_requests=len(requests), n_unique=len(unique), cache_hits=cache_hits,
                        computed=len(missing))
    return [found[r] for r in requests], stats


def run_task(task: Task, backend: Backend, *, num_fewshot: int | None = None,
             limit: int | None = None, cache: ResponseCache | None = None,
             contexts_per_chunk: int = 16, progress: bool = True) -> TaskOutcome:
    """Build, answer (cache first), score and aggregate one task."""
    start = time.perf_counter()
    docs = task.docs(limit)
    if not docs:
        raise KaiError(f"task {task.name} has no documents to evaluate")
    built: list[list[DocRequests]] = [task.build(doc, num_fewshot) for doc in docs]
    flat: list[Request] = [req for per_doc in built for dr in per_doc for req in dr.requests]
    answers, stats = answer_requests(backend, flat, cache=cache,
                                     contexts_per_chunk=contexts_per_chunk,
                                     progress=progress, label=task.name)
    scores: list[DocScore] = []
    pos = 0
    for per_doc in built:
        responses: list[list[Response]] = []
        for dr in per_doc:
            responses.append(answers[pos:pos + len(dr.requests)])
            pos += len(dr.requests)
        scores.append(task.score(per_doc, responses))
    metrics = task.aggregate(scores)
    return TaskOutcome(task=task, docs=tuple(docs), scores=tuple(scores), metrics=metrics,
                       stats=stats, wall_s=time.perf_counter() - start,
                       built=tuple(tuple(b) for b in built))


def request_record(request: Request) -> dict[str, Any]:
    """A request exactly as sent: context and continuation, or prompt and settings."""
    if isinstance(request, LoglikelihoodRequest):
        return {"type": "loglikelihood", "context": request.context,
                "continuation": request.continuation}
    return {"type": "generate_until", "context": request.context, "until": list(request.stop),
            "max_gen_toks": request.max_tokens, "do_sample": False, "temperature": 0.0,
            "chat": request.chat}


def sample_record(task_name: str, score: DocScore,
                  built: Sequence[DocRequests] = ()) -> dict[str, Any]:
    """One line of the per-sample log: scores, and every request the doc sent, verbatim.

    ``requests`` lets anyone compare kaieval with another harness item by item (lm-eval's
    ``--log_samples`` writes the same pairs as ``arguments``); under CircularEval each
    rotation's requests are listed in rotation order.
    """
    record: dict[str, Any] = {
        "task": task_name, "doc_id": score.doc_id, "prompt_hash": score.prompt_hash,
        "loglikelihoods": list(score.loglikelihoods), "prediction": score.prediction,
        "target": score.target, "generation": score.generation,
        "metrics": dict(score.metrics)}
    if score.item_values:
        record["item_values"] = {k: list(v) for k, v in score.item_values.items()}
    if built:
        record["requests"] = [request_record(r) for b in built for r in b.requests]
    return record


def write_sample_log(path: Path, outcomes: Sequence[TaskOutcome]) -> None:
    """JSONL, one line per document, written atomically (temp file then rename)."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, "".join(
            json.dumps(sample_record(outcome.task.name, score, built), ensure_ascii=False) + "\n"
            for outcome in outcomes
            for score, built in zip(outcome.scores, outcome.built or [()] * len(outcome.scores),
                                    strict=True)))
    except OSError as exc:
        raise KaiError(f"cannot write the sample log: {exc.strerror}", where=str(path)) from exc
