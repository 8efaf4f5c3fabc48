"""Measuring a stage: run every planned job, store each result with its inputs' key.

Each job's records and its :class:`~kaieval.records.EngineRun` go into the store in
one transaction, so a ``kill -9`` loses only the jobs in flight and a rerun picks
up where it stopped. A job whose key (inputs' content hashes, settings, engine
version) equals the stored run's is not run again. A job that fails on a team's
input is stored as ``not_measured`` with its one-line reason and the others go on.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from kaieval.errors import KaiError
from kaieval.pipeline.engines import KEYS, RUNS, Output, bench_settings, job_key
from kaieval.pipeline.plan import SHARED, Engine, Job, Plan, StageInputs
from kaieval.records import BenchmarkResult, EngineRun, IndependenceVerdict, Record
from kaieval.store import Store

Status = Literal["queued", "running", "measured", "cached", "not_measured"]


@dataclass
class JobOutcome:
    job: Job
    status: Status = "queued"
    reason: str = ""
    notes: list[str] = field(default_factory=list)
    records: int = 0
    written: int = 0
    seconds: float = 0.0


@dataclass
class StageMeasurement:
    stage_id: str
    outcomes: list[JobOutcome]
    skipped: list[tuple[str, Engine, str]]
    seconds: float

    @property
    def failures(self) -> list[JobOutcome]:
        return [o for o in self.outcomes if o.status == "not_measured"]

    @property
    def written(self) -> int:
        return sum(o.written for o in self.outcomes)


Listener = Callable[[JobOutcome], None]


def _settings(inputs: StageInputs, job: Job) -> dict[str, Any]:
    if job.engine == "provenance":
        return {"alpha": inputs.alpha}
    if job.engine == "bench":
        return bench_settings(inputs, job)
    return {}


class JobRunner:
    """Runs one job against the store: key, skip if stored, run, one transaction.

    The local executor runs every job through one of these; the Ray executor builds one
    per job on its worker, so both write exactly the same records. ``executor`` is
    written into each :class:`EngineRun`'s settings (never into a measured record):
    how the work was spread changes no number. ``builder``: how a benchmark job builds its
    backend (the Ray engine actor's model, loaded once; default: load it).
    """

    def __init__(self, inputs: StageInputs, store: Store, actor: str, listen: Listener | None,
                 executor: dict[str, Any] | None = None,
                 builder: Callable[..., Any] | None = None) -> None:
        self.inputs, self.store, self.actor = inputs, store, actor
        self.executor, self.builder = executor, builder
        self.listen = listen or (lambda o: None)
        self.lock = threading.Lock()
        sid = inputs.stage.id
        stored = store.records(stage_id=sid)
        self.runs = {r.natural_key(): r for r in stored if isinstance(r, EngineRun)}
        self.by_key: dict[str, Record] = {r.natural_key(): r for r in stored}
        self.elsewhere = [r for r in store.records(kind="engine_run")
                          if isinstance(r, EngineRun) and r.stage_id != sid
                          and r.status == "measured"]

    def _stored_run(self, job: Job) -> EngineRun:
        return EngineRun(stage_id=self.inputs.stage.id, team_id=job.team_id,
                         source="measured", engine=job.engine, subject=job.subject,
                         status="not_measured", job_key="")

    def _verdict(self, team_id: str) -> IndependenceVerdict | None:
        with self.lock:
            recs = self.store.records(stage_id=self.inputs.stage.id, kind="verdict",
                                      team_id=team_id)
        return next((r for r in recs if isinstance(r, IndependenceVerdict)), None)

    def run(self, job: Job, out: JobOutcome) -> None:
        t0 = time.perf_counter()
        out.status = "running"
        self.listen(out)
        extra: tuple[Any, ...] = ((self._verdict(job.team_id),)
                                  if job.engine == "audit" else ())
        settings = _settings(self.inputs, job)
        key = ""
        result: Output | None = None
        try:
            key = job_key(job.engine, KEYS[job.engine](self.inputs, job, *extra), settings)
            if self._cached(job, key):
                out.status = "cached"
                out.written = self._share_target(job)
                out.seconds = time.perf_counter() - t0
                self.listen(out)
                return
            how_built = ({"builder": self.builder}
                         if job.engine == "bench" and self.builder is not None else {})
            result = self._from_other_stage(job, key) or RUNS[job.engine](
                self.inputs, job, *extra, **how_built)
        except KaiError as e:
            out.reason = str(e)
        except Exception as e:  # isolation: one team's input never stops the others
            # not a KaiError: an engine met input it did not anticipate; the team's result
            # is not measured, named, and the others go on
            out.reason = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        base = self._stored_run(job)
        how = {"executor": self.executor} if self.executor else {}
        if result is None:
            run = base.model_copy(update={"job_key": key, "reason": out.reason,
                                          "teams": job.teams, "settings": how})
            out.status = "not_measured"
            out.written = self._put([run])
        else:
            produced = tuple(sorted({r.natural_key() for r in result.records}))
            run = base.model_copy(update={"status": "measured", "job_key": key,
                                          "notes": tuple(result.notes), "produced": produced,
                                          "teams": job.teams, "settings": {**settings, **how}})
            out.status, out.notes, out.records = "measured", result.notes, len(result.records)
            out.written = self._put([*result.records, run])
        out.seconds = time.perf_counter() - t0
        self.listen(out)

    def _from_other_stage(self, job: Job, key: str) -> Output | None:
        """The same job (same key: inputs, settings, engine) stored for another stage, its
        records rebound to this stage and team: the demo's models are checked against the
        same references at every stage, and that need not be computed again. Audits are
        stage-specific (their key names the stage) and shared targets are not reused."""
        if job.team_id == SHARED:
            return None
        for prev in self.elsewhere:
            if prev.job_key != key or prev.engine != job.engine:
                continue
            with self.lock:
                old = {r.natural_key(): r for r in self.store.records(
                    stage_id=prev.stage_id, team_id=prev.team_id)}
            if not all(k in old for k in prev.produced):
                continue
            update = {"stage_id": self.inputs.stage.id, "team_id": job.team_id}
            return Output(records=[old[k].model_copy(update=update) for k in prev.produced],
                          notes=[*prev.notes, f"reused from stage {prev.stage_id} (same inputs "
                                              "and engine version)"])
        return None

    def done(self, job: Job) -> bool:
        """Whether ``job``'s result is stored under its current key, or can be reused from
        another stage: the Ray executor's task shards then have nothing to answer."""
        extra: tuple[Any, ...] = ((self._verdict(job.team_id),)
                                  if job.engine == "audit" else ())
        key = job_key(job.engine, KEYS[job.engine](self.inputs, job, *extra),
                      _settings(self.inputs, job))
        return self._cached(job, key) or self._from_other_stage(job, key) is not None

    def _cached(self, job: Job, key: str) -> bool:
        prev = self.runs.get(self._stored_run(job).natural_key())
        return (prev is not None and prev.status == "measured" and prev.job_key == key
                and all(k in self.by_key for k in prev.produced))

    def _share_target(self, job: Job) -> int:
        """A cached shared target: copy its stored results to teams that declare it now
        (unchanged copies write nothing)."""
        if job.team_id != SHARED:
            return 0
        prev = self.runs[self._stored_run(job).natural_key()]
        if set(job.teams) <= set(prev.teams):
            return 0
        sample = [r for k in prev.produced if isinstance(r := self.by_key.get(k),
                                                         BenchmarkResult)]
        copies: list[Record] = [r.model_copy(update={"team_id": tid}) for tid in job.teams
                                for r in sample if r.team_id == sample[0].team_id]
        run = prev.model_copy(update={
            "teams": tuple(sorted({*prev.teams, *job.teams})),
            "produced": tuple(sorted({*prev.produced, *(r.natural_key() for r in copies)}))})
        return self._put([*copies, run])

    def _put(self, records: Sequence[Record]) -> int:
        with self.lock:
            summary = self.store.put(records, actor=self.actor)
            self.by_key.update((r.natural_key(), r) for r in records)
            for r in records:
                if isinstance(r, EngineRun):
                    self.runs[r.natural_key()] = r
        return summary.inserted + summary.replaced


def _import_before_threads() -> None:
    """Resolve the transformers names the engines use, once, in this thread.

    transformers' lazy module is not thread-safe: two threads that first import
    ``AutoModelForCausalLM`` at the same moment get ``ImportError: cannot import name``
    (transformers 5.x, reproduced 3 times out of 3), which made the second benchmark job
    of ``--jobs 2`` "not measured". After this, imports in the threads find the names
    resolved."""
    try:
        import transformers
    except ImportError:  # the hf extra is not installed: no engine here imports it
        return
    for name in ("AutoModelForCausalLM", "AutoTokenizer", "PreTrainedTokenizerFast",
                 "DynamicCache"):
        getattr(transformers, name, None)


def measure_stage(inputs: StageInputs, plan: Plan, store: Store, *, actor: str,
                  jobs: int = 1, listen: Listener | None = None) -> StageMeasurement:
    """Run ``plan`` against ``store``: audits after the verdicts they read, the rest first."""
    if jobs < 1:
        raise KaiError(f"--jobs must be at least 1, got {jobs}", where="--jobs")
    t0 = time.perf_counter()
    runner = JobRunner(inputs, store, actor, listen)
    outcomes = [JobOutcome(j) for j in plan.jobs]
    for o in outcomes:
        runner.listen(o)
    first = [o for o in outcomes if o.job.engine != "audit"]
    second = [o for o in outcomes if o.job.engine == "audit"]
    if jobs > 1:
        _import_before_threads()
    for phase in (first, second):
        if jobs == 1:
            for o in phase:
                runner.run(o.job, o)
        else:
            with ThreadPoolExecutor(max_workers=jobs) as pool:
                for f in [pool.submit(runner.run, o.job, o) for o in phase]:
                    f.result()
    return StageMeasurement(stage_id=inputs.stage.id, outcomes=outcomes,
                            skipped=list(plan.skipped), seconds=time.perf_counter() - t0)
