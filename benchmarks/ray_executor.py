"""``kai stage measure`` on Ray (2 workers on this machine) vs the local executor.

Issue 15's number: the same stage measured both ways gives the same records, and the
overhead Ray adds per job is reported. Lays out a three-team stage over the demo's
stand-in models (benchmarks on two tasks, so each benchmark job splits into two task
shards; the independence gate; an audit with a tokenizer rule: 13 jobs), starts a
local Ray cluster (``.ci/ray.sh start``: 2 CPUs, timed on its own), and runs, as a user
does, ``python -m kaieval.cli stage measure`` -- whole process, start-up included --
back to back, each into a fresh PostgreSQL schema with a fresh request cache:

    local -j1          the default
    local -j2          two jobs at once in one process (the fair peer of 2 workers)
    ray:ADDR           the cluster's 2 workers
    ray (own)          a Ray started by the command itself for the run (--jobs 2)

then reruns ``local`` and ``ray:ADDR`` on their filled stores (every job found stored:
what is left is pure overhead). Prints wall times side by side, the overhead per job
against the local peer, the model loads each run paid for (``$KAI_LOAD_LOG``: on Ray
one engine actor per benchmark job, so one load per model, as locally), and whether
every store holds equal records (``ray_executor.comparable_hashes``: natural key ->
content hash, the executor's entry in the run records aside).

    PYTHONPATH=src .venv/bin/python benchmarks/ray_executor.py [--pg URL] [--models DIR]
        [--port 6393]

Needs ``ray`` (the ``ray`` extra) and PostgreSQL (``.ci/postgres.sh``). Exit 1 if the
records differ. Results are recorded in docs/performance.md.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

TEAMS = ("nc", "skt", "kakao")
PROGRAM = """\
schema: kaieval/program/v1
id: ray-bench
name: Ray executor benchmark
axes: [{id: tech, name: Technology}]
stages:
  - id: s1
    name: Stage one
    date: 2026-08-31
    total: 60
    cut: 1
    composition:
      - id: bench
        points: 40
        axis: tech
        kind: benchmarks
        benchmarks:
          - {id: copa, task: kobest_copa}
          - {id: arc, task: arc}
      - id: audit
        points: 20
        axis: tech
        kind: audit
        rubric:
          - {id: tok, title: "Korean tokenizer efficiency", max: 20,
             rule: {measure: tokenizer.chars_per_token, points: linear, from: 0.5, to: 3}}
    gates:
      - {id: independence, kind: independence, rule: "trained by the team",
         registry: registry}
