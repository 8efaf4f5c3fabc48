"""One engine per team model on Ray: loaded once, answering every task shard of its job.

Why it looks like this:

* A benchmark job is split into one shard per task so that its answers are committed
  task by task (a crash loses one task's work, not the job's). When each shard was a
  Ray task of its own, each loaded the model, and the job loaded it once more to score
  from the cache: 21 loads of a 500B model for a 20-task stage, minutes of idle GPUs
  each. Here one Ray actor per benchmark job (one team model, one set of backend
  settings) loads the backend on first need and answers shard after shard, then runs
  the job itself through :class:`~kaieval.pipeline.measure.JobRunner`, which finds every
  answer in the shared request cache: one load per model. A job already stored is not
  given an engine at all (the driver checks first), so a rerun loads nothing.
* The backend is the one ``bench.run.evaluate`` builds: the actor hands ``evaluate`` a
  ``builder`` (:class:`OneLoad`) that calls :func:`~kaieval.bench.run.make_backend` once
  and returns the same object for the same arguments afterwards -- the same code path as
  the local executor, so the records stay equal.
* An actor that dies is restarted by Ray and its unfinished calls are retried
  (``max_restarts`` / ``max_task_retries``, set by the driver); the restarted actor loads
  the model again (the one extra load a crash costs). Answers are stored
  ``ON CONFLICT DO NOTHING`` and the job's records by their natural key, so a retried
  shard or job duplicates nothing.
* GPU placement (:func:`placement`): a vLLM engine asks for its tensor-parallel size in
  GPUs, as a placement group of one ``{GPU: 1, CPU: 1}`` bundle per GPU with
  ``STRICT_PACK`` (all on one node, where NVLink is); the actor sits in bundle 0 and,
  for TP > 1, vLLM's own Ray workers take the group's GPUs
  (``distributed_executor_backend="ray"``, which finds the actor's placement group).
  hf and endpoint engines ask for one CPU, as the shard tasks did.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from kaieval.errors import KaiError
from kaieval.pipeline.engines import engine_version
from kaieval.pipeline.measure import JobOutcome, JobRunner
from kaieval.pipeline.plan import ENGINES, Job, StageInputs

WHERE = "--executor"
STRATEGY = "STRICT_PACK"  # one model's GPUs on one node (tensor parallelism needs NVLink)


def versions() -> dict[str, str]:
    """Every engine's code version: a worker with other code than the driver refuses."""
    return {e: engine_version(e) for e in ENGINES}


def check_versions(expected: dict[str, str]) -> None:
    if versions() != expected:
        raise KaiError("this worker runs different kaieval code than the driver (engine "
                       "versions differ); install the same version on every node",
                       where=WHERE)


@dataclass(frozen=True)
class Placement:
    """What Ray is asked for one model's engine.

    ``gpus``: GPUs one model copy needs (vLLM's tensor-parallel size; 0 on CPU);
    ``bundles``: the placement group, one bundle per GPU (empty: no group);
    ``actor``: the actor's own resources (inside bundle 0 when there is a group);
    ``engine``: extra backend options that change where the model runs, not its answers.
    """

    gpus: int
    bundles: tuple[dict[str, float], ...] = ()
    actor: dict[str, float] = field(default_factory=lambda: {"num_cpus": 1})
    engine: dict[str, Any] = field(default_factory=dict)
    strategy: str = STRATEGY


def placement(backend: str, tensor_parallel_size: int) -> Placement:
    """The resources of one engine for ``backend`` (vllm: ``tensor_parallel_size`` GPUs)."""
    if backend != "vllm":
        return Placement(gpus=0)
    tp = tensor_parallel_size
    bundles = tuple({"GPU": 1.0, "CPU": 1.0} for _ in range(tp))
    if tp == 1:  # vLLM runs in the actor's own process, on the actor's GPU
        return Placement(gpus=1, bundles=bundles, actor={"num_cpus": 1, "num_gpus": 1})
    # the actor drives; vLLM starts one Ray worker per GPU bundle of the actor's group
    return Placement(gpus=tp, bundles=bundles, actor={"num_cpus": 1, "num_gpus": 0},
                     engine={"distributed_executor_backend": "ray"})


class OneLoad:
    """``make_backend``, once: the first call loads the model, later calls with the same
    arguments get the same backend. Other arguments would be another model or other
    settings: refused, not silently answered by the wrong engine."""

    def __init__(self, **extra: Any) -> None:
        self.extra = extra
        self.backend: Any = None
        self.args: tuple[Any, ...] = ()

    def __call__(self, name: str, model: str, **kwargs: Any) -> Any:
        from kaieval.bench.run import make_backend

        args = (name, model, sorted(kwargs.items()))
        if self.backend is None:
            self.backend = make_backend(name, model, **kwargs, **self.extra)
            self.args = args
        elif args != self.args:
            raise KaiError(f"this engine holds {self.args[1]} ({self.args[0]}); asked for "
                           f"{model} ({name}) with other settings", where=WHERE)
        return self.backend

    def close(self) -> None:
        close = getattr(self.backend, "close", None)
        if callable(close):  # vLLM's engine process stops now, not at interpreter exit
            close()
        self.backend = None


def run_job(inputs: StageInputs, job: Job, store_url: str, actor: str,
            executor: dict[str, Any], hook: Any, builder: OneLoad | None = None
            ) -> JobOutcome:
    """One whole job against the store, as the local executor runs it; ``hook`` is
    called with ``("start", job)`` before and ``("stored", job)`` after."""
    from kaieval.store import Store

    out = JobOutcome(job)
    with Store(store_url) as store:
        runner = JobRunner(inputs, store, actor, None, executor=executor, builder=builder)
        if hook is not None:
            hook("start", job)
        runner.run(job, out)
        if hook is not None:
            hook("stored", job)
    return out


class BenchEngine:
    """The Ray actor of one benchmark job: its shards, then the job, with one load.

    Wrapped by ``ray.remote`` on the driver (``ray`` is imported only there)."""

    def __init__(self, expected_versions: dict[str, str], engine: dict[str, Any]) -> None:
        self.expected = expected_versions
        self.builder = OneLoad(**engine)

    def answer(self, inputs: StageInputs, job: Job, store_url: str, shard: str,
               hook: Any) -> JobOutcome:
        """Answer one task shard into the shared request cache (nothing when the job is
        stored already); ``hook("answered", job)`` after its answers are committed."""
        from kaieval.pipeline.engines import run_bench
        from kaieval.store import Store

        check_versions(self.expected)
        out = JobOutcome(job)
        t0 = time.perf_counter()
        with Store(store_url) as store:
            runner = JobRunner(inputs, store, "", None)
            try:
                if runner.done(job):
                    out.status = "cached"
                else:
                    run_bench(inputs, job, only=shard, builder=self.builder)
                    out.status = "measured"
            except Exception as e:  # the job itself meets the same failure and stores it
                out.status, out.reason = "not_measured", f"{type(e).__name__}: {e}"
        if hook is not None:
            hook("answered", job)
        out.seconds = time.perf_counter() - t0
        return out

    def run_job(self, inputs: StageInputs, job: Job, store_url: str, actor: str,
                executor: dict[str, Any], hook: Any, *_after: Any) -> JobOutcome:
        """The job itself, after its shards (``_after``): every answer is in the cache."""
        check_versions(self.expected)
        t0 = time.perf_counter()
        out = run_job(inputs, job, store_url, actor, executor, hook, self.builder)
        out.seconds = time.perf_counter() - t0
        return out

    def close(self) -> None:
        self.builder.close()
