"""Signed checkpoints catch what the hash chain alone cannot: truncation, a wipe, a
rewritten head, a rolled-back database file (issue 11, item 4).

Each attack is first shown to pass the chain check (``Store.audit_verify``) -- the
problem the checkpoints exist for -- and then to fail against the checkpoints.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import os
import shutil
import sqlite3
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, text

from kaieval.errors import KaiError
from kaieval.records import Record
from kaieval.store import Store, parse_url
from kaieval.store.checkpoint import (
    Checkpoint,
    KeyFolder,
    init_keys,
    log_id,
    read_checkpoints,
    verify_store,
)
from kaieval.store.log import entry_hash
from kaieval.store.models import GENESIS_HASH


@pytest.fixture
def key_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "keys"
    init_keys(folder)
    return folder


@pytest.fixture
def keyed(store_url: str, key_dir: Path) -> Iterator[Store]:
    s = Store(store_url, key_dir=key_dir)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def five(keyed: Store, samples: list[Record]) -> Store:
    """Two signed writes: entries 1-3 (checkpoint size 3), then 4-5 (checkpoint size 5)."""
    keyed.put(samples[:3], actor="run-1")
    keyed.put(samples[3:5], actor="run-2")
    assert [cp.size for _, cp in keyed.keys.written(keyed.log_id)] == [3, 5]
    assert _problems(keyed) == []
    return keyed


def _problems(store: Store, files: tuple[Path, ...] = ()) -> list[str]:
    return verify_store(store, files).problems + store.audit_verify()


def _sql(raw: Engine, statement: str, **params: object) -> None:
    with raw.begin() as conn:
        conn.execute(text(statement), params)


def _one(problems: list[str], *needles: str) -> str:
    hits = [p for p in problems if all(n in p for n in needles)]
    assert hits, f"no problem mentions {needles}: {problems}"
    return hits[0]


def _truncate_to(raw: Engine, store: Store, seq: int) -> None:
    """The attack from the issue: delete the last entries and the rows they inserted,
    then copy the older entry's (seq, hash) into the head row."""
    keep = {e.seq: e for e in store.audit_entries()}
    for e in keep.values():
        if e.seq > seq:
            _sql(raw, "DELETE FROM results WHERE natural_key = :k", k=e.entity_key)
    _sql(raw, "DELETE FROM audit_log WHERE seq > :s", s=seq)
    _sql(raw, "UPDATE audit_head SET seq = :s, hash = :h", s=seq, h=keep[seq].hash)


def test_every_audited_write_appends_one_signed_checkpoint(keyed: Store,
                                                           samples: list[Record]) -> None:
    keyed.put(samples[:2], actor="a")
    keyed.put(samples[:2], actor="a")  # unchanged: no entry, no checkpoint
    keyed.delete(samples[0].natural_key(), actor="a")
    keyed.put_stage_result("stage1", "main", {"x": 1}, "sha256:in", actor="a")
    written = [cp for _, cp in keyed.keys.written(keyed.log_id)]
    assert [cp.size for cp in written] == [2, 3, 4]
    assert written[-1].head == keyed.audit_head()[1]
    assert {cp.log for cp in written} == {keyed.log_id}
    report = verify_store(keyed)
    assert report.problems == [] and report.checked == 3 and report.notes == []


def test_truncation_passes_the_chain_but_not_the_checkpoint(five: Store, raw: Engine) -> None:
    _truncate_to(raw, five, 3)
    assert five.audit_verify() == []  # the hole this feature closes
    _one(_problems(five), "checkpoint", "(size 5)", "only 3 entries", "truncated or rolled back")


def test_wipe_passes_the_chain_but_not_the_checkpoints(five: Store, raw: Engine) -> None:
    for table in ("audit_log", "results", "stage_results"):
        _sql(raw, f"DELETE FROM {table}")
    _sql(raw, "UPDATE audit_head SET seq = 0, hash = :h", h=GENESIS_HASH)
    assert five.audit_verify() == []
    problems = _problems(five)
    _one(problems, "(size 3)", "the log is empty", "(wiped)")
    _one(problems, "(size 5)", "the log is empty", "(wiped)")


def test_rewritten_head_entry_is_caught(five: Store, raw: Engine) -> None:
    """Re-hash the last entry with another actor: a consistent chain, but not the signed one."""
    last = five.audit_entries(limit=1)[0]
    forged = dataclasses.replace(last, actor="nobody")
    new_hash = entry_hash(forged.prev_hash, forged.seq, forged.at, forged.actor, forged.action,
                          forged.entity, forged.entity_key, forged.content_hash)
    _sql(raw, "UPDATE audit_log SET actor = :a, hash = :h WHERE seq = :s", a="nobody",
         h=new_hash, s=last.seq)
    _sql(raw, "UPDATE audit_head SET hash = :h", h=new_hash)
    assert five.audit_verify() == []
    _one(_problems(five), "(size 5)", "entry 5 has a different hash", "rewritten")


