"""``kai stage measure`` on a five-team stage whose teams all declare the same target.

Targets (issue 10): the shared target is measured **once** (one ``engine_run`` for it,
``shared by`` all five teams), and a rerun after the first run finished takes under
10 % of the first run's wall time and writes no row (the audit log does not grow).

Lays out a programme folder with five dossiers over the demo's stand-in models
(built with ``kaieval.demo.standins.build_standins`` into ``--models``, cached), a
registry with the foreign base, and an empty store; then runs, as a user does, the
installed ``kai`` console script twice (start-up included) and prints::

    run      wall s   rows written   audit entries   target jobs
    first    ...
    rerun    ...      0              (unchanged)

    .venv/bin/python benchmarks/stage_measure_rerun.py [--models DIR] [--keep DIR]

Exit status 1 if a target is missed. Results are recorded in docs/performance.md.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEAMS = ("lg", "naver", "nc", "skt", "upstage")
PROGRAM = """\
schema: kaieval/program/v1
id: bench-programme
name: Five teams, one target
axes: [{id: tech, name: Technology}]
stages:
  - id: s1
    name: Stage one
    date: 2026-08-31
    total: 100
    cut: 1
    composition:
      - id: bench
        points: 100
        axis: tech
        kind: benchmarks
        benchmarks:
          - {id: kmmlu, task: kmmlu}
          - {id: copa, task: kobest_copa}
          - {id: arc, task: arc}
          - {id: hellaswag, task: hellaswag}
    gates:
      - {id: independence, kind: independence, rule: "trained by the team",
         registry: registry}
"""


def _dossier(tid: str) -> str:
    return (f"schema: kaieval/dossier/v1\nteam: {{id: {tid}, name: {tid}, lead: {tid}}}\n"
            f"submissions:\n  s1:\n    model: {{path: models/{tid}}}\n"
            "    target: {name: Shared Target, path: models/foreign-base}\n")


def _kai(*args: str) -> tuple[float, str]:
    kai = str(Path(sys.executable).with_name("kai"))
    t0 = time.perf_counter()
    proc = subprocess.run([kai, *args], capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        sys.exit(f"kai {' '.join(args[:2])} failed ({proc.returncode}):\n{proc.stdout}\n"
                 f"{proc.stderr}")
    return wall, proc.stdout


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", type=Path, default=Path(tempfile.gettempdir()) / "kai-bench-models")
    ap.add_argument("--keep", type=Path, default=None,
                    help="lay the programme out here and keep it")
    a = ap.parse_args()
    from kaieval.demo.standins import build_standins
    from kaieval.records import EngineRun
    from kaieval.store import Store

    models = build_standins(a.models, names=[*TEAMS, "foreign-base"])
    root = a.keep or Path(tempfile.mkdtemp(prefix="kai-stage-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    (root / "models").mkdir(exist_ok=True)
    for name in (*TEAMS, "foreign-base"):
        if not (root / "models" / name).exists():
            shutil.copytree(models[name], root / "models" / name)
    (root / "program.yaml").write_text(PROGRAM, "utf-8")
    for t in TEAMS:
        (root / f"{t}.yaml").write_text(_dossier(t), "utf-8")
    db = f"sqlite:///{root / 'store.sqlite'}"
    _kai("registry", "add", str(root / "models" / "foreign-base"), "--name", "foreign-base",
         "--origin", "US", "--registry", str(root / "registry"), "--replace")
    args = ["stage", "measure", "--program", str(root / "program.yaml"), "--stage", "s1",
            *(str(root / f"{t}.yaml") for t in TEAMS), "--db", db,
            "--cache-dir", str(root / "requests")]
    rows = []
    for label in ("first", "rerun"):
        before = len(Store(db).audit_entries()) if (root / "store.sqlite").exists() else 0
        wall, out = _kai(*args)
        store = Store(db)
        after = len(store.audit_entries())
        targets = [r for r in store.records(kind="engine_run")
                   if isinstance(r, EngineRun) and r.team_id == "*"]
        rows.append((label, wall, after - before, after, targets))
        if label == "first":
            shared = [ln for ln in out.splitlines() if "shared by" in ln]
            print("first run, shared target:", *shared, sep="\n  ")
    print(f"\n{'run':8} {'wall s':>8} {'rows written':>13} {'audit entries':>14} "
          f"{'target jobs':>12}")
    for label, wall, written, total, targets in rows:
        print(f"{label:8} {wall:8.1f} {written:13d} {total:14d} {len(targets):12d}")
    first, rerun = rows[0], rows[1]
    ratio = rerun[1] / first[1]
    checks = [
        ("target measured once for 5 teams", len(first[4]) == 1
         and len(first[4][0].teams) == len(TEAMS)),
        (f"rerun under 10 % of first ({ratio:.1%})", ratio < 0.10),
        ("rerun writes no row", rerun[2] == 0),
    ]
    print()
    for what, ok in checks:
        print(f"{'PASS' if ok else 'FAIL'}  {what}")
    if a.keep is None:
        shutil.rmtree(root, ignore_errors=True)
    return 0 if all(ok for _, ok in checks) else 1


if __name__ == "__main__":
    raise SystemExit(main())
