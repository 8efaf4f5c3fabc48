"""What the checks of issue 11 cost on a stage with many user votes, as a user runs it.

``kai records import`` now checks every record against the programme and the dossiers
before writing, and ``kai stage run`` verifies the whole store (chain, rows, history,
checkpoints) before it decides. This lays out a five-team programme, 50 committee
sheets and ``--votes`` user votes (one JSON line each), then times the installed
``kai`` console script, start-up included:

    step                         wall s
    import (checked) N votes     ...
    audit-log verify             ...
    stage run (verify + score)   ...

    .venv/bin/python benchmarks/records_checks.py [--votes 200000] [--keep DIR]

The ratio that matters is how much of ``stage run`` is the verification it now does
first (``audit-log verify`` run alone is the same work). Results go in
docs/performance.md.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TEAMS = ("lg", "naver", "nc", "skt", "upstage")
PROGRAM = """\
schema: kaieval/program/v1
id: bench-records
name: Records checks
axes: [{id: tech, name: Technology}]
stages:
  - id: s1
    name: Stage one
    date: 2026-08-31
    total: 60
    cut: 1
    composition:
      - id: experts
        points: 35
        kind: committee
        rubric: [{id: report, title: Report, max: 10}, {id: logs, title: Logs, max: 10}]
      - id: users
        points: 25
        kind: users
    robustness_replicates: 200
"""


def _dossier(tid: str) -> str:
    return (f"schema: kaieval/dossier/v1\nteam: {{id: {tid}, name: Team {tid}, lead: {tid} AI}}\n"
            f"submissions:\n  s1: {{technical_report: {tid}.md}}\n")


def _lay_out(root: Path, votes: int) -> None:
    rng = random.Random(0)
    (root / "program.yaml").write_text(PROGRAM)
    for t in TEAMS:
        (root / f"{t}.yaml").write_text(_dossier(t))
        (root / f"{t}.md").write_text("report\n")
    with (root / "records.jsonl").open("w") as f:
        for k, t in enumerate(TEAMS):
            for e in range(10):
                f.write(json.dumps({
                    "kind": "sheet", "stage_id": "s1", "team_id": t, "source": "committee",
                    "component_id": "experts", "evaluator_id": f"e{e:02d}",
                    "affiliation": f"University {e}",
                    "scores": {"report": min(10, 5 + k + rng.random()), "logs": 6}}) + "\n")
        for n in range(votes):
            a, b = rng.sample(TEAMS, 2)
            f.write(json.dumps({
                "kind": "vote", "stage_id": "s1", "team_id": "*", "source": "users",
                "vote": {"voter_id": f"u{n % 49:02d}", "battle_id": f"b{n:07d}", "a": a,
                         "b": b, "winner": rng.choice("ab")}}) + "\n")


def _time(cmd: list[str], cwd: Path) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"{' '.join(cmd[:3])} failed ({proc.returncode}): {proc.stderr[-800:]}")
    return wall


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--votes", type=int, default=200_000)
    ap.add_argument("--keep", type=Path, help="lay out here and keep it (default: a temp dir)")
    args = ap.parse_args()
    kai = str(Path(sys.executable).with_name("kai"))
    root = args.keep or Path(tempfile.mkdtemp(prefix="kai-records-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        _lay_out(root, args.votes)
        teams = [f"{t}.yaml" for t in TEAMS]
        db = ["--db", f"sqlite:///{root / 'store.sqlite'}"]
        rows = [
            (f"import (checked) {args.votes + 50} records",
             _time([kai, "records", "import", "records.jsonl", *teams, "--program",
                    "program.yaml", *db], root)),
            ("audit-log verify", _time([kai, "audit-log", "verify", *db], root)),
            ("stage run (verify + score)",
             _time([kai, "stage", "run", "--program", "program.yaml", "--stage", "s1", *teams,
                    *db], root)),
        ]
        print(f"{'step':<36}{'wall s':>8}")
        for name, wall in rows:
            print(f"{name:<36}{wall:>8.1f}")
        print(f"verification share of stage run: {rows[1][1] / rows[2][1]:.0%} "
              "(audit-log verify alone includes its own start-up)")
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
