"""The hash-chained audit log: entry hashing and the checks behind ``kai audit-log verify``.

Every write the store makes through its API appends one entry. An entry's
``hash`` is ``sha256(prev_hash || canonical JSON of its other fields)`` and its
``prev_hash`` is the hash of the entry before it (64 zeros for the first), so
changing, removing or reordering any entry breaks every link after it. The
``audit_head`` row repeats the newest entry's seq and hash, so removing the last
entries -- which leaves a chain that is intact as far as it goes -- is caught too.

Pure functions over plain values: the store reads the rows, this module judges
them, which keeps the rules testable and readable in one place.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from kaieval.hashing import canonical_json
from kaieval.store.models import GENESIS_HASH

ENTITY_RESULT = "result"
ENTITY_STAGE_RESULT = "stage_result"
ENTITY_OBJECT = "object"
ACTION_INSERT = "insert"
ACTION_REPLACE = "replace"
ACTION_DELETE = "delete"


@dataclass(frozen=True)
class AuditEntry:
    """One audit log entry, as stored and as shown by ``kai audit-log``."""

    seq: int
    at: str
    actor: str
    action: str
    entity: str
    entity_key: str
    content_hash: str
    prev_hash: str
    hash: str
    note: str = ""  # the reason given for a replace, delete or retraction

    def expected_hash(self) -> str:
        """The hash this entry should carry given its fields and ``prev_hash``."""
        return entry_hash(self.prev_hash, self.seq, self.at, self.actor, self.action,
                          self.entity, self.entity_key, self.content_hash, self.note)

    def to_json(self) -> str:
        """One line of JSON, every field, as ``kai audit-log show`` prints it."""
        return json.dumps(dataclasses.asdict(self), default=str, ensure_ascii=False)


def entry_hash(prev_hash: str, seq: int, at: str, actor: str, action: str, entity: str,
               entity_key: str, content_hash: str, note: str = "") -> str:
    """``sha256(prev_hash || canonical_json([seq, at, actor, action, entity, key, content]))``.

    A JSON list (not string concatenation) so no two different field tuples can
    produce the same bytes, e.g. actor "ab"+action "c" vs actor "a"+action "bc".
    A non-empty ``note`` is appended to the list; entries without one hash as
    they did before notes existed.
    """
    fields: list[object] = [seq, at, actor, action, entity, entity_key, content_hash]
    if note:
        fields.append(note)
    return hashlib.sha256(prev_hash.encode("utf-8") + canonical_json(fields)).hexdigest()


def new_entry(prev_seq: int, prev_hash: str, at: str, actor: str, action: str, entity: str,
              entity_key: str, content_hash: str, note: str = "") -> AuditEntry:
    """The entry that follows ``(prev_seq, prev_hash)`` in the chain."""
    seq = prev_seq + 1
    return AuditEntry(seq=seq, at=at, actor=actor, action=action, entity=entity,
                      entity_key=entity_key, content_hash=content_hash, prev_hash=prev_hash,
                      hash=entry_hash(prev_hash, seq, at, actor, action, entity, entity_key,
                                      content_hash, note), note=note)


def _describe(entity: str, key: str) -> str:
    table = {ENTITY_RESULT: "results", ENTITY_STAGE_RESULT: "stage_results",
             ENTITY_OBJECT: "objects"}.get(entity, entity)
    return f"{table} {key!r}"


def verify_chain(entries: Iterable[AuditEntry], head: tuple[int, str] | None,
                 latest: dict[tuple[str, str], AuditEntry]) -> list[str]:
    """Problems with the chain itself; fills ``latest`` with each entity's newest entry.

    ``entries`` must come in ascending ``seq`` order. ``head`` is the audit_head
    row's ``(seq, hash)``, or None if that row is gone.
    """
    problems: list[str] = []
    expected_seq, prev_hash = 1, GENESIS_HASH
    for entry in entries:
        gap = entry.seq != expected_seq
        if entry.seq > expected_seq:
            missing = (f"entry {expected_seq}" if entry.seq == expected_seq + 1
                       else f"entries {expected_seq}..{entry.seq - 1}")
            problems.append(f"audit log: {missing} missing (deleted outside the API)")
        elif entry.seq < expected_seq:
            problems.append(f"audit log: entry {entry.seq} out of order (seq altered)")
        if entry.expected_hash() != entry.hash:
            problems.append(f"audit entry {entry.seq}: its fields do not match its hash "
                            "(entry altered)")
        elif not gap and entry.prev_hash != prev_hash:
            problems.append(f"audit entry {entry.seq}: prev_hash does not link to entry "
                            f"{entry.seq - 1} (chain broken)")
        latest[(entry.entity, entry.entity_key)] = entry
        expected_seq, prev_hash = max(expected_seq, entry.seq + 1), entry.hash
    last_seq = expected_seq - 1
    if head is None:
        problems.append("audit head: row missing (cannot tell whether the last entries "
                        "were deleted)")
    elif head[0] > last_seq:
        problems.append(f"audit log: ends at entry {last_seq} but the head records entry "
                        f"{head[0]} (last entries deleted outside the API)")
    elif head[0] < last_seq:
        problems.append(f"audit log: entries after {head[0]} are not covered by the head "
                        "(head altered or entries added outside the API)")
    elif head[1] != prev_hash:
        problems.append(f"audit head: hash does not match entry {last_seq} "
                        "(head or last entry altered)")
    return problems


def verify_entities(latest: Mapping[tuple[str, str], AuditEntry],
                    actual: Mapping[tuple[str, str], str]) -> list[str]:
    """Compare stored rows with what the log says they should be.

    ``actual`` maps ``(entity, key)`` of every row present to the hash of its
    content *recomputed from the row* (never the row's own hash column), so a
    payload edited in place shows up even if the column was left alone.
    """
    problems: list[str] = []
    for (entity, key), entry in sorted(latest.items(), key=lambda kv: kv[1].seq):
        what = _describe(entity, key)
        present = (entity, key) in actual
        if entry.action == ACTION_DELETE:
            if present:
                problems.append(f"{what}: audit entry {entry.seq} deleted it but the row "
                                "exists (written outside the API)")
        elif not present:
            problems.append(f"{what}: audit entry {entry.seq} records it but the row is "
                            "missing (deleted outside the API)")
        elif actual[(entity, key)] != entry.content_hash:
            problems.append(f"{what}: content does not match audit entry {entry.seq} "
                            "(altered outside the API)")
    for entity, key in sorted(set(actual) - set(latest)):
        problems.append(f"{_describe(entity, key)}: row has no audit entry "
                        "(written outside the API)")
    return problems


class Superseded:
    """Collects, while the chain streams past, what each replace or delete took away.

    ``tap`` passes entries through unchanged; afterwards ``taken[seq]`` is
    ``(key, content hash the key had before entry seq)`` for every result entry
    that replaced or deleted a row: what the history table must hold for it.
    Every replace or delete carries a note since the history table exists; entries
    without one predate it (schema 0001) and have no history to check.
    """

    def __init__(self) -> None:
        self.taken: dict[int, tuple[str, str]] = {}
        self._current: dict[str, str] = {}

    def tap(self, entries: Iterable[AuditEntry]) -> Iterable[AuditEntry]:
        for entry in entries:
            if entry.entity == ENTITY_RESULT:
                before = self._current.get(entry.entity_key)
                if (entry.action in (ACTION_REPLACE, ACTION_DELETE) and entry.note
                        and before is not None):
                    self.taken[entry.seq] = (entry.entity_key, before)
                if entry.action == ACTION_DELETE:
                    self._current.pop(entry.entity_key, None)
                else:
                    self._current[entry.entity_key] = entry.content_hash
            yield entry


def verify_history(taken: Mapping[int, tuple[str, str]],
                   history: Iterable[tuple[int, str, str]]) -> list[str]:
    """Compare history rows ``(superseded_seq, key, payload hash)`` with the log.

    Every version the log says was replaced or deleted must be in the history
    with the content it had; a history row the log does not account for, or
    whose payload differs, was written or edited outside the API.
    """
    problems: list[str] = []
    seen: set[int] = set()
    for seq, key, payload_hash in history:
        want = taken.get(seq)
        where = f"result_history {key!r} (superseded by entry {seq})"
        if want is None or want[0] != key or seq in seen:
            problems.append(f"{where}: no audit entry superseded this version "
                            "(written outside the API)")
        elif want[1] != payload_hash:
            problems.append(f"{where}: content does not match what the log recorded "
                            "(altered outside the API)")
        seen.add(seq)
    for seq in sorted(set(taken) - seen):
        problems.append(f"result_history {taken[seq][0]!r}: the version superseded by entry "
                        f"{seq} is missing (deleted outside the API)")
    return problems
