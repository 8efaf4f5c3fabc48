"""Measuring a stage on a Ray cluster: the same jobs, spread over workers.

Why it looks like this:

* The unit of work is a (team x engine x task shard) job. A benchmark job still to be
  measured gets an engine actor (:mod:`kaieval.pipeline.ray_engine`): one per team
  model and backend settings, placed where its GPUs are, loading the model once; it
  answers the job's task shards one after the other, committing each task's answers to
  the request cache in the shared store (``bench.cache_db``), then runs the job itself
  exactly as the local executor runs it (:class:`~kaieval.pipeline.measure.JobRunner`),
  which finds every answer in that cache, scores and stores its records in one
  transaction. Every other job (and a benchmark job already stored) is one Ray task.
  Same code, same inputs: the records are the local executor's, by construction, and
  ``tests/pipeline/test_pipeline_ray.py`` checks it.
* Nothing of Ray's decides a number. Ray schedules and retries (``max_retries``:
  a worker killed mid-job has its task run again elsewhere; ``max_restarts`` and
  ``max_task_retries``: a dead engine actor is restarted and its calls rerun); the store
  makes that
  safe: answers are written ``ON CONFLICT DO NOTHING``, a job's records are keyed
  by their natural key and compared by content hash, and a job whose key is stored
  is not run again -- so a retry, or a rerun after a crash, duplicates nothing and
  redoes no finished job.
* The store must be reachable from every worker: PostgreSQL for a cluster of
  several machines (a SQLite file works only when every worker is on this one).
  Model folders, dossiers and the registry are read by path, so they must lie on a
  file system every worker sees at the same path.
* ``ray`` is optional (the ``ray`` extra) and imported only here, inside the call.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from kaieval.errors import KaiError
from kaieval.pipeline.engines import bench_settings, bench_shards
from kaieval.pipeline.measure import JobOutcome, JobRunner, Listener, StageMeasurement
from kaieval.pipeline.plan import Job, Plan, StageInputs
from kaieval.pipeline.ray_engine import (
    BenchEngine,
    Placement,
    check_versions,
    placement,
    run_job,
    versions,
)
from kaieval.records import EngineRun, Record

RETRIES = 3  # Ray reruns a task whose worker died this many times before giving up
OBJECT_STORE_BYTES = 100 * 1024 * 1024  # a local Ray's object store: the jobs pass little
CONNECT_TIMEOUT_S = 5.0
PLACEMENT_WAIT_S = 1800.0  # a GPU engine waits this long for its GPUs before giving up
CLOSE_WAIT_S = 60.0  # for a GPU engine to stop vLLM before its placement group goes
WHERE = "--executor"

# Called on the worker around each job: ("start", job) before it runs, ("stored", job)
# after its records are committed, and on a benchmark job's engine ("answered", job) after
# each task shard's answers are committed. Tests inject failures through it (a worker that
# kills itself once); it must be picklable (a module-level or nested function).
JobHook = Callable[[str, Job], None]


@dataclass(frozen=True)
class RayExecutor:
    """``--executor ray[:ADDRESS]``: a cluster's address, or ``None`` for a Ray started
    for this run on this machine (``$RAY_ADDRESS`` is used when set)."""

    address: str | None = None

    def describe(self) -> str:
        return f"ray ({self.address or 'local'})"


def parse_executor(text: str) -> RayExecutor | None:
    """``local`` -> ``None``; ``ray`` or ``ray:ADDRESS`` -> :class:`RayExecutor`.

    ADDRESS is ``auto`` (a cluster started on this machine), ``HOST:PORT`` (the head's
    GCS port, as ``ray start --head --port`` printed) or ``ray://HOST:PORT`` (Ray
    Client)."""
    text = text.strip()
    if text == "local":
        return None
    if text == "ray":
        return RayExecutor(os.environ.get("RAY_ADDRESS") or None)
    if not text.startswith("ray:"):
        raise KaiError(f"unknown executor {text!r}; use local, ray or ray:ADDRESS", where=WHERE)
    address = text[len("ray:"):]
    if address == "auto":
        return RayExecutor(address)
    hostport = address.removeprefix("ray://")
    host, sep, port = hostport.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise KaiError(f"bad Ray address {address!r}; expected HOST:PORT, ray://HOST:PORT or "
                       "auto", where=WHERE)
    return RayExecutor(address)


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail in seconds, in one line, when nothing listens at ``address`` (Ray itself
    would retry for a minute and then print a traceback)."""
    if address == "auto":
        return
    host, _, port = address.removeprefix("ray://").rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise KaiError(f"cannot reach a Ray cluster at {address}: {reason}",
                       where=WHERE) from None


