"""The model and server every real-vLLM test runs on (``make test-vllm``).

``benchmarks/vllm_model.py`` builds the model (``benchmarks/vllm_vs_hf.py`` measures on
the same one) and starts and stops a real vLLM OpenAI-compatible server on 127.0.0.1;
it is a benchmark script, not a package module, so it is loaded here by path, once.
The fixtures built on it (``vllm_model_dir``, ``vllm_server``) are in ``conftest.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from importlib import util
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _load(name: str, path: Path) -> Any:
    spec = util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


VLLM_MODEL = _load("vllm_model", ROOT / "benchmarks" / "vllm_model.py")
SERVED_NAME: str = VLLM_MODEL.SERVED_NAME


def build_model(cache_dir: Path) -> Path:
    """The tiny model (cached by recipe hash under ``cache_dir``)."""
    path: Path = VLLM_MODEL.build_model(cache_dir)
    return path


@contextmanager
def served(model_dir: Path, log: Path) -> Iterator[str]:
    """A real vLLM server on ``model_dir`` for the duration; yields its base URL."""
    proc, base = VLLM_MODEL.start_server(model_dir, log)
    try:
        yield base
    finally:
        VLLM_MODEL.stop_server(proc)
