"""Helpers the CLI tests share (imported by module name; the test folder is on sys.path)."""

from __future__ import annotations

from pathlib import Path


def import_cmd(workdir: Path, file: Path | str) -> list[str]:
    """``kai records import FILE TEAMS... --program P``: the arguments for the CLI runner."""
    return ["records", "import", str(file), *(str(workdir / f"{t}.yaml")
                                           for t in ("alpha", "beta", "gamma")),
            "--program", str(workdir / "program.yaml")]
