"""Pieces every local backend shares."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kaieval.errors import KaiError

if TYPE_CHECKING:
    from kaieval.tokenizer import TokenizerFile

_NO_TOKENIZER = "no tokenizer in the folder"


def chat_template_hash(tokenizer: Any, wanted: bool, where: Path) -> str | None:
    """Hash of the chat template when one is asked for (recorded: it changes every prompt);
    asking for a template the tokenizer does not have is an input error."""
    template = getattr(tokenizer, "chat_template", None)
    if wanted and not template:
        raise KaiError("--chat-template asked but the tokenizer has no chat template",
                       where=str(where))
    return hashlib.sha256(str(template).encode()).hexdigest() if wanted and template else None


def check_tokenizer(model_dir: Path, *, trust_remote_code: bool = False) -> TokenizerFile | None:
    """Read a model folder's tokenizer with :mod:`kaieval.tokenizer`, before any model load.

    Why: the benchmark engine reads tokenizers with the loader tokenizer efficiency and
    lineage use, so a broken or unsupported tokenizer is one line naming the formats
    tried (and why each refused), not a transformers traceback after the weights loaded.
    Returns ``None`` -- and leaves the folder to transformers -- where the loader finds no
    tokenizer file it knows (a name such as ``spiece.model``) or, with
    ``trust_remote_code``, cannot read one (the repository's code may define it). The
    tokenizer transformers builds is still transformers' own: see docs/eval-engine.md.
    """
    from kaieval.tokenizer import load_tokenizer

    try:
        return load_tokenizer(model_dir)
    except KaiError as e:
        if trust_remote_code or e.detail.startswith(_NO_TOKENIZER):
            return None
        raise
