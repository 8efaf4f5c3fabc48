"""Checks that decide whether a benchmark can be measured on a model at all.

Apart from :mod:`kaieval.pipeline.engines` so that module stays small; they decide which
benchmarks get a number, so they are part of the bench engine's version
(``engines._ENGINE_CODE``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kaieval.errors import KaiError
from kaieval.io import CONFIG_MAX_BYTES, load_json_file


def has_chat_template(model_dir: Path) -> bool:
    """Whether a model folder ships a chat template (tokenizer_config.json or a .jinja file)."""
    try:
        cfg = load_json_file(model_dir / "tokenizer_config.json", max_bytes=CONFIG_MAX_BYTES,
                             what="config files")
        has = isinstance(cfg, dict) and bool(cfg.get("chat_template"))
    except KaiError:
        has = False
    return has or (model_dir / "chat_template.jinja").is_file()


def no_room(task: Any, model_dir: Path) -> str:
    """Why a generation task cannot be measured on this model, or "".

    A task that asks for as many new tokens as the model's context window holds leaves
    no room for its prompt: the backend would keep the prompt's last token only, and the
    score would say nothing about the model (the demo's 512-token stand-ins on IFEval's
    512 new tokens). Better "not measured" with the reason than a number that means
    nothing.
    """
    from kaieval.bench.api import GenerationRequest

    try:
        cfg = load_json_file(model_dir / "config.json", max_bytes=CONFIG_MAX_BYTES,
                             what="config files")
    except KaiError:
        return ""
    if not isinstance(cfg, dict):
        return ""
    window = next((cfg[k] for k in ("max_position_embeddings", "n_positions", "n_ctx")
                   if isinstance(cfg.get(k), int)), None)
    wanted = max((r.max_tokens for d in task.docs(limit=1) for b in task.build(d)
                  for r in b.requests if isinstance(r, GenerationRequest)), default=0)
    if window is None or wanted < window:
        return ""
    return (f"the task generates up to {wanted} tokens and the model's context window is "
            f"{window}: no room for the prompt")


def needs_chat(task: Any) -> bool:
    """Whether a task sends its prompts as chat messages (IFEval-style tasks do)."""
    from kaieval.bench.api import GenerationRequest

    return any(isinstance(r, GenerationRequest) and r.chat
               for d in task.docs(limit=1) for b in task.build(d) for r in b.requests)