def test_truncated_then_written_again_is_caught(five: Store, raw: Engine,
                                                samples: list[Record]) -> None:
    """After a truncation the next honest write signs the forged head; the old checkpoint
    still exposes the fork."""
    _truncate_to(raw, five, 3)
    five.put(samples[5:7], actor="run-3")  # entries 4-5 again, different content
    _one(_problems(five), "(size 5)", "entry 5 has a different hash")


def test_sqlite_file_rolled_back_to_an_older_copy(tmp_path: Path, key_dir: Path,
                                                  samples: list[Record]) -> None:
    db = tmp_path / "roll.sqlite"
    with Store(f"sqlite:///{db}", key_dir=key_dir) as store:
        store.put(samples[:3], actor="a")
        # a live store in WAL mode is copied with SQLite's backup, not cp (docs)
        live, old = sqlite3.connect(db), sqlite3.connect(tmp_path / "old.sqlite")
        live.backup(old)
        live.close()
        old.close()
        store.put(samples[3:5], actor="a")
    assert not Path(f"{db}-wal").exists()  # closed: one file again, safe to copy
    shutil.copy(tmp_path / "old.sqlite", db)
    with Store(f"sqlite:///{db}", key_dir=key_dir) as store:
        assert store.audit_verify() == []
        _one(_problems(store), "(size 5)", "only 3 entries", "rolled back")


def test_a_checkpoint_file_given_is_checked(five: Store, raw: Engine, tmp_path: Path) -> None:
    published = tmp_path / "published.json"
    published.write_text(five.audit_checkpoint(require_key=True).to_json())
    # the attacker also removed kaieval's own checkpoints: the published copy still tells
    shutil.rmtree(five.keys.path / "checkpoints")
    _truncate_to(raw, five, 3)
    problems = _problems(five, (published,))
    _one(problems, f"[{published}]", "only 3 entries")


def test_forged_checkpoint_signature_is_reported(five: Store, tmp_path: Path) -> None:
    genuine = five.audit_checkpoint(require_key=True)
    forged = dataclasses.replace(genuine, size=4, head=five.audit_entries()[3].hash)
    path = tmp_path / "forged.json"
    path.write_text(forged.to_json())
    problems = verify_store(five, (path,)).problems
    _one(problems, "(size 4)", "signature does not verify", "forged or altered")
    assert len(problems) == 1  # the log itself does extend it


def test_checkpoint_by_an_unknown_key_is_reported(five: Store, tmp_path: Path) -> None:
    other = init_keys(tmp_path / "other")
    size, head = five.audit_head()
    path = tmp_path / "other.json"
    path.write_text(other.sign(five.log_id, size, head).to_json())
    _one(verify_store(five, (path,)).problems, "unknown key", other.fingerprint[:16])


def test_without_a_key_nothing_is_signed_and_verify_says_so(store: Store,
                                                            samples: list[Record]) -> None:
    """The default store in tests: KAI_KEY_DIR points at an empty temp folder."""
    assert not store.keys.path.exists()
    store.put(samples[:2], actor="a")
    assert not store.keys.path.exists()  # nothing written outside the database
    report = verify_store(store)
    assert report.problems == [] and report.checked == 0
    assert any("run `kai keys init`" in n for n in report.notes)
    unsigned = store.audit_checkpoint()
    assert (unsigned.size, unsigned.key, unsigned.signature) == (2, None, None)


def test_a_broken_key_refuses_the_write(keyed: Store, samples: list[Record]) -> None:
    keyed.keys.private_path.write_text("not a key")
    with pytest.raises(KaiError, match=r"signing-key\.pem: not a usable private key"):
        keyed.put(samples[:1], actor="a")
    assert keyed.audit_head()[0] == 0  # refused before anything was written


def test_rotated_key_keeps_old_checkpoints_verifiable(five: Store, samples: list[Record]) -> None:
    old = next(cp.key for _, cp in five.keys.written(five.log_id))
    new = init_keys(five.keys.path, force=True)
    assert new.fingerprint != old
    five.put(samples[5:6], actor="a")
    assert {cp.key for _, cp in five.keys.written(five.log_id)} == {old, new.fingerprint}
    assert _problems(five) == []


