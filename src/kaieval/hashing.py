"""Content hashes for inputs, so every stored result names exactly what it was computed from."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any


def sha256_bytes(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    """``sha256:<hex>`` of a regular file's bytes (large files: remembered, ``filehash``)."""
    from kaieval.filehash import sha256_hex
    from kaieval.io import open_regular  # a FIFO or device is refused, never waited on

    return "sha256:" + sha256_hex(path, opener=open_regular)


def canonical_json(obj: Any) -> bytes:
    """JSON with sorted keys and no whitespace: equal data gives equal bytes."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False,
                      default=str).encode()


def sha256_json(obj: Any) -> str:
    return sha256_bytes(canonical_json(obj))
