"""The Ray executor: the same stage measured locally and on a real Ray cluster.

Needs a running cluster (``KAI_TEST_RAY_ADDRESS``, started by ``make test-ray`` /
``.ci/ray.sh start``) and PostgreSQL (``KAI_TEST_POSTGRES_URL``): the workers share the
store and its request cache as they would across machines. Without either, these skip.
What is checked: equal records both ways (measured values and their content hashes),
each team model loaded once per stage on Ray (one engine actor per model, not one load
per task shard), a rerun redoes nothing and loads nothing, workers and engine actors
killed mid-job have their work retried by Ray with nothing duplicated, and a GPU engine
on this CPU-only cluster is refused in one line instead of waiting for ever.
"""

from __future__ import annotations

import importlib.util
import json
import os
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, text
from typer.testing import CliRunner

from kaieval.bench.run import LOAD_LOG_ENV
from kaieval.cli import app
from kaieval.errors import KaiError
from kaieval.pipeline.plan import Job, StageInputs
from kaieval.pipeline.ray_engine import OneLoad, placement
from kaieval.pipeline.ray_executor import (
    RayExecutor,
    comparable_hashes,
    measure_stage_ray,
    parse_executor,
)
from kaieval.records import BenchmarkResult, EngineRun
from kaieval.store import Store, parse_url

RAY_ENV = "KAI_TEST_RAY_ADDRESS"
PG_ENV = "KAI_TEST_POSTGRES_URL"
runner = CliRunner()


def test_executor_strings() -> None:
    assert parse_executor("local") is None
    assert parse_executor("ray:127.0.0.1:6379") == RayExecutor("127.0.0.1:6379")
    assert parse_executor("ray:ray://head:10001") == RayExecutor("ray://head:10001")
    assert parse_executor("ray:auto") == RayExecutor("auto")
    for bad in ("ray:", "ray:head", "ray:head:0", "ray:head:70000", "dask", "ray:ray://x"):
        with pytest.raises(KaiError, match="--executor"):
            parse_executor(bad)


def test_comparable_hashes_ignore_only_the_executor() -> None:
    run = EngineRun(stage_id="s", team_id="a", source="measured", engine="bench",
                    status="measured", job_key="k", settings={"alpha": 0.01})
    on_ray = run.model_copy(update={"settings": {"alpha": 0.01, "executor": {"kind": "ray"}}})
    assert comparable_hashes([run]) == comparable_hashes([on_ray])
    other = run.model_copy(update={"settings": {"alpha": 0.05}})
    assert comparable_hashes([run]) != comparable_hashes([other])


def test_engine_placement_asks_ray_for_the_models_gpus() -> None:
    """The resources an engine actor asks Ray for (what a GPU cluster would receive; no
    GPU here, so the options themselves are what is checked)."""
    cpu = placement("hf", 1)
    assert (cpu.gpus, cpu.bundles, cpu.actor, cpu.engine) == (0, (), {"num_cpus": 1}, {})
    one = placement("vllm", 1)  # vLLM in the actor's process, on the actor's GPU
    assert one.gpus == 1 and one.bundles == ({"GPU": 1.0, "CPU": 1.0},)
    assert one.actor == {"num_cpus": 1, "num_gpus": 1} and one.engine == {}
    four = placement("vllm", 4)  # one bundle per GPU, all on one node
    assert four.gpus == 4 and four.strategy == "STRICT_PACK"
    assert four.bundles == tuple({"GPU": 1.0, "CPU": 1.0} for _ in range(4))
    assert four.actor == {"num_cpus": 1, "num_gpus": 0}  # vLLM's workers take the GPUs
    assert four.engine == {"distributed_executor_backend": "ray"}