"""
PORT = 6393


def _dossier(tid: str) -> str:
    return (f"schema: kaieval/dossier/v1\nteam: {{id: {tid}, name: {tid}, lead: {tid}}}\n"
            f"submissions:\n  s1:\n    model: {{path: models/{tid}}}\n"
            "    target: {name: Shared Target, path: models/foreign-base}\n")


def _run(cmd: list[str], env: dict[str, str] | None = None) -> tuple[float, str]:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:6])} failed ({proc.returncode}):\n{proc.stdout}\n"
                 f"{proc.stderr}")
    return wall, proc.stdout


def _schema(base: str) -> str:
    from sqlalchemy import create_engine, text

    from kaieval.store import parse_url

    schema = f"kb_{uuid.uuid4().hex[:12]}"
    eng = create_engine(parse_url(base))
    with eng.begin() as conn:
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    eng.dispose()
    url = parse_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return url.render_as_string(hide_password=False)


def _drop(base: str, urls: list[str]) -> None:
    from sqlalchemy import create_engine, text

    from kaieval.store import parse_url

    eng = create_engine(parse_url(base))
    with eng.begin() as conn:
        for u in urls:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{u.rsplit("search_path%3D", 1)[-1]}"'
                              " CASCADE"))
    eng.dispose()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--pg", default=os.environ.get(
        "KAI_TEST_POSTGRES_URL", "postgresql+psycopg://kai:kai@127.0.0.1:5432/kaitest"))
    ap.add_argument("--port", type=int, default=PORT,
                    help="the local cluster's GCS port (another than a cluster already here)")
    ap.add_argument("--models", type=Path,
                    default=Path(tempfile.gettempdir()) / "kai-bench-models")
    a = ap.parse_args()
    from kaieval.demo.standins import build_standins
    from kaieval.pipeline.ray_executor import comparable_hashes
    from kaieval.records import EngineRun
    from kaieval.store import Store

    models = build_standins(a.models, names=[*TEAMS, "foreign-base"])
    root = Path(tempfile.mkdtemp(prefix="kai-ray-bench-"))
    (root / "models").mkdir()
    for name in (*TEAMS, "foreign-base"):
        shutil.copytree(models[name], root / "models" / name)
    (root / "program.yaml").write_text(PROGRAM, "utf-8")
    for t in TEAMS:
        (root / f"{t}.yaml").write_text(_dossier(t), "utf-8")
    kai = [sys.executable, "-m", "kaieval.cli"]
    _run([*kai, "registry", "add", str(root / "models" / "foreign-base"), "--name",
          "foreign-base", "--origin", "US", "--registry", str(root / "registry")])
    ray_sh = str(Path(__file__).resolve().parent.parent / ".ci" / "ray.sh")
    # token authentication, as .ci/ray.sh sets it up; the kai commands inherit it
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    env = {**os.environ, "RAY_BIN": str(Path(sys.executable).with_name("ray")),
           "KAI_RAY_PORT": str(a.port)}
    t0 = time.perf_counter()
    subprocess.run(["bash", ray_sh, "start"], check=True, env=env, capture_output=True)
    cluster_start = time.perf_counter() - t0
    address = f"127.0.0.1:{a.port}"
    modes = [("local -j1", ["--executor", "local"]),
             ("local -j2", ["--executor", "local", "--jobs", "2"]),
             (f"ray:{address}", ["--executor", f"ray:{address}"]),
             ("ray (own)", ["--executor", "ray", "--jobs", "2"])]
    urls: dict[str, str] = {}
    rows: list[tuple[str, float, int, int]] = []
    load = os.getloadavg()
    try:
        for label in [*(m for m, _ in modes), "rerun local -j1", f"rerun ray:{address}"]:
            base = label.removeprefix("rerun ")
            if base not in urls:
                urls[base] = _schema(a.pg)
            flags = dict(modes)[base]
            cache = root / f"requests-{uuid.uuid4().hex[:6]}"
            loads = root / f"loads-{uuid.uuid4().hex[:6]}.jsonl"  # one line per model load
            wall, _ = _run([*kai, "stage", "measure", "--program", str(root / "program.yaml"),
                            "--stage", "s1", *(str(root / f"{t}.yaml") for t in TEAMS),
                            "--db", urls[base], "--cache-dir", str(cache), *flags],
                           env={**os.environ, "KAI_LOAD_LOG": str(loads)})
            jobs = len([r for r in Store(urls[base]).records(kind="engine_run")
                        if isinstance(r, EngineRun)])
            n_loads = len(loads.read_text().splitlines()) if loads.exists() else 0
            rows.append((label, wall, jobs, n_loads))
    finally:
        subprocess.run(["bash", ray_sh, "stop"], check=False, env=env, capture_output=True)
    load_after = os.getloadavg()
    hashes = {label: comparable_hashes(Store(u).records(stage_id="s1"))
              for label, u in urls.items()}
    first = next(iter(hashes.values()))
    equal = all(h == first for h in hashes.values())
    walls = {label: wall for label, wall, _, _ in rows}
    print(f"load average before {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}, after "
          f"{load_after[0]:.2f} {load_after[1]:.2f} {load_after[2]:.2f}; "
          f"ray start (2 CPUs) {cluster_start:.1f} s, not in the rows below\n")
    print(f"{'run':24} {'wall s':>8} {'jobs':>5} {'loads':>6} {'vs local -j1':>13} "
          f"{'vs local -j2':>13} {'overhead/job vs -j2':>20}")
    for label, wall, jobs, n_loads in rows:
        peer = "rerun local -j1" if label.startswith("rerun") else "local -j2"
        over = (wall - walls[peer]) / jobs if jobs else float("nan")
        ref1 = "rerun local -j1" if label.startswith("rerun") else "local -j1"
        print(f"{label:24} {wall:8.1f} {jobs:5d} {n_loads:6d} {wall / walls[ref1]:12.2f}x "
              f"{wall / walls.get(peer, wall):12.2f}x {over:+19.2f}s")
    print(f"\nrecords: {len(first)} per store; "
          f"{'EQUAL' if equal else 'DIFFERENT'} across {', '.join(hashes)}")
    _drop(a.pg, list(urls.values()))
    shutil.rmtree(root, ignore_errors=True)
    return 0 if equal else 1


if __name__ == "__main__":
    raise SystemExit(main())
