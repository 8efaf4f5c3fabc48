"""Time `kai demo` on a cold cache (stand-ins built) and a warm one (stand-ins cached).

Targets from issue 2 on the 2-core machine: first run under 3 minutes, cached
run under 30 seconds. Prints one table; exits 1 if a target is missed.

    .venv/bin/python benchmarks/demo_timing.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

TARGETS = {"first run (builds stand-ins)": 180.0, "cached run": 30.0}


def run(out: Path, cache: Path) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one `kai demo` in a child process."""
    env = {**os.environ, "KAI_CACHE_DIR": str(cache)}
    env.pop("KAI_DATABASE_URL", None)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-m", "kaieval.cli", "demo", "--out", str(out)],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    assert proc.stderr is not None
    err = proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own peak RSS, not the max of all
    wall = time.perf_counter() - t0
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        sys.exit(f"kai demo failed:\n{err.decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--keep", type=Path, help="use this folder instead of a temporary one")
    args = ap.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="kai-demo-timing-"))
    rows = []
    for label in TARGETS:
        wall, rss = run(root / "out", root / "cache")
        rows.append((label, wall, rss, TARGETS[label]))
    print(f"{'run':32} {'wall s':>8} {'peak RSS MiB':>13} {'target s':>9} {'wall/target':>12}")
    ok = True
    for label, wall, rss, target in rows:
        ok &= wall < target
        print(f"{label:32} {wall:8.1f} {rss:13.0f} {target:9.0f} {wall / target:12.2f}")
    print(f"cached/first ratio: {rows[1][1] / rows[0][1]:.3f}   cores: {os.cpu_count()}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
