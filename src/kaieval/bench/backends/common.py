"""Pieces every local backend shares."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from kaieval.errors import KaiError


def chat_template_hash(tokenizer: Any, wanted: bool, where: Path) -> str | None:
    """Hash of the chat template when one is asked for (recorded: it changes every prompt);
    asking for a template the tokenizer does not have is an input error."""
    template = getattr(tokenizer, "chat_template", None)
    if wanted and not template:
        raise KaiError("--chat-template asked but the tokenizer has no chat template",
                       where=str(where))
    return hashlib.sha256(str(template).encode()).hexdigest() if wanted and template else None
