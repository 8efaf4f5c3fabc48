"""benchmarks/child_usage.py: a child's own peak RSS, not the benchmark's."""

from __future__ import annotations

import os
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH))

from child_usage import run_child  # noqa: E402


def test_small_child_of_a_large_parent_reads_small(tmp_path: Path) -> None:
    held = bytearray(300 * 2**20)  # the parent's pages, touched
    for i in range(0, len(held), 4096):
        held[i] = 1
    small = run_child([sys.executable, "-c", "pass"], tmp_path / "a.log", dict(os.environ))
    large = run_child([sys.executable, "-c", "b = bytearray(200 * 2**20); b[::4096] = "
                       "b'x' * len(b[::4096]); print('done')"], tmp_path / "b.log",
                      dict(os.environ), stdout_to_log=True)
    assert small.code == 0 and large.code == 0
    assert small.peak_rss_mb < 100  # a bare interpreter, not this 300 MB process
    assert large.peak_rss_mb > 200
    assert (tmp_path / "b.log").read_text() == "done\n"
    failed = run_child([sys.executable, "-c", "raise SystemExit(3)"], tmp_path / "c.log",
                       dict(os.environ))
    assert failed.code == 3
    del held
