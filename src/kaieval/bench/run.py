"""``evaluate``: load tasks and a backend, run the engine, return a versioned run record.

The record (schema ``kaieval/eval-run/v1``) carries what is needed to trust or
reproduce a number: code and package versions, the backend's settings and
fingerprint, dtype, batch size, chat-template hash, seeds, and per task its
definition hash, dataset hashes, document count, metrics with uncertainty and
the per-document primary metric. ``to_benchmark_results`` turns it into the
store's ``BenchmarkResult`` records for the stage engine.
"""

from __future__ import annotations

import json
import os
import platform
import random
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict

from kaieval.bench.api import Backend, MetricSummary, Task
from kaieval.bench.backends import get_backend
from kaieval.bench.cache import RequestCache, ResponseCache
from kaieval.bench.engine import TaskOutcome, run_task, write_sample_log
from kaieval.errors import KaiError
from kaieval.version import code_version

if TYPE_CHECKING:  # the store's records pull in the programme spec (~0.3 s): not for kai eval
    from kaieval.records import BenchmarkResult

SCHEMA = "kaieval/eval-run/v1"
CACHE_FILE = "requests.sqlite"
LOAD_LOG_ENV = "KAI_LOAD_LOG"  # a file: one JSON line per model load (see _note_load)


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Metric(_Frozen):
    """A ``MetricSummary`` as a record field."""

    value: float
    stderr: float
    ci_low: float
    ci_high: float
    n: int

    @classmethod
    def of(cls, summary: MetricSummary) -> Metric:
        return cls(value=summary.value, stderr=summary.stderr, ci_low=summary.ci_low,
                   ci_high=summary.ci_high, n=summary.n)


class TaskRun(_Frozen):
    name: str
    output_type: str
    task_hash: str
    dataset_hashes: dict[str, str]
    num_fewshot: int | None
    n_docs: int
    primary_metric: str
    metrics: dict[str, Metric]
    doc_ids: tuple[str, ...]
    item_scores: tuple[float, ...]  # per document, primary metric, in doc_ids order
    n_requests: int
    n_unique_requests: int
    cache_hits: int
    computed: int
    wall_s: float
    # harness, version, variant and shots the score was produced with (see
    # ConfiguredTask.protocol); None for a task without a stated reference
    protocol: dict[str, Any] | None = None


class EvalRun(_Frozen):
    """One ``kai eval`` run, as recorded (JSON via ``model_dump_json``)."""

    schema_version: Literal["kaieval/eval-run/v1"] = "kaieval/eval-run/v1"
    created_at: str
    code_version: str
    packages: dict[str, str]
    python: str
    model: str
    backend: dict[str, Any]
    fingerprint: str
    dtype: str | None
    batch_size: int
    chat_template: bool
    chat_template_hash: str | None
    seeds: dict[str, int]
    limit: int | None
    cache_path: str | None
    tasks: tuple[TaskRun, ...]
    wall_s: float

    def summary_lines(self) -> list[str]:
        """One line per (task, metric): value, standard error, 95% interval, n; marked
        approximate when log-likelihoods were split by text offsets."""
        mark = " (approximate: split by text offsets)" if self.backend.get("approximate") \
            else ""
        return [f"{tr.name:24} {metric:14} {m.value:.4f} ± {m.stderr:.4f} "
                f"(95% CI {m.ci_low:.4f}–{m.ci_high:.4f}, n={m.n}){mark}"
                for tr in self.tasks for metric, m in tr.metrics.items()]


