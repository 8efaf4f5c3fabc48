"""Superseded and deleted versions stay readable; retractions take records out of scoring."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine, text

from kaieval.errors import KaiError
from kaieval.records import CommitteeSheet, Record
from kaieval.store import Store, Superseding


def _sheet(score: float, evaluator: str = "e1") -> CommitteeSheet:
    return CommitteeSheet(stage_id="s1", team_id="alpha", source="committee",
                          component_id="tech", evaluator_id=evaluator, scores={"novelty": score})


def test_replace_refused_without_permission_and_nothing_written(store: Store) -> None:
    store.put([_sheet(4.0)], actor="office")
    before = store.audit_head()
    with pytest.raises(Superseding) as err:
        store.put([_sheet(7.0, "e2"), _sheet(5.0)], actor="office", replace=False)
    assert err.value.records == [(1, "sheet/s1/tech/alpha/e1")]
    assert store.audit_head() == before
    assert [r.scores for r in store.records()] == [{"novelty": 4.0}]  # type: ignore[attr-defined]


def test_replace_keeps_the_old_version_with_its_reason(store: Store) -> None:
    store.put([_sheet(4.0)], actor="office")
    store.put([_sheet(5.0)], actor="office", reason="typo on the paper sheet")
    versions = store.history("sheet/s1/tech/alpha/e1")
    assert [e.action for e, _ in versions] == ["insert", "replace"]
    assert '"novelty":4.0' in (versions[0][1] or "")
    assert '"novelty":5.0' in (versions[1][1] or "")
    assert versions[1][0].note == "typo on the paper sheet"
    assert store.audit_verify() == []


def test_retract_and_restore(store: Store) -> None:
    store.put([_sheet(4.0), _sheet(6.0, "e2")], actor="office")
    key = "sheet/s1/tech/alpha/e1"
    store.retract(key, actor="office", reason="evaluator conflicted")
    scored = [r for r in store.records(stage_id="s1") if isinstance(r, CommitteeSheet)]
    assert [r.evaluator_id for r in scored] == ["e2"]
    assert key in {r.natural_key() for r in store.records(include_retracted=True)}
    with pytest.raises(KaiError, match="already retracted"):
        store.retract(key, actor="office", reason="again")
    store.restore(key, actor="office", reason="conflict declared in error")
    assert len([r for r in store.records() if isinstance(r, CommitteeSheet)]) == 2
    with pytest.raises(KaiError, match="not retracted"):
        store.restore(key, actor="office", reason="again")
    with pytest.raises(KaiError, match="no such record"):
        store.retract("sheet/s1/tech/alpha/nobody", actor="office", reason="x")
    with pytest.raises(KaiError, match="needs a reason"):
        store.retract(key, actor="office", reason="  ")
    assert store.audit_verify() == []


def test_retracted_row_that_no_longer_reads_stops_blocking(store: Store, raw: Engine) -> None:
    store.put([_sheet(4.0)], actor="office")
    with raw.begin() as conn:  # a NaN stored before scores were checked
        conn.execute(text("UPDATE results SET payload = replace(payload, '4.0', 'NaN')"))
    with pytest.raises(KaiError, match="not a valid record"):
        store.records()
    store.retract("sheet/s1/tech/alpha/e1", actor="office", reason="NaN score")
    assert [r.kind for r in store.records()] == ["retraction"]  # type: ignore[attr-defined]


def test_history_tampering_is_caught(store: Store, raw: Engine) -> None:
    store.put([_sheet(4.0)], actor="office")
    store.put([_sheet(5.0)], actor="office", reason="correction")
    store.delete("sheet/s1/tech/alpha/e1", actor="office", reason="withdrawn")
    assert store.audit_verify() == []
    with raw.begin() as conn:
        conn.execute(text("UPDATE result_history SET payload = replace(payload, '4.0', '9.0')"))
    assert any("content does not match" in p for p in store.audit_verify())
    with raw.begin() as conn:
        conn.execute(text("DELETE FROM result_history"))
    problems = store.audit_verify()
    assert sum("is missing (deleted outside the API)" in p for p in problems) == 2


def test_a_stripped_reason_breaks_the_chain(store: Store, raw: Engine) -> None:
    records: list[Record] = [_sheet(4.0)]
    store.put(records, actor="office")
    store.put([_sheet(5.0)], actor="office", reason="correction")
    with raw.begin() as conn:
        conn.execute(text("UPDATE audit_log SET note = ''"))
    assert any("do not match its hash" in p for p in store.audit_verify())