@pytest.mark.parametrize(("flags", "where"), [
    (["--backend", "tgi"], "--backend"),
    (["--tensor-parallel-size", "2"], "--tensor-parallel-size"),  # hf: no tensor parallel
    (["--backend", "vllm", "--tensor-parallel-size", "0"], "--tensor-parallel-size"),
])
def test_stage_backend_options_are_checked_in_one_line(tmp_path: Path, flags: list[str],
                                                       where: str) -> None:
    res = runner.invoke(app, ["stage", "measure", "--program", str(tmp_path / "p.yaml"),
                              "--stage", "s1", str(tmp_path / "a.yaml"), *flags])
    assert res.exit_code == 2, res.output
    assert where in res.output and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def _loads(log: Path) -> dict[str, int]:
    """Model loads per model folder (name), from ``$KAI_LOAD_LOG``."""
    out: dict[str, int] = {}
    if log.exists():
        for line in log.read_text().splitlines():
            name = Path(json.loads(line)["model"]).name
            out[name] = out.get(name, 0) + 1
    return out


def test_one_load_builds_once_and_refuses_another_model(
        programme: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    log = tmp_path / "loads.jsonl"
    monkeypatch.setenv(LOAD_LOG_ENV, str(log))
    one = OneLoad()
    nc = str(programme / "models" / "nc")
    first = one("hf", nc, batch_size=16, chat_template=False, seed=1234)
    assert one("hf", nc, batch_size=16, chat_template=False, seed=1234) is first
    assert _loads(log) == {"nc": 1}
    with pytest.raises(KaiError, match="other settings"):
        one("hf", str(programme / "models" / "skt"), batch_size=16, chat_template=False,
            seed=1234)
    with pytest.raises(KaiError, match="other settings"):
        one("hf", nc, batch_size=8, chat_template=False, seed=1234)
    one.close()
    assert _loads(log) == {"nc": 1}


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("vllm") is not None,
                    reason="vLLM installed: the vllm backend would run (tests/bench/ covers it)")
def test_stage_measure_backend_vllm_sends_model_folders_to_vllm(
        programme: Path, tmp_path: Path) -> None:
    """--backend vllm reaches the benchmark jobs (locally): without vLLM every model
    folder's job is not measured, with vLLM's one-line reason, and the backend and
    tensor-parallel size are in the job's key, so an hf result is not taken for it."""
    db = f"sqlite:///{tmp_path / 'store.sqlite'}"
    res = runner.invoke(app, [
        "stage", "measure", "--program", str(programme / "program.yaml"), "--stage", "s1",
        str(programme / "a.yaml"), "--db", db, "--only", "bench",
        "--cache-dir", str(tmp_path / "requests"), "--backend", "vllm"])
    assert res.exit_code == 1, res.output
    runs = [r for r in Store(db).records(kind="engine_run") if isinstance(r, EngineRun)]
    assert len(runs) == 2  # team a's candidate and its target
    assert all(r.status == "not_measured" and "the vllm backend needs vLLM installed"
               in r.reason for r in runs), [r.reason for r in runs]
    from kaieval.pipeline.engines import bench_settings
    from kaieval.pipeline.plan import plan_stage

    inputs = _inputs(programme, tmp_path, bench_backend="vllm", tensor_parallel_size=2)
    job = next(j for j in plan_stage(inputs, {"bench"}).jobs if j.team_id == "a")
    assert bench_settings(inputs, job) == {"backend": "vllm", "tensor_parallel_size": 2}
    assert bench_settings(_inputs(programme, tmp_path), job) == {}


# decided at collection, so that no model is built for a test that would then skip
needs_cluster = pytest.mark.skipif(
    importlib.util.find_spec("ray") is None or not os.environ.get(RAY_ENV),
    reason=f"ray not installed or {RAY_ENV} not set (make test-ray installs the 'ray' "
           "extra, starts a cluster and sets it)")


@pytest.fixture()
def cluster() -> str:
    return os.environ[RAY_ENV]


@pytest.fixture()
def pg_schemas() -> Iterator[Callable[[], str]]:
    """Fresh PostgreSQL schemas, one URL per call, dropped afterwards."""
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"{PG_ENV} not set (run .ci/postgres.sh)")
    admin = create_engine(parse_url(base))
    made: list[str] = []

    def make() -> str:
        schema = f"kr_{uuid.uuid4().hex[:16]}"
        with admin.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        made.append(schema)
        url = parse_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        return url.render_as_string(hide_password=False)

    yield make
    with admin.begin() as conn:
        for schema in made:
            conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


