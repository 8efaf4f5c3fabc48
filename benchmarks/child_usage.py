"""Wall time, CPU time, peak RSS and disk reads of exactly one command, for benchmarks.

Why a launcher: Linux keeps, in the peak RSS of a process that ``exec``s, the memory
of the process it was forked (or ``vfork``ed, as ``subprocess`` does) from. A
benchmark script that holds a model, checkpoints or lm-eval's task index in memory and
times its own child therefore reports its own size for any child smaller than itself
(``provenance_stream.py`` read 824 MB, issue 16; in ``vs_lm_eval.py`` both tools'
generation rows read 716.76 MB to the kilobyte, the script's own peak). A bare
interpreter (~10 MB) forks the command from itself and reports ``wait4``'s usage of
exactly that grandchild. ``peak_rss_self_mb`` is the same for a worker that measures
itself: ``VmHWM`` belongs to the process image, which ``exec`` replaced.
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
stdout_to_log = sys.argv[2] == "1"
t0 = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.dup2(log if stdout_to_log else os.open(os.devnull, os.O_WRONLY), 1)
    os.dup2(log, 2)
    os.execvp(sys.argv[3], sys.argv[3:])
_, status, ru = os.wait4(pid, 0)
wall = time.perf_counter() - t0
print(json.dumps({"wall": wall, "cpu": ru.ru_utime + ru.ru_stime,
                  "code": os.waitstatus_to_exitcode(status), "maxrss_kb": ru.ru_maxrss,
                  "inblock": ru.ru_inblock}))
"""


@dataclass(frozen=True)
class ChildUsage:
    wall_s: float
    cpu_s: float  # user + system: what the run costs when it has the cores to itself
    code: int
    peak_rss: int  # bytes, of exactly that process
    disk_read: int  # bytes it made the kernel read from storage (ru_inblock x 512)

    @property
    def peak_rss_mb(self) -> float:
        """Peak RSS in MiB (what ``ru_maxrss / 1024`` gave before)."""
        return self.peak_rss / 2**20


def run_child(argv: list[str], log: Path, env: dict[str, str], *,
              stdout_to_log: bool = False) -> ChildUsage:
    """Run ``argv`` with stderr (and, if asked, stdout; else it is discarded) to ``log``."""
    proc = subprocess.run([sys.executable, "-c", LAUNCHER, str(log),
                           "1" if stdout_to_log else "0", *argv], env=env,
                          capture_output=True, text=True, check=True)
    got = json.loads(proc.stdout)
    return ChildUsage(float(got["wall"]), float(got["cpu"]), int(got["code"]),
                      int(got["maxrss_kb"]) * 1024,  # Linux: ru_maxrss is in kilobytes
                      int(got["inblock"]) * 512)  # and ru_inblock in 512-byte blocks


def peak_rss_self_mb() -> float:
    """This process's peak RSS since its last ``exec`` (``VmHWM``), in MiB."""
    for line in Path("/proc/self/status").read_text(encoding="ascii").splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024  # kB
    raise RuntimeError("no VmHWM in /proc/self/status (not Linux?)")
