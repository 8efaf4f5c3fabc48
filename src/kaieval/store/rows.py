"""Converting records and stage payloads to stored rows, and checking rows against payloads.

The rule that makes tampering visible lives here: the hash the audit log keeps
for a row is always recomputed from the row's *payload* (the full JSON), never
read from a column, and the columns copied out of the payload for querying must
still agree with it.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass
from typing import Any, Protocol

from pydantic import ValidationError

from kaieval.errors import KaiError
from kaieval.hashing import canonical_json, sha256_bytes, sha256_json
from kaieval.records import Record, record_from_json
from kaieval.store.models import ResultRow, StageResultRow


@dataclass(frozen=True)
class EncodedRecord:
    """A record ready to store: its key, its JSON text and both of its hashes."""

    record: Record
    natural_key: str
    payload: str
    payload_hash: str  # hash of the full payload: what the audit log records
    content_hash: str  # Record.content_hash(): what makes a rerun "unchanged"
    input_hashes: str


def identify(record: Record, index: int) -> tuple[str, str]:
    """``(natural key, content hash)``: all a rerun needs to know it changed nothing."""
    try:
        key = record.natural_key()
    except NotImplementedError:
        raise KaiError(f"record {index}: {type(record).__name__} has no natural key "
                       "(use a concrete record type)") from None
    try:
        return key, record.content_hash()
    except (ValueError, TypeError) as exc:  # pydantic serialisation errors subclass ValueError
        raise KaiError(f"record {index} ({key}) cannot be serialised: {_first_line(exc)}") from None


def encode_record(record: Record, index: int) -> EncodedRecord:
    """Serialise ``record``; raises a one-line ``KaiError`` naming the batch position."""
    key, content_hash = identify(record, index)
    try:
        text = canonical_json(record.model_dump(mode="json")).decode()
    except (ValueError, TypeError) as exc:
        raise KaiError(f"record {index} ({key}) cannot be serialised: {_first_line(exc)}") from None
    # The text is canonical JSON already, so hashing its bytes equals what
    # check_result_row recomputes from the parsed payload.
    return EncodedRecord(record=record, natural_key=key, payload=text,
                         payload_hash=sha256_bytes(text.encode()), content_hash=content_hash,
                         input_hashes=canonical_json(record.input_hashes).decode())


def _first_line(exc: BaseException) -> str:
    lines = str(exc).splitlines()
    return lines[0] if lines else type(exc).__name__


def encode_stage_payload(payload: dict[str, Any], input_hash: str,
                         code_version: str) -> tuple[str, str, str]:
    """``(payload text, change hash, audit hash)`` of a stage result.

    The change hash covers payload and input hash only, so rerunning unchanged
    inputs with a newer code version is not a change; the audit hash also
    covers the code version, since that is stored and must not be edited.
    """
    try:
        text = canonical_json(payload).decode()
    except (ValueError, TypeError) as exc:
        raise KaiError(f"stage payload cannot be serialised: {exc}") from None
    obj = json.loads(text)
    return (text, sha256_json({"payload": obj, "input_hash": input_hash}),
            stage_audit_hash(obj, input_hash, code_version))


def stage_audit_hash(payload_obj: Any, input_hash: str, code_version: str) -> str:
    """What the audit log records for a stage result row."""
    return sha256_json({"payload": payload_obj, "input_hash": input_hash,
                        "code_version": code_version})


def decode_record(row: ResultRow) -> Record:
    """Rebuild the typed record of ``row``; a damaged payload is a one-line ``KaiError``."""
    try:
        return record_from_json(json.loads(row.payload))
    except (ValueError, ValidationError) as exc:
        detail = str(exc).splitlines()[0]
        raise KaiError(f"stored payload is not a valid record: {detail} (take it out of "
                       f"scoring with `kai records retract {row.natural_key} --reason ...`)",
                       where=f"results {row.natural_key!r}") from None


class ResultColumns(Protocol):
    """The columns of a results row: an ORM ``ResultRow`` or a Core row of its columns."""

    natural_key: str
    kind: str
    stage_id: str
    team_id: str
    source: str
    payload: str
    content_hash: str
    input_hashes: str
    code_version: str
    created_at: dt.datetime


def check_result_row(row: ResultColumns, expected: str | None = None,
                     ) -> tuple[str | None, list[str]]:
    """``(payload hash or None if unreadable, problems)`` for one results row.

    The payload hash is that of the payload's canonical JSON. The store writes
    payloads in canonical form, so when ``expected`` (the hash the audit log holds)
    equals the hash of the stored bytes, re-encoding is skipped: verification of a
    large store spends its time here. The ``content_hash`` column is checked against
    the payload as stored, not against the record re-validated by today's models, so
    a field added later with a default does not make every older row look altered.
    """
    where = f"results {row.natural_key!r}"
    try:
        obj = json.loads(row.payload)
    except ValueError:
        return None, [f"{where}: payload is not valid JSON (altered outside the API)"]
    raw = sha256_bytes(row.payload.encode())
    payload_hash = raw if raw == expected else sha256_json(obj)
    try:
        record = record_from_json(obj)
    except ValidationError:
        return payload_hash, [f"{where}: payload is not a valid record (altered outside the API)"]
    said = {k: v for k, v in obj.items() if k not in ("created_at", "code_version")} \
        if isinstance(obj, dict) else obj
    expected_columns = {
        "natural_key": record.natural_key(),
        "kind": str(getattr(record, "kind", "")),
        "stage_id": record.stage_id,
        "team_id": record.team_id,
        "source": str(record.source),
        "content_hash": sha256_json(said),
        "code_version": record.code_version,
    }
    problems = [f"{where}: column {col} disagrees with its payload (altered outside the API)"
                for col, want in expected_columns.items() if getattr(row, col) != want]
    if as_utc(row.created_at) != as_utc(record.created_at):
        problems.append(f"{where}: column created_at disagrees with its payload "
                        "(altered outside the API)")
    try:
        stored_inputs = json.loads(row.input_hashes)
    except ValueError:
        stored_inputs = None
    if stored_inputs != record.input_hashes:
        problems.append(f"{where}: column input_hashes disagrees with its payload "
                        "(altered outside the API)")
    return payload_hash, problems


def as_utc(when: dt.datetime) -> dt.datetime:
    """``when`` as an aware UTC datetime; naive values are taken to be UTC.

    SQLite keeps no offset, so every timestamp is written in UTC and compared
    in UTC, which makes the check agree on both backends.
    """
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when.astimezone(dt.UTC)


def check_stage_row(row: StageResultRow) -> tuple[str | None, list[str]]:
    """``(audit hash or None if unreadable, problems)`` for one stage_results row."""
    try:
        obj = json.loads(row.payload)
    except ValueError:
        return None, [f"stage_results {stage_key(row.stage_id, row.run_label)!r}: payload is "
                      "not valid JSON (altered outside the API)"]
    return stage_audit_hash(obj, row.input_hash, row.code_version), []


def stage_key(stage_id: str, run_label: str) -> str:
    """The audit log's key for a stage result."""
    return f"{stage_id}/{run_label}"
