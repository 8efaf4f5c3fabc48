"""The shape of the `kai` package: every command module registered, `kai --help` light.

Adding a command group is one module in ``kaieval/cli/`` with ``app = typer.Typer(...)``
plus one ``app.add_typer(...)`` line in ``kaieval/cli/__init__.py``; these tests fail if a
module is written but not registered, or if it imports an engine at import time.
"""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import typer

import kaieval.cli
from kaieval.cli import app

HEAVY = ("numpy", "torch", "transformers", "sqlalchemy", "jinja2", "kaieval.store",
         "kaieval.provenance", "kaieval.bench", "kaieval.scoring",
         "httpx")  # a quarter of a second: only `kai remote` commands import it


def _modules() -> list[str]:
    return [m.name for m in pkgutil.iter_modules(kaieval.cli.__path__)
            if not m.name.startswith("_")]


def test_every_command_module_is_registered() -> None:
    registered = {id(info.typer_instance) for info in app.registered_groups}
    for name in _modules():
        module = importlib.import_module(f"kaieval.cli.{name}")
        assert isinstance(module.app, typer.Typer), name
        assert id(module.app) in registered, f"kaieval/cli/{name}.py is not registered"


def test_importing_the_cli_loads_no_engine() -> None:
    code = ("import sys, kaieval.cli; "
            f"print(','.join(m for m in {HEAVY!r} if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, check=True)
    assert proc.stdout.strip() == ""


def test_python_dash_m_runs_the_same_app() -> None:
    proc = subprocess.run([sys.executable, "-m", "kaieval.cli", "--help"], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for cmd in ("demo", "validate", "eval", "report", "audit", "tokenizer-efficiency",
                "audit-log", "records", "stage", "program", "provenance"):
        assert cmd in proc.stdout
