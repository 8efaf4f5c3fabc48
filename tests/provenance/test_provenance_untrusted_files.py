"""Issue 11, item 5: the bad-checkpoint generator's untrusted-file cases, run through the
commands a user types. Each must end at once (no hang on a FIFO, no recursion, nothing
big read) with exit 2 and one line naming the file -- never a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[2] / "src"

PROVENANCE = {
    "fifo_weights": "model.safetensors: is a FIFO, not a regular file: refused",
    "fifo_tokenizer": "tokenizer.json: is a FIFO, not a regular file: refused",
    "deep_config": "config.json: not valid JSON: nested deeper than 64 levels",
    "deep_tokenizer": "tokenizer.json: not valid JSON: nested deeper than 64 levels",
    "huge_tokenizer": "tokenizer.json: 128.0 MB exceeds the 128 MB limit for tokenizer files",
    "tokenizer_link_outside": "tokenizer.json: is a symbolic link to ",
}
TOKENIZER = {k: PROVENANCE[k] for k in ("fifo_tokenizer", "deep_tokenizer", "huge_tokenizer",
                                        "tokenizer_link_outside")}


def _kai(*args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    return subprocess.run([sys.executable, "-m", "kaieval.cli", *args], capture_output=True,
                          text=True, timeout=60, env=env)  # a hang fails, not waits


def _one_line(proc: subprocess.CompletedProcess[str], says: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert says in lines[0]


@pytest.mark.parametrize("case", sorted(PROVENANCE))
def test_kai_provenance_refuses_in_one_line(case: str, bad_cases: dict[str, Path]) -> None:
    folder = bad_cases[case]
    _one_line(_kai("provenance", str(folder), "--ref", str(folder)), PROVENANCE[case])


@pytest.mark.parametrize("case", sorted(TOKENIZER))
def test_kai_tokenizer_efficiency_refuses_in_one_line(case: str,
                                                      bad_cases: dict[str, Path]) -> None:
    _one_line(_kai("tokenizer-efficiency", str(bad_cases[case])), TOKENIZER[case])


def test_the_link_outside_is_never_read(bad_cases: dict[str, Path]) -> None:
    """The message names where the link leads, and the folder it left."""
    folder = bad_cases["tokenizer_link_outside"]
    proc = _kai("provenance", str(folder), "--ref", str(folder))
    assert f"outside {folder.resolve()}: refused" in proc.stderr
