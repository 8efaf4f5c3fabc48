"""Storing a stage result: the step after scoring that touches the store."""

from __future__ import annotations

from typing import TYPE_CHECKING

from kaieval.scoring.results import StageResult

if TYPE_CHECKING:
    from kaieval.store import Store

_VOLATILE = {"created_at", "code_version"}


def save_stage_result(store: Store, result: StageResult, run_label: str, actor: str) -> bool:
    """Store a stage result unless an equal one (ignoring when and by which build it was
    computed) is already there: rerunning a stage on unchanged inputs writes nothing and
    adds nothing to the audit log. Returns True if something was written."""
    payload = result.model_dump(mode="json", by_alias=True)
    old = store.stage_result(result.stage_id, run_label)
    if old is not None:
        same = {k: v for k, v in old.items() if k not in _VOLATILE} == {
            k: v for k, v in payload.items() if k not in _VOLATILE}
        if same:
            return False
    return store.put_stage_result(result.stage_id, run_label, payload,
                                  result.input_hashes.get("records", ""), actor=actor)