def package_versions() -> dict[str, str]:
    """Versions of the packages that can change a number (absent ones are omitted)."""
    out: dict[str, str] = {}
    for name in ("kaieval", "torch", "transformers", "tokenizers", "safetensors", "numpy",
                 "vllm", "httpx"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    try:
        import numpy as np
        np.random.seed(seed)
    except ImportError:  # pragma: no cover - numpy is a core dependency
        pass


def _task_run(outcome: TaskOutcome, num_fewshot: int | None) -> TaskRun:
    task = outcome.task
    if not task.metrics:
        raise KaiError(f"task {task.name} declares no metrics")
    primary = task.metrics[0]
    items = []
    for score in outcome.scores:
        if primary not in score.metrics:
            raise KaiError(f"task {task.name}: document {score.doc_id} has no {primary!r} value")
        items.append(float(score.metrics[primary]))
    return TaskRun(
        name=task.name, output_type=task.output_type, task_hash=task.task_hash(),
        dataset_hashes=dict(task.dataset_hashes()), num_fewshot=num_fewshot,
        n_docs=len(outcome.scores), primary_metric=primary,
        metrics={k: Metric.of(v) for k, v in outcome.metrics.items()},
        doc_ids=tuple(s.doc_id for s in outcome.scores), item_scores=tuple(items),
        n_requests=outcome.stats.n_requests, n_unique_requests=outcome.stats.n_unique,
        cache_hits=outcome.stats.cache_hits, computed=outcome.stats.computed,
        wall_s=round(outcome.wall_s, 3), protocol=_protocol(task, num_fewshot))


def _protocol(task: Task, num_fewshot: int | None) -> dict[str, Any] | None:
    method = getattr(task, "protocol", None)
    return method(num_fewshot) if callable(method) else None


def load_tasks(refs: Sequence[str]) -> list[Task]:
    """Catalogue names or task YAML paths -> loaded tasks (KaiError on the first bad one)."""
    from kaieval.bench.tasks import load_task

    return [load_task(ref) for ref in refs]


def evaluate(model: str, tasks: Sequence[str | Task], *, backend: str = "hf",
             num_fewshot: int | None = None, batch_size: int = 8, limit: int | None = None,
             cache_dir: Path | None = None, log_samples: Path | None = None,
             chat_template: bool = False, seed: int = 1234, progress: bool = True,
             cache_url: str | None = None, builder: Callable[..., Backend] | None = None,
             **backend_kwargs: Any) -> EvalRun:
    """Run ``tasks`` on ``model`` and return the run record.

    ``model`` is a local directory (hf, vllm) or a base URL (openai, with
    ``model_name=...`` among ``backend_kwargs``). ``tasks`` are catalogue names,
    task YAML paths or already loaded ``Task`` objects. With ``cache_dir`` every
    answer is kept in ``cache_dir/requests.sqlite``: a rerun (after a crash, or
    with another metric) computes only what is missing. ``cache_url`` (a database
    URL) keeps them in that database instead, shared by every machine that reaches it
    (the Ray executor's workers). ``builder`` replaces :func:`make_backend` (same
    arguments): the Ray executor's engine actor passes one that loads the model on its
    first call and hands the same backend to every later shard, so a stage loads each
    model once instead of once per task.
    """
    start = time.perf_counter()
    if limit is not None and limit < 1:
        raise KaiError(f"limit must be >= 1, got {limit}", where="--limit")
    if num_fewshot is not None and num_fewshot < 0:
        raise KaiError(f"num_fewshot must be >= 0, got {num_fewshot}", where="--num-fewshot")
    if not tasks:
        raise KaiError("no tasks given", where="--tasks")
    _seed_everything(seed)
    objects = iter(load_tasks([t for t in tasks if isinstance(t, str)]))
    task_objs: list[Task] = [next(objects) if isinstance(t, str) else t for t in tasks]
    if any(getattr(getattr(t, "cfg", None), "instruction_checks", "") == "lm-eval"
           for t in task_objs):  # before the model generates, not after
        from kaieval.bench.ifeval_reference import require

        require()
    be = (builder or make_backend)(backend, model, batch_size=batch_size,
                                   chat_template=chat_template, seed=seed, **backend_kwargs)
    cache = _open_cache(cache_dir, cache_url)
    outcomes: list[TaskOutcome] = []
    try:
        for task in task_objs:
            outcomes.append(run_task(task, be, num_fewshot=num_fewshot, limit=limit,
                                     cache=cache,
                                     contexts_per_chunk=_contexts_per_chunk(be, batch_size),
                                     progress=progress))
    finally:
        if cache is not None:
            cache.close()
    if log_samples is not None:
        write_sample_log(Path(log_samples), outcomes)
    described = be.describe()
    return EvalRun(
        created_at=datetime.now(UTC).isoformat(timespec="seconds"),
        code_version=code_version(), packages=package_versions(),
        python=platform.python_version(), model=model, backend=described,
        fingerprint=be.fingerprint(), dtype=described.get("dtype"), batch_size=batch_size,
        chat_template=chat_template, chat_template_hash=described.get("chat_template_hash"),
        seeds={"seed": seed}, limit=limit,
        cache_path=_cache_path(cache_dir, cache_url),
        tasks=tuple(_task_run(o, num_fewshot) for o in outcomes),
        wall_s=round(time.perf_counter() - start, 3))


def _open_cache(cache_dir: Path | None, cache_url: str | None) -> ResponseCache | None:
    """The database cache when a URL is given, else the SQLite file in ``cache_dir``."""
    if cache_url is not None:
        from kaieval.bench.cache_db import DbRequestCache

        return DbRequestCache(cache_url)
    return RequestCache(Path(cache_dir) / CACHE_FILE) if cache_dir is not None else None


def _cache_path(cache_dir: Path | None, cache_url: str | None) -> str | None:
    """Where the answers were kept, as recorded (a database URL without its password)."""
    if cache_url is not None:
        from kaieval.store.database import masked

        return masked(cache_url)
    return str(Path(cache_dir) / CACHE_FILE) if cache_dir is not None else None


def _contexts_per_chunk(backend: Any, batch_size: int) -> int:
    """Contexts per backend call: the backend's own fixed number if it packs by content
    (so the packs, and hence the rounding, cannot depend on ``--batch-size``), else at
    least the batch size."""
    fixed = getattr(backend, "contexts_per_call", None)
    return int(fixed) if fixed else max(batch_size, 16)


def make_backend(name: str, model: str, *, batch_size: int = 8, chat_template: bool = False,
                 seed: int = 1234, **kwargs: Any) -> Backend:
    """Map ``evaluate``'s common options onto each backend's constructor: the one place a
    model is loaded, so that ``$KAI_LOAD_LOG`` sees every load (:func:`_note_load`)."""
    t0 = time.perf_counter()
    if name in ("hf", "vllm"):
        be = get_backend(name, path=model, batch_size=batch_size, chat_template=chat_template,
                         **kwargs)
    elif name == "openai":
        if "model_name" in kwargs:
            kwargs["model"] = kwargs.pop("model_name")
        if "model" not in kwargs:
            raise KaiError("the openai backend needs the served model's name", where="--model-name")
        be = get_backend(name, base_url=model, chat=chat_template, **kwargs)
    else:
        be = get_backend(name, **kwargs)
    _note_load(name, model, time.perf_counter() - t0)
    return be


def _note_load(backend: str, model: str, seconds: float) -> None:
    """With ``$KAI_LOAD_LOG`` set, append one JSON line per model load (process, host,
    backend, model, seconds) to that file: at 500B parameters a load costs minutes of
    idle GPUs, so a programme office wants to see how many a stage paid for (and the Ray
    tests count them). One short ``O_APPEND`` write per line: concurrent workers on one
    file system do not interleave."""
    path = os.environ.get(LOAD_LOG_ENV)
    if not path:
        return
    line = json.dumps({"pid": os.getpid(), "host": platform.node(), "backend": backend,
                       "model": model, "seconds": round(seconds, 3)}) + "\n"
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def to_benchmark_results(run: EvalRun, *, stage_id: str, team_id: str,
                         role: Literal["candidate", "target"] = "candidate"
                         ) -> list[BenchmarkResult]:
    """One ``BenchmarkResult`` per task: primary metric, per-document scores, stderr."""
    from kaieval.records import BenchmarkResult

    results = []
    for task in run.tasks:
        metric = task.metrics.get(task.primary_metric)
        if metric is None:
            raise KaiError(f"task {task.name}: primary metric {task.primary_metric!r} missing")
        results.append(BenchmarkResult(**_record_base(run, task, stage_id, team_id),
                                       benchmark_id=task.name, task=task.name, role=role,
                                       model_ref=run.model, score=metric.value,
                                       item_scores=task.item_scores, stderr=metric.stderr))
    return results


def _record_base(run: EvalRun, task: TaskRun, stage_id: str, team_id: str) -> dict[str, Any]:
    """The ``Record`` provenance fields for one task's result."""
    return {
        "stage_id": stage_id, "team_id": team_id, "source": "measured",
        "code_version": run.code_version,
        "input_hashes": {"task": task.task_hash, "model": run.fingerprint,
                         **{f"data:{k}": v for k, v in task.dataset_hashes.items()}},
        "settings": {"backend": run.backend.get("backend"), "dtype": run.dtype,
                     "batch_size": run.batch_size, "num_fewshot": task.num_fewshot,
                     "chat_template_hash": run.chat_template_hash, "n_docs": task.n_docs,
                     "metric": task.primary_metric, "seeds": dict(run.seeds),
                     **({"approximate": "log-likelihoods split by text offsets"}
                        if run.backend.get("approximate") else {}),
                     **({"protocol": task.protocol} if task.protocol is not None else {})},
    }
