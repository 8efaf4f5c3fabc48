"""Measuring a stage on a Ray cluster: the same jobs, spread over workers.

Why it looks like this:

* The unit of work is a (team x engine x task shard) job. A benchmark job is split
  into one shard per task; each shard answers its task's requests on whichever
  worker is free and commits them to the request cache in the shared store
  (``bench.cache_db``). The job itself then runs on a worker exactly as the local
  executor runs it (:class:`~kaieval.pipeline.measure.JobRunner`), finds every
  answer in that cache, scores and stores its records in one transaction. Same
  code, same inputs: the records are the local executor's, by construction, and
  ``tests/pipeline/test_pipeline_ray.py`` checks it.
* Nothing of Ray's decides a number. Ray schedules and retries (``max_retries``:
  a worker killed mid-job has its task run again elsewhere); the store makes that
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
from kaieval.pipeline.engines import bench_shards, engine_version
from kaieval.pipeline.measure import JobOutcome, JobRunner, Listener, StageMeasurement
from kaieval.pipeline.plan import ENGINES, Job, Plan, StageInputs
from kaieval.records import EngineRun, Record

RETRIES = 3  # Ray reruns a task whose worker died this many times before giving up
OBJECT_STORE_BYTES = 100 * 1024 * 1024  # a local Ray's object store: the jobs pass little
CONNECT_TIMEOUT_S = 5.0
WHERE = "--executor"

# Called on the worker around each job: ("start", job) before it runs, ("stored", job)
# after its records are committed. Tests inject failures through it (a worker that
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


def _versions() -> dict[str, str]:
    return {e: engine_version(e) for e in ENGINES}


def _work(inputs: StageInputs, job: Job, store_url: str, actor: str,
          executor: dict[str, Any], versions: dict[str, str], shard: str | None,
          hook: JobHook | None, *_after: Any) -> JobOutcome:
    """One task on a worker: a benchmark task shard (answers into the shared cache), or
    a whole job (records into the store). ``_after``: the shards a job waits for."""
    from kaieval.pipeline.engines import run_bench
    from kaieval.store import Store

    if _versions() != versions:
        raise KaiError("this worker runs different kaieval code than the driver (engine "
                       "versions differ); install the same version on every node",
                       where=WHERE)
    out = JobOutcome(job)
    t0 = time.perf_counter()
    with Store(store_url) as store:
        runner = JobRunner(inputs, store, actor, None, executor=executor)
        if shard is None:
            if hook is not None:
                hook("start", job)
            runner.run(job, out)
            if hook is not None:
                hook("stored", job)
            return out
        try:
            if runner.done(job):
                out.status = "cached"
            else:
                run_bench(inputs, job, only=shard)
                out.status = "measured"
        except Exception as e:  # the job itself meets the same failure and stores it
            out.status, out.reason = "not_measured", f"{type(e).__name__}: {e}"
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
                      listen: Listener | None = None, hook: JobHook | None = None
                      ) -> StageMeasurement:
    """Run ``plan`` on Ray against the store at ``store_url`` (which every worker must
    reach): audits after the verdicts they read, like :func:`measure_stage`."""
    from kaieval.bench.cache_db import DbRequestCache

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
    ray = _connect(executor, workers)
    try:
        remote = ray.remote(num_cpus=1, max_retries=RETRIES)(_work)
        ref_inputs = ray.put(shared)
        versions = _versions()

        def submit(o: JobOutcome) -> Any:
            after = ([remote.remote(ref_inputs, o.job, store_url, actor, settings, versions,
                                    s, None) for s in shards]
                     if o.job.engine == "bench" and len(shards) > 1 else [])
            o.status = "running"
            listen(o)
            return remote.remote(ref_inputs, o.job, store_url, actor, settings, versions,
                                 None, hook, *after)

        for phase in ([o for o in outcomes if o.job.engine != "audit"],
                      [o for o in outcomes if o.job.engine == "audit"]):
            pending = {submit(o): o for o in phase}
            while pending:
                done, _ = ray.wait(list(pending), num_returns=1)
                o = pending.pop(done[0])
                _finish(ray, done[0], o)
                listen(o)
    finally:
        ray.shutdown()
    return StageMeasurement(stage_id=inputs.stage.id, outcomes=outcomes,
                            skipped=list(plan.skipped), seconds=time.perf_counter() - t0)


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