def test_init_refuses_to_overwrite_and_writes_a_private_key_only_we_can_read(
        tmp_path: Path) -> None:
    folder = tmp_path / "k"
    init_keys(folder)
    assert stat.S_IMODE(os.stat(folder / "signing-key.pem").st_mode) == 0o600
    before = (folder / "signing-key.pem").read_bytes()
    with pytest.raises(KaiError, match="already exists"):
        init_keys(folder)
    assert (folder / "signing-key.pem").read_bytes() == before


def test_log_id_names_the_place_not_the_spelling(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert log_id(parse_url("sqlite:///x.sqlite")) == \
        log_id(parse_url(f"sqlite:///{tmp_path / 'x.sqlite'}"))
    assert log_id(parse_url("sqlite:///x.sqlite")) != log_id(parse_url("sqlite:///y.sqlite"))
    assert log_id(parse_url("postgresql://u:a@h/db")) == \
        log_id(parse_url("postgresql+psycopg://v:b@h:5432/db"))


# -- hostile checkpoint files: one line naming the file, never a traceback ------------------

GOOD = {"log": "l", "size": 1, "head": "a" * 64, "time": "t", "key": None, "signature": None}


@pytest.mark.parametrize(("content", "message"), [
    ("not json at all", "not valid JSON"),
    ("[1, 2]", "expected a checkpoint"),
    (json.dumps({k: v for k, v in GOOD.items() if k != "head"}), "missing head"),
    (json.dumps({**GOOD, "size": "12"}), "size must be a whole number"),
    (json.dumps({**GOOD, "size": True}), "size must be a whole number"),
    (json.dumps({**GOOD, "size": -1}), "size must be a whole number"),
    (json.dumps({**GOOD, "head": "xyz"}), "head must be 64"),
    (json.dumps({**GOOD, "extra": 1}), "unknown field 'extra'"),
    (json.dumps({**GOOD, "key": "a" * 64}), "both be given or both be null"),
    (json.dumps(GOOD) + "\n{broken\n", "not valid JSON"),
    ("[" * 100_000, "not valid JSON"),
    ("", "holds no checkpoint"),
    (json.dumps({"schema": "x", "audit_checkpoint": None}), "quotes no audit-log checkpoint"),
])
def test_hostile_checkpoint_file_is_one_line(tmp_path: Path, content: str,
                                             message: str) -> None:
    path = tmp_path / "cp.json"
    path.write_text(content)
    with pytest.raises(KaiError, match=message) as info:
        read_checkpoints(path)
    assert str(path) in str(info.value) and "\n" not in str(info.value)


def test_checkpoint_fifo_and_folder_are_refused(tmp_path: Path) -> None:
    fifo = tmp_path / "cp.fifo"
    os.mkfifo(fifo)
    with pytest.raises(KaiError, match="FIFO"):
        read_checkpoints(fifo)
    with pytest.raises(KaiError, match="folder"):
        read_checkpoints(tmp_path)


def test_json_lines_and_a_stage_report_are_read(tmp_path: Path) -> None:
    lines = tmp_path / "cps.jsonl"
    lines.write_text(json.dumps(GOOD) + "\n\n" + json.dumps({**GOOD, "size": 2}) + "\n")
    assert [(w, cp.size) for w, cp in read_checkpoints(lines)] == [
        (f"{lines}:1", 1), (f"{lines}:3", 2)]
    report = tmp_path / "s1.json"
    report.write_text(json.dumps({"schema": "kaieval/stage-result/v1", "audit_checkpoint": GOOD}))
    assert read_checkpoints(report) == [(str(report), Checkpoint(**GOOD))]


def test_garbled_signature_is_reported_not_raised(five: Store, tmp_path: Path) -> None:
    genuine = five.audit_checkpoint(require_key=True)
    path = tmp_path / "bad.json"
    path.write_text(dataclasses.replace(genuine, signature="!!not base64!!").to_json())
    _one(verify_store(five, (path,)).problems, "signature does not verify")
    short_sig = base64.b64encode(b"x").decode()
    path.write_text(dataclasses.replace(genuine, signature=short_sig).to_json())
    _one(verify_store(five, (path,)).problems, "signature does not verify")


def test_key_folder_without_private_key_can_still_verify(five: Store, store_url: str,
                                                        tmp_path: Path) -> None:
    """A verifier holding only the public key (and the checkpoints) can check the log."""
    pub_only = tmp_path / "pub"
    shutil.copytree(five.keys.path, pub_only)
    (pub_only / "signing-key.pem").unlink()
    assert KeyFolder(pub_only).signer() is None
    with Store(store_url, key_dir=pub_only) as verifier:
        report = verify_store(verifier)
    assert report.problems == [] and report.checked == 2