def comparable_hashes(records: list[Record]) -> dict[str, str]:
    """What "equal records" means between executors: natural key -> content hash of
    every record (values, inputs' hashes, settings; not the creation time or the code
    version), with the executor's own entry left out of each ``EngineRun``'s settings
    -- the one place it is recorded, because it changes no number."""
    out: dict[str, str] = {}
    for r in records:
        if isinstance(r, EngineRun) and "executor" in r.settings:
            r = r.model_copy(update={"settings": {k: v for k, v in r.settings.items()
                                                  if k != "executor"}})
        out[r.natural_key()] = r.content_hash()
    return out


def _work(inputs: StageInputs, job: Job, store_url: str, actor: str,
          executor: dict[str, Any], versions: dict[str, str], hook: JobHook | None
          ) -> JobOutcome:
    """One whole job as a Ray task: every job but a benchmark job still to be measured
    (that one runs on its :class:`~kaieval.pipeline.ray_engine.BenchEngine`)."""
    check_versions(versions)
    t0 = time.perf_counter()
    out = run_job(inputs, job, store_url, actor, executor, hook)
    out.seconds = time.perf_counter() - t0
    return out


def _connect(executor: RayExecutor, workers: int) -> Any:
    try:
        import ray
    except ImportError:
        raise KaiError("the Ray executor needs the 'ray' package: pip install "
                       "'kaieval[ray]'", where=WHERE) from None
    import logging

    env = {k: v for k, v in os.environ.items() if k.startswith("KAI_")}
    options: dict[str, Any] = {"runtime_env": {"env_vars": env}, "include_dashboard": False,
                               "logging_level": logging.WARNING, "log_to_driver": False}
    if executor.address is None:
        options.update(num_cpus=workers, object_store_memory=OBJECT_STORE_BYTES)
    else:
        check_reachable(executor.address)
        options["address"] = executor.address
    try:
        ray.init(**options)
    except Exception as e:  # ConnectionError, RuntimeError, ValueError: all one line
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise KaiError(f"cannot start or join Ray ({executor.describe()}): {first}",
                       where=WHERE) from None
    return ray


def measure_stage_ray(inputs: StageInputs, plan: Plan, store_url: str, *, actor: str,
                      executor: RayExecutor, workers: int = 2,
                      listen: Listener | None = None, hook: JobHook | None = None,
                      placement_wait_s: float = PLACEMENT_WAIT_S) -> StageMeasurement:
    """Run ``plan`` on Ray against the store at ``store_url`` (which every worker must
    reach): audits after the verdicts they read, like :func:`measure_stage`. A benchmark
    job still to be measured gets an engine actor (its model loaded once, its shards
    answered in turn); a GPU engine that finds no room within ``placement_wait_s`` leaves
    its job not measured, with the reason."""
    from kaieval.bench.cache_db import DbRequestCache
    from kaieval.store import Store

    if workers < 1:
        raise KaiError(f"--jobs must be at least 1, got {workers}", where="--jobs")
    t0 = time.perf_counter()
    DbRequestCache(store_url).close()  # create the shared cache table once, before workers
    shared = replace(inputs, cache_url=store_url)
    shards = bench_shards(shared)
    settings = {"kind": "ray", "cluster": executor.address or "local",
                "bench_task_shards": len(shards)}
    listen = listen or (lambda o: None)
    outcomes = [JobOutcome(j) for j in plan.jobs]
    for o in outcomes:
        listen(o)
    with Store(store_url) as store:  # which benchmark jobs need an engine (a model load)
        checker = JobRunner(shared, store, actor, None)
        engined = {id(o) for o in outcomes if o.job.engine == "bench"
                   and not _stored(checker, o.job)}
    gpu = placement(shared.bench_backend, shared.tensor_parallel_size)
    on_gpu = {id(o) for o in outcomes if id(o) in engined and bench_settings(shared, o.job)}
    ray = _connect(executor, workers)
    try:
        if on_gpu:
            _check_gpus(ray, gpu, shared.tensor_parallel_size, executor)
        remote = ray.remote(num_cpus=1, max_retries=RETRIES)(_work)
        engine_cls = ray.remote(BenchEngine)
        ref_inputs = ray.put(shared)
        vers = versions()
        held: dict[int, tuple[Any, Any]] = {}  # id(outcome) -> (engine actor, placement group)

        def start_engine(o: JobOutcome, pg: Any) -> Any:
            plan_ = gpu if id(o) in on_gpu else placement("hf", 1)
            opts: dict[str, Any] = {**plan_.actor, "max_restarts": RETRIES,
                                    "max_task_retries": RETRIES}
            if pg is not None:
                from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

                opts["scheduling_strategy"] = PlacementGroupSchedulingStrategy(
                    pg, placement_group_bundle_index=0,
                    placement_group_capture_child_tasks=True)
            eng = engine_cls.options(**opts).remote(vers, plan_.engine)
            held[id(o)] = (eng, pg)
            after = ([eng.answer.remote(ref_inputs, o.job, store_url, s, hook)
                      for s in shards] if len(shards) > 1 else [])
            return eng.run_job.remote(ref_inputs, o.job, store_url, actor, settings, hook,
                                      *after)

        def submit(o: JobOutcome) -> tuple[Any, str]:
            o.status = "running"
            listen(o)
            if id(o) not in engined:
                return remote.remote(ref_inputs, o.job, store_url, actor, settings, vers,
                                     hook), "job"
            if id(o) in on_gpu:
                pg = ray.util.placement_group(list(gpu.bundles), strategy=gpu.strategy)
                held[id(o)] = (None, pg)
                return pg.ready(), "placed"
            return start_engine(o, None), "job"

        def release(o: JobOutcome) -> None:
            eng, pg = held.pop(id(o), (None, None))
            if eng is not None:  # closes vLLM's engine, then the actor exits
                eng.close.remote()
                bye = eng.__ray_terminate__.remote()
                if pg is not None:
                    ray.wait([bye], timeout=CLOSE_WAIT_S)
            if pg is not None:
                ray.util.remove_placement_group(pg)

        for phase in ([o for o in outcomes if o.job.engine != "audit"],
                      [o for o in outcomes if o.job.engine == "audit"]):
            pending: dict[Any, tuple[JobOutcome, str]] = {}
            deadline: dict[Any, float] = {}
            for o in phase:
                ref, kind = submit(o)
                pending[ref] = (o, kind)
                if kind == "placed":
                    deadline[ref] = time.monotonic() + placement_wait_s
            while pending:
                wait = (max(0.0, min(deadline.values()) - time.monotonic())
                        if deadline else None)
                done, _ = ray.wait(list(pending), num_returns=1, timeout=wait)
                if not done:  # a GPU engine found no room in time: not measured, named
                    for ref in [r for r, t in deadline.items() if t <= time.monotonic()]:
                        o, _ = pending.pop(ref)
                        del deadline[ref]
                        release(o)
                        o.status, o.reason = "not_measured", _no_room(
                            gpu, placement_wait_s, executor)
                        listen(o)
                    continue
                o, kind = pending.pop(done[0])
                deadline.pop(done[0], None)
                if kind == "placed":
                    pending[start_engine(o, held[id(o)][1])] = (o, "job")
                    continue
                _finish(ray, done[0], o)
                release(o)
                listen(o)
    finally:
        ray.shutdown()
    return StageMeasurement(stage_id=inputs.stage.id, outcomes=outcomes,
                            skipped=list(plan.skipped), seconds=time.perf_counter() - t0)


