"""A persistent cache of measurement records keyed by the content of their inputs.

Measuring a model is the slow part of a run; its result depends only on the
weights, the data, the settings and the code. Keying a record by the hash of
all four means a rerun costs nothing while any change to an input, or to the
code, measures afresh (the habit HELM and lm-evaluation-harness follow for
model requests).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from kaieval.hashing import sha256_json
from kaieval.io import atomic_write_text
from kaieval.records import Record, record_from_json
from kaieval.version import code_version

R = TypeVar("R", bound=Record)


class RecordCache:
    """JSON file of ``key -> record``; written atomically, tolerant of a corrupt file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: dict[str, dict[str, object]] = {}
        try:
            loaded = json.loads(path.read_text("utf-8"))
            if isinstance(loaded, dict):
                self._data = loaded
        except (OSError, ValueError):
            self._data = {}

    def get_or_measure(self, inputs: dict[str, object], measure: Callable[[], R],
                       rebind: Callable[[R], R]) -> R:
        """The cached record for ``inputs`` (rebound to the caller's stage/team), or measure."""
        key = sha256_json({**inputs, "code": code_version()})
        hit = self._data.get(key)
        if hit is not None:
            try:
                return rebind(record_from_json(hit))  # type: ignore[arg-type]
            except ValueError:
                pass
        rec = measure()
        self._data[key] = rec.model_dump(mode="json")
        self._save()
        return rec

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_text(self.path, json.dumps(self._data, ensure_ascii=False, sort_keys=True))
