"""Wall time, CPU time and peak RSS of exactly one command, for the benchmark scripts.

Why a launcher: Linux keeps, in the peak RSS of a process that ``exec``s, the memory
of the process it was forked (or ``vfork``ed, as ``subprocess`` does) from. A
benchmark script that holds a model or lm-eval's task index in memory and times its
own child therefore reports its own size for any child smaller than itself (in
``vs_lm_eval.py`` both tools' generation rows read 716.76 MB to the kilobyte, the
script's own peak). A bare interpreter (~10 MB) forks the command from itself and
reports ``wait4``'s usage of exactly that grandchild. ``peak_rss_self`` does the same
for a worker that measures itself: ``VmHWM`` belongs to the process image, which
``exec`` replaced, so the parent's pages are not in it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

LAUNCHER = """
import json, os, sys, time
log = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.dup2(log, 2)
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
print(json.dumps({"wall": wall, "cpu": ru.ru_utime + ru.ru_stime,
                  "code": os.waitstatus_to_exitcode(status), "maxrss_kb": ru.ru_maxrss}))
"""


@dataclass(frozen=True)
class ChildUsage:
    wall_s: float
    cpu_s: float  # user + system
    code: int
    peak_rss_mb: float  # of exactly that process


def run_child(argv: list[str], stderr_log: Path, env: dict[str, str]) -> ChildUsage:
    """Run ``argv`` (stdout discarded, stderr to ``stderr_log``) and return its usage."""
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, str(stderr_log), *argv], env=env,
                          capture_output=True, text=True, check=True)
    got = json.loads(proc.stdout)
    return ChildUsage(float(got["wall"]), float(got["cpu"]), int(got["code"]),
                      got["maxrss_kb"] / 1024)  # Linux: ru_maxrss is in kilobytes


def peak_rss_self_mb() -> float:
    """This process's peak RSS since its last ``exec`` (``VmHWM``), in MB."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status (not Linux?)")
