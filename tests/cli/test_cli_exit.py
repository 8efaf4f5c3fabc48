"""The CLI's quick exit (``kaieval.cli._exit``): same status, same output, atexit run."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kaieval.cli._exit import exit_code, leave

# a kai process with torch loaded (the quick path), plus an atexit callback and a large
# stdout, so lost buffers or skipped callbacks would show
SCRIPT = """
import atexit, sys
from pathlib import Path
import torch  # noqa: F401  the quick path is taken only with torch loaded
marker = Path(sys.argv[1])
atexit.register(lambda: marker.write_text("ran"))
print("x" * 200000)
sys.argv = ["kai", *sys.argv[2:]]
from kaieval.cli import main
main()
"""


def _kai(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path / "atexit"), *args],
                          capture_output=True, text=True, timeout=120, check=False)


def test_success_keeps_output_and_runs_atexit(tmp_path: Path) -> None:
    done = _kai(tmp_path, "--help")
    assert done.returncode == 0
    assert done.stdout.startswith("x" * 200000) and "Usage" in done.stdout
    assert (tmp_path / "atexit").read_text() == "ran"


def test_input_error_keeps_status_and_message(tmp_path: Path) -> None:
    done = _kai(tmp_path, "eval", "--model", str(tmp_path / "absent"), "--tasks", "")
    assert done.returncode == 2
    assert done.stderr.strip().startswith("error:") and "Traceback" not in done.stderr
    assert (tmp_path / "atexit").read_text() == "ran"


def test_exit_codes_as_sys_exit_gives_them(capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(None) == 0
    assert exit_code(3) == 3
    assert exit_code(256 + 2) == 2
    assert exit_code("bad thing") == 1
    assert capsys.readouterr().err == "bad thing\n"


def test_another_thread_alive_means_the_normal_exit() -> None:
    stop = threading.Event()
    worker = threading.Thread(target=stop.wait)
    worker.start()
    try:
        with pytest.raises(SystemExit) as raised:
            leave(4)  # torch may be loaded in this test process: the thread must decide
        assert raised.value.code == 4
    finally:
        stop.set()
        worker.join()
