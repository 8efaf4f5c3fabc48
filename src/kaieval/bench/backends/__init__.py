"""Backend registry, lazy: ``get_backend("hf")`` imports torch only when asked.

A table of names to module paths instead of an ``isinstance`` chain: the core
(tasks, engine, cache, CLI) imports without torch, vllm or an HTTP client, and
adding a backend is one line here plus one module.
"""

from __future__ import annotations

import importlib
from typing import Any

from kaieval.bench.api import Backend
from kaieval.errors import KaiError

REGISTRY: dict[str, tuple[str, str]] = {
    "hf": ("kaieval.bench.backends.hf", "HFBackend"),
    "openai": ("kaieval.bench.backends.openai", "OpenAIBackend"),
    "vllm": ("kaieval.bench.backends.vllm", "VLLMBackend"),
}


def backend_names() -> list[str]:
    return sorted(REGISTRY)


def get_backend(name: str, **kwargs: Any) -> Backend:
    """Import and construct the backend ``name`` with ``kwargs`` (its constructor's arguments)."""
    if name not in REGISTRY:
        raise KaiError(f"unknown backend {name!r}; known: {', '.join(backend_names())}",
                       where="--backend")
    module_path, class_name = REGISTRY[name]
    try:
        module = importlib.import_module(module_path)
    except ImportError as exc:
        raise KaiError(f"backend {name!r} is not available: {exc}", where="--backend") from exc
    cls = getattr(module, class_name)
    try:
        backend: Backend = cls(**kwargs)
    except TypeError as exc:
        raise KaiError(f"bad options for backend {name!r}: {exc}", where="--backend") from exc
    return backend


__all__ = ["REGISTRY", "backend_names", "get_backend"]
