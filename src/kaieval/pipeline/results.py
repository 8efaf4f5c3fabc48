"""Storing a stage result: the step after scoring that touches the store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from kaieval.errors import KaiError
from kaieval.scoring.results import AuditCheckpoint, StageResult

if TYPE_CHECKING:
    from kaieval.scoring.stage import Entrant
    from kaieval.spec.load import LoadedDossier
    from kaieval.store import Store

# what may differ between two runs on the same inputs: the checkpoint moves with every write
_VOLATILE = {"created_at", "code_version", "audit_checkpoint"}


def quote_checkpoint(result: StageResult, store: Store) -> StageResult:
    """``result`` quoting the audit log's checkpoint now, right after it was scored.

    Signed (and appended to the key folder) if a signing key exists, else unsigned.
    It goes into the stored result and the reports, so a published report names the
    log state it rests on and ``kai audit-log verify --checkpoint report.json`` can
    later prove the log still extends it. Taken after the records were read: a write
    landing in between makes it cover slightly more than was scored, never less.
    """
    cp = store.audit_checkpoint()
    return result.model_copy(update={"audit_checkpoint": AuditCheckpoint(**cp.to_dict())})


def save_stage_result(store: Store, result: StageResult, run_label: str, actor: str) -> bool:
    """Store a stage result unless an equal one (ignoring when, by which build and at which
    audit-log checkpoint it was computed) is already there: rerunning a stage on unchanged
    inputs writes nothing and adds nothing to the audit log. Returns True if something was
    written."""
    payload = result.model_dump(mode="json", by_alias=True)
    old = store.stage_result(result.stage_id, run_label)
    if old is not None:
        same = {k: v for k, v in old.items() if k not in _VOLATILE} == {
            k: v for k, v in payload.items() if k not in _VOLATILE}
        if same:
            return False
    return store.put_stage_result(result.stage_id, run_label, payload,
                                  result.input_hashes.get("records", ""), actor=actor)


def stage_entrants(dossiers: Sequence[LoadedDossier], stage_id: str
                   ) -> tuple[list[Entrant], list[Entrant]]:
    """The teams that submitted to ``stage_id``: entrants, then repechage applicants.

    Dossiers without a submission for the stage are left out; none at all is an input
    error (there would be nothing to score).
    """
    from kaieval.scoring.stage import Entrant

    entrants: list[Entrant] = []
    applicants: list[Entrant] = []
    for d in dossiers:
        sub = d.dossier.submissions.get(stage_id)
        if sub is None:
            continue
        e = Entrant(d.dossier.team.id, d.dossier.team.name, sub, d.sha256)
        (applicants if sub.applies_to == "repechage" else entrants).append(e)
    if not entrants:
        raise KaiError(f"none of the dossiers has a submission for stage '{stage_id}'")
    return entrants, applicants


def load_stage_results(store: Store, stage_ids: Sequence[str], run_label: str
                       ) -> list[StageResult]:
    """Stored stage results, in the order asked; a missing one is an input error."""
    results = []
    for sid in stage_ids:
        payload = store.stage_result(sid, run_label)
        if payload is None:
            raise KaiError(f"no stored result for stage '{sid}' (run '{run_label}')")
        results.append(StageResult.model_validate(payload))
    return results
