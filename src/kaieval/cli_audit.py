"""``kai audit`` and ``kai tokenizer-efficiency`` (registered on ``kai``)."""

from __future__ import annotations
