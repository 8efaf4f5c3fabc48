"""The streaming benchmark script runs end to end (tiny shapes), so it cannot rot unseen.

The issue-4 numbers come from this script on 2 GB checkpoints (docs/performance.md);
here it only has to build two sharded checkpoints, time them, run the real ``kai
provenance`` console script and print its table with a derived verdict.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "provenance_stream.py"


def test_stream_benchmark_smoke_run(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--dir", str(tmp_path / "ckpt"), "--layers", "2",
         "--hidden", "256", "--intermediate", "704", "--vocab", "4000", "--shard-mb", "5",
         "--target-ratio", "1e9"],  # tiny files: the time target means nothing here
        capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert "raw read, both checkpoints (cat)" in out
    # the eighth row, tokenizer lineage, is evidence only and not measured: the
    # benchmark's checkpoints ship weights without a tokenizer
    assert "verdict derived (7/8 evidence rows derived)" in out
    assert "peak RSS of kai" in out and "FAIL" not in out
    assert not (tmp_path / "ckpt").exists()  # made here and not --keep: removed