def _measure(p: Path, db: str, *extra: str) -> tuple[int, str]:
    res = runner.invoke(app, [
        "stage", "measure", "--program", str(p / "program.yaml"), "--stage", "s1",
        str(p / "a.yaml"), str(p / "b.yaml"), str(p / "c.yaml"), "--db", db,
        "--cache-dir", str(p / f"requests-{uuid.uuid4().hex[:6]}"),
        "--reference-tokenizer", str(p / "models" / "foreign-base"), *extra])
    return res.exit_code, res.output


def _registry(p: Path) -> None:
    res = runner.invoke(app, ["registry", "add", str(p / "models" / "foreign-base"), "--name",
                              "foreign-base", "--origin", "US", "--licence", "apache-2.0",
                              "--family", "llama", "--registry", str(p / "registry")])
    assert res.exit_code == 0, res.output


@pytest.mark.ray
@pytest.mark.slow
@needs_cluster
def test_local_and_ray_store_equal_records_load_each_model_once_and_a_rerun_redoes_nothing(
        programme: Path, cluster: str, pg_schemas: Callable[[], str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    _registry(programme)
    local_db, ray_db = pg_schemas(), pg_schemas()
    monkeypatch.setenv(LOAD_LOG_ENV, str(tmp_path / "local-loads.jsonl"))
    code, out = _measure(programme, local_db)
    assert code == 0, out
    # Ray's workers get $KAI_LOAD_LOG through the job's runtime environment (KAI_*)
    monkeypatch.setenv(LOAD_LOG_ENV, str(tmp_path / "ray-loads.jsonl"))
    code, out = _measure(programme, ray_db, "--executor", f"ray:{cluster}")
    assert code == 0, out
    # two benchmark tasks (two shards per benchmark job), three candidates and the shared
    # target: each model loaded once on Ray, as locally -- per-shard loading made it 3
    every_model_once = {"nc": 1, "kakao": 1, "skt": 1, "foreign-base": 1}
    assert _loads(tmp_path / "local-loads.jsonl") == every_model_once
    assert _loads(tmp_path / "ray-loads.jsonl") == every_model_once
    local, on_ray = Store(local_db).records(stage_id="s1"), Store(ray_db).records(stage_id="s1")
    assert len(local) == len(on_ray) > 20
    assert comparable_hashes(local) == comparable_hashes(on_ray)
    # the measured values themselves, not only their hashes
    scores = {r.natural_key(): (r.score, r.item_scores) for r in local
              if isinstance(r, BenchmarkResult)}
    assert scores == {r.natural_key(): (r.score, r.item_scores) for r in on_ray
                      if isinstance(r, BenchmarkResult)}
    runs = [r for r in on_ray if isinstance(r, EngineRun)]
    assert runs and all(r.settings["executor"]["kind"] == "ray" for r in runs)
    # the answers went through the shared store's request cache
    from kaieval.bench.cache_db import DbRequestCache

    assert len(DbRequestCache(ray_db)) > 0
    # a rerun on Ray: every job stored under its key, nothing redone, nothing written
    before = len(Store(ray_db).audit_entries())
    monkeypatch.setenv(LOAD_LOG_ENV, str(tmp_path / "rerun-loads.jsonl"))
    code, out = _measure(programme, ray_db, "--executor", f"ray:{cluster}")
    assert code == 0, out
    assert "✓ stored" in out and "✓ measured" not in out  # every job found stored
    assert len(Store(ray_db).audit_entries()) == before
    assert _loads(tmp_path / "rerun-loads.jsonl") == {}  # and no model loaded for it


def _kill_once(marks: Path, team: str, engine: str, point: str) -> Callable[[str, Job], None]:
    """A hook that kills its own worker process the first time ``(team, engine)`` reaches
    ``point`` (a marker file remembers it across the retry)."""

    def hook(at: str, job: Job) -> None:
        marker = marks / f"{job.team_id}-{job.engine}-{at}"
        if job.team_id == team and job.engine == engine and at == point \
                and not marker.exists():
            marker.write_text(str(os.getpid()))
            os._exit(1)  # the worker dies mid-job, as a killed or crashed node would

    return hook


@pytest.mark.ray
@pytest.mark.slow
@needs_cluster
def test_a_worker_killed_mid_job_is_retried_and_nothing_is_duplicated(
        programme: Path, cluster: str, pg_schemas: Callable[[], str],
        tmp_path: Path) -> None:
    from kaieval.pipeline import plan_stage
    from kaieval.pipeline.inputs import stage_inputs
    from kaieval.spec.load import load_dossiers, load_program

    _registry(programme)
    db = pg_schemas()
    prog, phash = load_program(str(programme / "program.yaml"))
    dossiers = load_dossiers([programme / f"{t}.yaml" for t in "abc"], prog, check_files=False)
    inputs = stage_inputs(prog, phash, "s1", dossiers, program_path=programme / "program.yaml",
                          registry=None, teams=None, cache_dir=tmp_path / "requests",
                          reference_tokenizer=programme / "models" / "foreign-base",
                          audit_dir=None, batch_size=16)
    plan = plan_stage(inputs)
    marks = tmp_path / "marks"
    marks.mkdir()
    stored_kill = _kill_once(marks, "a", "provenance", "stored")  # after its commit
    start_kill = _kill_once(marks, "b", "tokenizer", "start")  # before it ran

    def both(at: str, job: Job) -> None:
        stored_kill(at, job)
        start_kill(at, job)

    got = measure_stage_ray(inputs, plan, db, actor="test", executor=RayExecutor(cluster),
                            hook=both)
    assert (marks / "a-provenance-stored").exists() and (marks / "b-tokenizer-start").exists()
    status = {(o.job.team_id, o.job.engine): o.status for o in got.outcomes}
    assert not got.failures, [(o.job, o.reason) for o in got.failures]
    # killed after its commit: the retry found the job stored under its key
    assert status[("a", "provenance")] == "cached"
    # killed before it ran: the retry measured it
    assert status[("b", "tokenizer")] == "measured"
    store = Store(db)
    keys = [e.entity_key for e in store.audit_entries()]
    assert len(keys) == len(set(keys))  # every record written once: no duplicate, no rewrite
    verdicts = [k for k in keys if k.startswith("verdict/s1/a")]
    assert len(verdicts) == 1
    # a rerun redoes no finished job
    again = measure_stage_ray(inputs, plan, db, actor="test", executor=RayExecutor(cluster))
    assert {o.status for o in again.outcomes} == {"cached"}
    assert [e.entity_key for e in store.audit_entries()] == keys


@pytest.mark.ray
@pytest.mark.slow
@needs_cluster
def test_a_job_whose_worker_always_dies_is_not_measured_and_the_others_go_on(
        programme: Path, cluster: str, pg_schemas: Callable[[], str],
        tmp_path: Path) -> None:
    from kaieval.pipeline import plan_stage
    from kaieval.pipeline.inputs import stage_inputs
    from kaieval.pipeline.ray_executor import RETRIES
    from kaieval.spec.load import load_dossiers, load_program

    db = pg_schemas()
    prog, phash = load_program(str(programme / "program.yaml"))
    dossiers = load_dossiers([programme / f"{t}.yaml" for t in "abc"], prog, check_files=False)
    inputs = stage_inputs(prog, phash, "s1", dossiers, program_path=programme / "program.yaml",
                          teams=None, cache_dir=tmp_path / "requests",
                          reference_tokenizer=programme / "models" / "foreign-base")
    plan = plan_stage(inputs, {"tokenizer"})
    tries = tmp_path / "tries"
    tries.mkdir()

    def always(at: str, job: Job) -> None:
        if job.team_id == "a" and at == "start":
            (tries / str(os.getpid())).write_text("")
            os._exit(1)

    got = measure_stage_ray(inputs, plan, db, actor="test", executor=RayExecutor(cluster),
                            hook=always)
    status = {o.job.team_id: o for o in got.outcomes}
    assert status["a"].status == "not_measured" and "Worker" in status["a"].reason
    assert len(list(tries.iterdir())) == RETRIES + 1  # Ray's retries, none of our own
    assert status["b"].status == status["c"].status == "measured"
    # nothing stored for the job Ray gave up on: the next run measures it
    assert sorted(r.team_id for r in Store(db).records(kind="engine_run")) == ["b", "c"]


def _inputs(programme: Path, tmp_path: Path, **extra: object) -> StageInputs:
    from kaieval.pipeline.inputs import stage_inputs
    from kaieval.spec.load import load_dossiers, load_program

    prog, phash = load_program(str(programme / "program.yaml"))
    dossiers = load_dossiers([programme / f"{t}.yaml" for t in "abc"], prog, check_files=False)
    return stage_inputs(prog, phash, "s1", dossiers, program_path=programme / "program.yaml",
                        teams=None, cache_dir=tmp_path / "requests",
                        reference_tokenizer=programme / "models" / "foreign-base",
                        **extra)  # type: ignore[arg-type]


@pytest.mark.ray
@pytest.mark.slow
@needs_cluster
def test_an_engine_killed_after_a_shard_is_restarted_and_nothing_is_duplicated(
        programme: Path, cluster: str, pg_schemas: Callable[[], str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Team a's engine actor dies right after committing its first task shard's answers:
    Ray restarts it (it loads the model again: the one extra load a crash costs), reruns
    the call it died in and the ones queued behind it, and the job is stored once."""
    from kaieval.pipeline import plan_stage

    db = pg_schemas()
    log = tmp_path / "loads.jsonl"
    monkeypatch.setenv(LOAD_LOG_ENV, str(log))
    inputs = _inputs(programme, tmp_path)
    plan = plan_stage(inputs, {"bench"})
    marks = tmp_path / "marks"
    marks.mkdir()
    got = measure_stage_ray(inputs, plan, db, actor="test", executor=RayExecutor(cluster),
                            hook=_kill_once(marks, "a", "bench", "answered"))
    assert (marks / "a-bench-answered").exists()
    assert not got.failures, [(o.job, o.reason) for o in got.failures]
    assert {o.status for o in got.outcomes} == {"measured"}
    assert _loads(log) == {"nc": 2, "kakao": 1, "skt": 1, "foreign-base": 1}
    store = Store(db)
    keys = [e.entity_key for e in store.audit_entries()]
    assert len(keys) == len(set(keys))  # every record written once
    results = [r for r in store.records(stage_id="s1", team_id="a")
               if isinstance(r, BenchmarkResult) and r.role == "candidate"]
    assert sorted(r.benchmark_id for r in results) == ["arc", "copa"]


@pytest.mark.ray
@needs_cluster
def test_a_gpu_engine_on_a_cpu_only_cluster_is_one_line_not_a_hang(
        programme: Path, cluster: str, pg_schemas: Callable[[], str], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """--backend vllm asks each engine for its GPUs; this cluster has none. Refused before
    anything is submitted (no vLLM needed: nothing is loaded); and should a cluster have
    GPUs but none free, the placement wait is bounded and the job named not measured."""
    from kaieval.pipeline import plan_stage, ray_executor

    db = pg_schemas()
    inputs = _inputs(programme, tmp_path, bench_backend="vllm", tensor_parallel_size=2)
    plan = plan_stage(inputs, {"bench"})
    t0 = time.monotonic()
    with pytest.raises(KaiError) as e:
        measure_stage_ray(inputs, plan, db, actor="test", executor=RayExecutor(cluster))
    assert time.monotonic() - t0 < 120
    line = str(e.value)
    assert "\n" not in line and "--tensor-parallel-size" in line
    assert "needs 2 GPU(s) on one node" in line and "most: 0" in line
    # the placement wait itself: past the one-line check, a group that cannot be placed
    monkeypatch.setattr(ray_executor, "_check_gpus", lambda *a: None)
    t0 = time.monotonic()
    got = measure_stage_ray(inputs, plan, db, actor="test", executor=RayExecutor(cluster),
                            placement_wait_s=3)
    assert time.monotonic() - t0 < 120
    assert {o.status for o in got.outcomes} == {"not_measured"}
    assert all("free GPU(s)" in o.reason and "within 3 s" in o.reason for o in got.outcomes)
    assert Store(db).records(stage_id="s1") == []  # nothing stored: a rerun measures them
