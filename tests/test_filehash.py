"""File digests remembered across processes: reused for the same bytes only."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from kaieval import filehash
from kaieval.artifacts import model_hash
from kaieval.hashing import sha256_file


@pytest.fixture()
def memo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "memo" / "file-hashes.json"
    monkeypatch.setenv("KAI_HASH_CACHE", str(path))
    monkeypatch.setattr(filehash, "SETTLE_S", -60.0)  # files written just now count as settled
    monkeypatch.setattr(filehash, "_memo", None)
    return path


def _big(path: Path, fill: bytes) -> Path:
    path.write_bytes(fill * (filehash.MEMO_MIN_BYTES // len(fill) + 3))
    return path


def test_a_remembered_digest_is_reused_for_the_same_bytes_only(
        memo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = _big(tmp_path / "w.safetensors", b"ab")
    want = hashlib.sha256(f.read_bytes()).hexdigest()
    assert filehash.sha256_hex(f) == want
    assert list(json.loads(memo.read_text(encoding="utf-8")).values()) == [want]
    real = filehash._digest

    def no_reading(fh: object) -> str:
        raise AssertionError("read although remembered")

    monkeypatch.setattr(filehash, "_digest", no_reading)
    monkeypatch.setattr(filehash, "_memo", None)  # as a new process: from the file
    assert filehash.sha256_hex(f) == want
    assert sha256_file(f) == "sha256:" + want
    # same size, mtime set back: the status-change time still tells the bytes changed
    st = f.stat()
    _big(f, b"ba")
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns))
    monkeypatch.setattr(filehash, "_digest", real)
    assert filehash.sha256_hex(f) == hashlib.sha256(f.read_bytes()).hexdigest() != want


def test_small_unsettled_corrupt_or_off_means_hash_again(
        memo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    small = tmp_path / "config.json"
    small.write_text("{}", encoding="utf-8")
    assert filehash.sha256_hex(small) == hashlib.sha256(b"{}").hexdigest()
    assert not memo.exists()  # under MEMO_MIN_BYTES: not remembered
    f = _big(tmp_path / "w.safetensors", b"xy")
    monkeypatch.setattr(filehash, "SETTLE_S", 3600.0)
    filehash.sha256_hex(f)
    assert not memo.exists()  # written within the settle time: not remembered
    monkeypatch.setattr(filehash, "SETTLE_S", -60.0)
    memo.parent.mkdir(parents=True)
    memo.write_text("{not json", encoding="utf-8")
    monkeypatch.setattr(filehash, "_memo", None)
    assert filehash.sha256_hex(f) == hashlib.sha256(f.read_bytes()).hexdigest()
    assert len(json.loads(memo.read_text(encoding="utf-8"))) == 1
    monkeypatch.setenv("KAI_HASH_CACHE", "")
    assert filehash.memo_path() is None


def test_model_hash_is_the_same_with_and_without_the_memo(
        memo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    _big(folder / "model.safetensors", b"q")
    (folder / "config.json").write_text("{}", encoding="utf-8")
    with_memo = model_hash(folder)
    assert memo.exists()
    monkeypatch.setenv("KAI_HASH_CACHE", "")
    from kaieval import artifacts

    monkeypatch.setattr(artifacts, "_HASHES", {})
    assert model_hash(folder) == with_memo


def test_hash_ahead_is_used_for_the_same_state_only(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A digest computed ahead is taken (the file is not read again); a file changed since
    is hashed again; a FIFO is never read ahead, and still refused by the checked opener."""
    from kaieval.errors import KaiError

    monkeypatch.setenv("KAI_HASH_CACHE", "")  # memo off: only the hash-ahead can save a read
    monkeypatch.setattr(filehash, "_ahead", {})
    monkeypatch.setattr(filehash, "SETTLE_S", -60.0)  # files written just now count as settled
    a = _big(tmp_path / "a.safetensors", b"a1")
    b = _big(tmp_path / "b.safetensors", b"b2")
    os.mkfifo(tmp_path / "trap.safetensors")
    queued = filehash.hash_ahead([a, b, tmp_path / "trap.safetensors", tmp_path / "gone"])
    assert queued == [a, b, tmp_path / "trap.safetensors"]  # missing: skipped
    for fut in filehash._ahead.values():
        fut.exception(timeout=10)  # wait for every job (the FIFO's ends in an error)
    real = filehash._digest

    def no_reading(fh: object) -> str:
        raise AssertionError("read although hashed ahead")

    monkeypatch.setattr(filehash, "_digest", no_reading)
    assert filehash.sha256_hex(a) == hashlib.sha256(a.read_bytes()).hexdigest()
    assert sha256_file(b) == "sha256:" + hashlib.sha256(b.read_bytes()).hexdigest()
    monkeypatch.setattr(filehash, "_digest", real)
    _big(b, b"c3")  # rewritten after it was hashed ahead: its state changed
    assert filehash.sha256_hex(b) == hashlib.sha256(b.read_bytes()).hexdigest()
    with pytest.raises(KaiError, match="FIFO"):
        sha256_file(tmp_path / "trap.safetensors")
    monkeypatch.setattr(filehash, "SETTLE_S", 60.0)  # just written: not hashed ahead
    assert filehash.hash_ahead([_big(tmp_path / "new.safetensors", b"n4")]) == []


def test_digest_reads_into_one_buffer_across_read_sizes(tmp_path: Path) -> None:
    """Sizes around the read buffer's: every byte hashed once, none twice."""
    for n in (0, 1, filehash.READ_BYTES - 1, filehash.READ_BYTES, 2 * filehash.READ_BYTES + 5):
        f = tmp_path / f"f{n}"
        f.write_bytes(os.urandom(n))
        with f.open("rb") as fh:
            assert filehash._digest(fh) == hashlib.sha256(f.read_bytes()).hexdigest()
