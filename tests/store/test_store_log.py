"""The audit chain catches edits made behind the store's back (raw SQL on the database)."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import Engine, text

from kaieval.records import Record
from kaieval.store import Store
from kaieval.store.log import AuditEntry, verify_chain


@pytest.fixture
def filled(store: Store, samples: list[Record]) -> Store:
    """A store with 8 results, one replace, one delete and a stage result: 11 audit entries."""
    store.put(samples, actor="run-1")
    store.put([samples[0].model_copy(update={"score": 0.7})], actor="run-2")
    store.delete(samples[-1].natural_key(), actor="admin")
    store.put_stage_result("stage1", "main", {"teams": ["alpha", "beta"]}, "sha256:in",
                           actor="run-2")
    assert store.audit_head()[0] == len(samples) + 3
    assert store.audit_verify() == []
    return store


def _sql(raw: Engine, statement: str, **params: object) -> int:
    with raw.begin() as conn:
        return conn.execute(text(statement), params).rowcount


def _one(problems: list[str], *needles: str) -> str:
    """The problem lines must mention every needle (at least one line matching all)."""
    assert problems, "tampering went undetected"
    hits = [p for p in problems if all(n in p for n in needles)]
    assert hits, f"no problem mentions {needles}: {problems}"
    return hits[0]


@pytest.mark.parametrize(("column", "value"), [
    ("actor", "someone-else"),
    ("action", "replace"),
    ("at", "2020-01-01T00:00:00.000000Z"),
    ("entity_key", "benchmark/stage1/alpha/candidate/other"),
    ("content_hash", "sha256:" + "1" * 64),
    ("prev_hash", "f" * 64),
])
def test_altered_audit_field_detected(filled: Store, raw: Engine, column: str,
                                      value: str) -> None:
    assert _sql(raw, f"UPDATE audit_log SET {column} = :v WHERE seq = 3", v=value) == 1
    _one(filled.audit_verify(), "audit entry 3", "altered")


def test_altered_audit_hash_breaks_the_next_link(filled: Store, raw: Engine) -> None:
    _sql(raw, "UPDATE audit_log SET hash = :v WHERE seq = 4", v="a" * 64)
    problems = filled.audit_verify()
    _one(problems, "audit entry 4", "altered")
    _one(problems, "audit entry 5", "chain broken")


def test_deleted_middle_audit_row_detected(filled: Store, raw: Engine) -> None:
    assert _sql(raw, "DELETE FROM audit_log WHERE seq = 5") == 1
    _one(filled.audit_verify(), "entry 5 missing")


def test_deleted_last_audit_rows_detected(filled: Store, raw: Engine) -> None:
    last = filled.audit_head()[0]
    assert _sql(raw, "DELETE FROM audit_log WHERE seq >= :s", s=last - 1) == 2
    problems = filled.audit_verify()
    _one(problems, f"ends at entry {last - 2}", f"head records entry {last}")


def test_truncated_tail_with_forged_head_still_detected(filled: Store, raw: Engine) -> None:
    """Remove the last entry *and* rewind the head: the row it covered is now unaccounted."""
    last = filled.audit_entries(limit=2)
    _sql(raw, "DELETE FROM audit_log WHERE seq = :s", s=last[1].seq)
    _sql(raw, "UPDATE audit_head SET seq = :s, hash = :h", s=last[0].seq, h=last[0].hash)
    _one(filled.audit_verify(), "stage_results 'stage1/main'", "no audit entry")


def test_deleted_audit_head_detected(filled: Store, raw: Engine) -> None:
    _sql(raw, "DELETE FROM audit_head")
    _one(filled.audit_verify(), "audit head", "missing")


def test_altered_result_payload_detected(filled: Store, raw: Engine,
                                         samples: list[Record]) -> None:
    key = samples[1].natural_key()
    with raw.connect() as conn:
        payload = json.loads(conn.execute(text("SELECT payload FROM results WHERE "
                                               "natural_key = :k"), {"k": key}).scalar_one())
    payload["score"] = 0.99  # keep it a valid record: only the audit hash can tell
    _sql(raw, "UPDATE results SET payload = :p WHERE natural_key = :k",
         p=json.dumps(payload), k=key)
    problems = filled.audit_verify()
    _one(problems, key, "content does not match audit entry 2")
    _one(problems, key, "column content_hash disagrees")  # stale idempotence column


def test_whitespace_only_payload_edit_is_not_a_change(filled: Store, raw: Engine,
                                                      samples: list[Record]) -> None:
    """The hash covers what the payload says, so reformatting the JSON is not tampering."""
    key = samples[1].natural_key()
    with raw.connect() as conn:
        payload = conn.execute(text("SELECT payload FROM results WHERE natural_key = :k"),
                               {"k": key}).scalar_one()
    _sql(raw, "UPDATE results SET payload = :p WHERE natural_key = :k",
         p=json.dumps(json.loads(payload), indent=2), k=key)
    assert filled.audit_verify() == []


@pytest.mark.parametrize(("column", "value"), [
    ("team_id", "gamma"), ("content_hash", "sha256:" + "0" * 64), ("source", "declared"),
    ("input_hashes", "{}"), ("natural_key", "benchmark/stage1/beta/target/other"),
    ("created_at", "2001-01-01 00:00:00"), ("kind", "measurement"), ("stage_id", "stage9"),
    ("code_version", "0.0.1"),
])
def test_altered_result_column_detected(filled: Store, raw: Engine, samples: list[Record],
                                        column: str, value: str) -> None:
    key = samples[1].natural_key()
    assert _sql(raw, f"UPDATE results SET {column} = :v WHERE natural_key = :k",
                v=value, k=key) == 1
    _one(filled.audit_verify(), "outside the API")


def test_deleted_result_row_detected(filled: Store, raw: Engine, samples: list[Record]) -> None:
    key = samples[3].natural_key()
    assert _sql(raw, "DELETE FROM results WHERE natural_key = :k", k=key) == 1
    _one(filled.audit_verify(), key, "row is missing", "deleted outside the API")


def test_reinserted_deleted_result_detected(filled: Store, raw: Engine,
                                            samples: list[Record]) -> None:
    """The API deleted it; copying it back in by hand contradicts the log."""
    deleted = samples[-1]
    _sql(raw, "INSERT INTO results (natural_key, kind, stage_id, team_id, source, payload, "
              "content_hash, input_hashes, code_version, created_at) "
              "SELECT :k, kind, stage_id, team_id, source, payload, content_hash, "
              "input_hashes, code_version, created_at FROM results WHERE natural_key = :src",
         k=deleted.natural_key(), src=samples[0].natural_key())
    _one(filled.audit_verify(), deleted.natural_key(), "deleted it but the row exists")


def test_altered_stage_result_detected(filled: Store, raw: Engine) -> None:
    _sql(raw, "UPDATE stage_results SET payload = :p", p='{"teams":["beta","alpha"]}')
    _one(filled.audit_verify(), "stage_results 'stage1/main'", "content does not match")


def test_deleted_stage_result_detected(filled: Store, raw: Engine) -> None:
    _sql(raw, "DELETE FROM stage_results")
    _one(filled.audit_verify(), "stage_results 'stage1/main'", "row is missing")


def test_verify_chain_on_plain_entries() -> None:
    """The pure chain check, without a database: reorder and gap messages."""
    from kaieval.store.log import new_entry

    a = new_entry(0, "0" * 64, "t", "x", "insert", "result", "k1", "h1")
    b = new_entry(a.seq, a.hash, "t", "x", "insert", "result", "k2", "h2")
    c = new_entry(b.seq, b.hash, "t", "x", "delete", "result", "k1", "h1")
    latest: dict[tuple[str, str], AuditEntry] = {}
    assert verify_chain([a, b, c], (3, c.hash), latest) == []
    assert latest[("result", "k1")] == c
    assert any("entry 2 missing" in p for p in verify_chain([a, c], (3, c.hash), {}))
    assert any("head" in p for p in verify_chain([a, b, c], (3, "0" * 64), {}))
    assert any("not covered by the head" in p for p in verify_chain([a, b, c], (2, b.hash), {}))