def _stored(checker: JobRunner, job: Job) -> bool:
    """Whether a job is stored under its key already (then it needs no engine: a rerun
    loads no model); a job whose key cannot be computed runs as a plain task, which
    stores the failure as the local executor does."""
    try:
        return checker.done(job)
    except Exception:
        return False


def _check_gpus(ray: Any, gpu: Placement, tp: int, executor: RayExecutor) -> None:
    """Refuse in one line, before anything is submitted, a cluster on which no node has
    the GPUs one model needs: Ray would otherwise wait for them for ever."""
    alive = [n for n in ray.nodes() if n.get("Alive")]
    most = max((float(n.get("Resources", {}).get("GPU", 0)) for n in alive), default=0.0)
    if most < gpu.gpus:
        raise KaiError(f"the vllm backend with tensor-parallel size {tp} needs {gpu.gpus} "
                       f"GPU(s) on one node; no node of the Ray cluster "
                       f"({executor.describe()}) has that many (most: {most:g})",
                       where="--tensor-parallel-size")


def _no_room(gpu: Placement, waited: float, executor: RayExecutor) -> str:
    return (f"no node of the Ray cluster ({executor.describe()}) had {gpu.gpus} free GPU(s) "
            f"for this model within {waited:g} s (others busy?); a rerun measures it")


def _finish(ray: Any, ref: Any, o: JobOutcome) -> None:
    """Copy a worker's outcome into the driver's; a job Ray gave up on (its worker died
    more than ``RETRIES`` times) is not measured, with the reason, and a rerun tries it
    again."""
    try:
        got: JobOutcome = ray.get(ref)
    except ray.exceptions.RayTaskError as e:
        cause = e.cause if isinstance(e.cause, KaiError) else None
        if cause is not None:
            raise cause from None
        o.status, o.reason = "not_measured", f"worker failed: {type(e.cause).__name__}"
        return
    except ray.exceptions.RayError as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else ""
        o.status, o.reason = "not_measured", f"{type(e).__name__}: {first}"
        return
    o.status, o.reason, o.notes = got.status, got.reason, got.notes
    o.records, o.written, o.seconds = got.records, got.written, got.seconds
