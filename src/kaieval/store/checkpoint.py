"""Signed checkpoints of the audit log, kept outside the database.

Why: the hash chain (:mod:`kaieval.store.log`) proves that the entries still in
the database agree with each other and with the ``audit_head`` row. It cannot
prove that nothing is *missing*: someone who deletes the last entries and their
rows and copies an older entry's ``(seq, hash)`` into the head row, who empties
every table, or who puts back an older copy of the whole database file, leaves a
chain that is perfectly consistent. Only something kept *outside* the database
can tell -- as in Certificate Transparency, a signed statement "the log had
``size`` entries and entry ``size`` had hash ``head``".

What a checkpoint is: ``{"log", "size", "head", "time", "key", "signature"}``.
``log`` names the database (a hash of where it lives, so a wiped or rolled-back
database in the same place is still matched with its checkpoints), ``key`` is
the fingerprint of the Ed25519 public key, ``signature`` an Ed25519 signature
(the ``cryptography`` package; nothing hand-written) over the canonical JSON of
the other five fields. The log *extends* a checkpoint iff the chain verifies, it
has at least ``size`` entries and entry ``size`` has hash ``head``; with the
chain intact, that entry's hash fixes every entry before it.

Where things live: a key folder (``--key-dir``, else ``$KAI_KEY_DIR``, else
``~/.config/kaieval/keys``) holds ``signing-key.pem`` (private, 0600),
``signing-key.pub`` (hex), ``retired/*.pub`` (public keys replaced by ``kai keys
init --force``, so their old checkpoints still verify) and
``checkpoints/<log id>.jsonl``: every checkpoint kaieval wrote for that
database, appended and never rewritten. No private key there: nothing is signed
and nothing fails -- checkpoints are opt-in by creating the key.

What it does not protect against is in docs/audit-log.md: whoever holds the
database *and* the key folder can rewrite both.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from sqlalchemy import URL

from kaieval.errors import KaiError
from kaieval.hashing import canonical_json
from kaieval.io import atomic_write_text, open_regular
from kaieval.store.models import GENESIS_HASH

if TYPE_CHECKING:
    from kaieval.store.store import Store

ENV_KEY_DIR = "KAI_KEY_DIR"
DEFAULT_KEY_DIR = Path("~/.config/kaieval/keys")
PRIVATE_NAME = "signing-key.pem"
PUBLIC_NAME = "signing-key.pub"
RETIRED_DIR = "retired"
CHECKPOINT_DIR = "checkpoints"
FIELDS = ("log", "size", "head", "time", "key", "signature")
_DOMAIN = b"kaieval-checkpoint/v1\n"  # so a checkpoint signature is valid for nothing else
_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_MAX_FILE = 256 * 1024 * 1024  # a checkpoint line is ~300 bytes: this is ~800k of them


def short(fingerprint: str) -> str:
    """The first 16 hex digits of a fingerprint or hash, as shown to people."""
    return fingerprint[:16]


def now_utc() -> str:
    """The current UTC time as ``2026-12-07T03:10:00Z``."""
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def resolve_key_dir(key_dir: Path | str | None = None) -> Path:
    """The key folder: the argument, else ``$KAI_KEY_DIR``, else ``~/.config/kaieval/keys``."""
    if key_dir:
        return Path(key_dir).expanduser()
    env = os.environ.get(ENV_KEY_DIR)
    return Path(env).expanduser() if env else DEFAULT_KEY_DIR.expanduser()


def log_id(url: URL) -> str:
    """A stable name for the database behind ``url``: where it lives, not what it holds.

    Backend, host, port, database (a SQLite path made absolute, symlinks resolved)
    and query options (e.g. a PostgreSQL ``search_path``), never the user or the
    password. What the database *holds* cannot be the name: a wipe or a rollback
    would then change it and shed the checkpoints that are meant to catch it.
    """
    backend = url.get_backend_name()
    database = url.database or ""
    if backend == "sqlite" and database and database != ":memory:" \
            and not database.startswith("file:"):
        database = str(Path(database).expanduser().resolve())
    query = sorted((k, v if isinstance(v, str) else list(v)) for k, v in url.query.items()
                   if "password" not in k.lower())
    ident = {"backend": backend, "host": url.host or "",
             "port": url.port or (5432 if backend == "postgresql" else None),
             "database": database, "query": query}
    return hashlib.sha256(canonical_json(ident)).hexdigest()[:32]


def fingerprint(public_key: Ed25519PublicKey) -> str:
    """sha256 (hex) of the raw 32-byte public key: what a checkpoint's ``key`` holds."""
    return hashlib.sha256(_raw(public_key)).hexdigest()


def _raw(public_key: Ed25519PublicKey) -> bytes:
    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


@dataclass(frozen=True)
class Checkpoint:
    """A statement "log ``log`` had ``size`` entries, the last with hash ``head``".

    ``key``/``signature`` are None for an unsigned checkpoint (what a stage result
    quotes when no signing key exists): it still records the head, but cannot
    prove who recorded it.
    """

    log: str
    size: int
    head: str
    time: str
    key: str | None
    signature: str | None

    def message(self) -> bytes:
        """The signed bytes: a domain tag, then the canonical JSON of the other fields."""
        fields = {"log": self.log, "size": self.size, "head": self.head, "time": self.time,
                  "key": self.key}
        return _DOMAIN + canonical_json(fields)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def to_json(self) -> str:
        """One line of JSON (the checkpoints file's format and ``kai audit-log checkpoint``'s)."""
        return json.dumps(self.to_dict(), sort_keys=True)

    def label(self) -> str:
        """How problems name it: ``checkpoint 2026-12-07T03:10:00Z (size 120)``."""
        return f"checkpoint {self.time} (size {self.size})"


class Signer:
    """A loaded private key: signs ``(log, size, head)`` with the current time."""

    def __init__(self, private_key: Ed25519PrivateKey) -> None:
        self._key = private_key
        self.public_key = private_key.public_key()
        self.fingerprint = fingerprint(self.public_key)

    def sign(self, log: str, size: int, head: str, time: str | None = None) -> Checkpoint:
        unsigned = Checkpoint(log=log, size=size, head=head, time=time or now_utc(),
                              key=self.fingerprint, signature=None)
        signature = base64.b64encode(self._key.sign(unsigned.message())).decode("ascii")
        return dataclasses.replace(unsigned, signature=signature)


class KeyFolder:
    """The key folder: the signing key, known public keys and kaieval's own checkpoints."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @property
    def private_path(self) -> Path:
        return self.path / PRIVATE_NAME

    @property
    def public_path(self) -> Path:
        return self.path / PUBLIC_NAME

    def checkpoints_path(self, log: str) -> Path:
        return self.path / CHECKPOINT_DIR / f"{log}.jsonl"

    def has_private_key(self) -> bool:
        return self.private_path.exists()

    def signer(self) -> Signer | None:
        """The signing key, or None if there is none (so nothing gets signed).

        A key file that exists but cannot be used is an error, not None: the
        operator asked for signed writes, and silently writing unsigned would
        hide that the protection has lapsed.
        """
        if not self.has_private_key():
            return None
        return Signer(_load_private(self.private_path))

    def public_keys(self) -> dict[str, Ed25519PublicKey]:
        """Every public key checkpoints may be signed with, by fingerprint."""
        keys: list[Ed25519PublicKey] = []
        if self.public_path.exists():
            keys.append(_load_public(self.public_path))
        if self.has_private_key():
            keys.append(_load_private(self.private_path).public_key())
        retired = self.path / RETIRED_DIR
        if retired.is_dir():
            keys.extend(_load_public(p) for p in sorted(retired.glob("*.pub")))
        return {fingerprint(k): k for k in keys}

    def append(self, checkpoint: Checkpoint) -> Path:
        """Append ``checkpoint`` to its log's file (flushed to disk); never rewrites."""
        path = self.checkpoints_path(checkpoint.log)
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (checkpoint.to_json() + "\n").encode("utf-8"))
                os.fsync(fd)
            finally:
                os.close(fd)
        except OSError as err:
            raise KaiError(f"cannot append a checkpoint: {err.strerror or err}",
                           where=str(path)) from None
        return path

    def written(self, log: str) -> list[tuple[str, Checkpoint]]:
        """The checkpoints kaieval wrote for ``log`` here, with their ``file:line``."""
        path = self.checkpoints_path(log)
        if not path.exists():
            return []
        return read_checkpoints(path)


def init_keys(path: Path, *, force: bool = False) -> Signer:
    """Create a new signing key in ``path``; refuses to replace one unless ``force``.

    With ``force`` the old public key moves to ``retired/<fingerprint>.pub``, so the
    checkpoints it signed keep verifying; the old private key is gone.
    """
    folder = KeyFolder(path)
    old: Ed25519PublicKey | None = None
    if folder.has_private_key() or folder.public_path.exists():
        if not force:
            raise KaiError("a signing key already exists here; --force replaces it (its "
                           "public key is kept so old checkpoints still verify)",
                           where=str(folder.private_path))
        old = (_load_public(folder.public_path) if folder.public_path.exists()
               else _load_private(folder.private_path).public_key())
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode("ascii")
    signer = Signer(key)
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if old is not None:
            retired = path / RETIRED_DIR
            retired.mkdir(exist_ok=True, mode=0o700)
            atomic_write_text(retired / f"{fingerprint(old)}.pub", _raw(old).hex() + "\n")
        # atomic_write_text's temp file is created 0600 (mkstemp) and renamed over
        atomic_write_text(folder.private_path, pem)
        os.chmod(folder.private_path, 0o600)
        atomic_write_text(folder.public_path, _raw(signer.public_key).hex() + "\n")
        os.chmod(folder.public_path, 0o644)
    except OSError as err:
        raise KaiError(f"cannot write the key: {err.strerror or err}", where=str(path)) from None
    return signer


def _read_small(path: Path, limit: int) -> bytes:
    with open_regular(path) as f:
        try:
            data = f.read(limit + 1)
        except OSError as err:
            raise KaiError(f"cannot read: {err.strerror or err}", where=str(path)) from None
    if len(data) > limit:
        raise KaiError(f"larger than {limit} bytes: not a key or checkpoint file",
                       where=str(path))
    return data


def _load_private(path: Path) -> Ed25519PrivateKey:
    data = _read_small(path, 64 * 1024)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError) as err:
        raise KaiError(f"not a usable private key ({err})", where=str(path)) from None
    except Exception as err:  # cryptography raises UnsupportedAlgorithm for odd PEMs
        raise KaiError(f"not a usable private key ({type(err).__name__})",
                       where=str(path)) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KaiError("not an Ed25519 private key (run `kai keys init`)", where=str(path))
    return key


def _load_public(path: Path) -> Ed25519PublicKey:
    data = _read_small(path, 64 * 1024)
    try:
        raw = bytes.fromhex(data.decode("ascii").strip())
        if len(raw) != 32:
            raise ValueError
        return Ed25519PublicKey.from_public_bytes(raw)
    except (UnicodeDecodeError, ValueError):
        raise KaiError("not an Ed25519 public key (64 hex digits expected)",
                       where=str(path)) from None


# -- reading checkpoints ---------------------------------------------------------------


def parse_checkpoint(obj: object, where: str) -> Checkpoint:
    """A checkpoint from a decoded JSON object; a one-line ``KaiError`` naming ``where``.

    A stage report's JSON is accepted too: its ``audit_checkpoint`` is the checkpoint.
    """
    if isinstance(obj, dict) and "audit_checkpoint" in obj and "size" not in obj:
        obj = obj["audit_checkpoint"]
        if obj is None:
            raise KaiError("the report quotes no audit-log checkpoint", where=where)
    if not isinstance(obj, dict):
        raise KaiError("expected a checkpoint (a JSON object)", where=where)
    missing = [f for f in FIELDS if f not in obj]
    if missing:
        raise KaiError(f"not a checkpoint: missing {', '.join(missing)}", where=where)
    extra = sorted(set(obj) - set(FIELDS))
    if extra:
        raise KaiError(f"not a checkpoint: unknown field {', '.join(map(repr, extra))}",
                       where=where)
    size = obj["size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise KaiError(f"checkpoint size must be a whole number >= 0, not {size!r}",
                       where=where)
    for name in ("log", "time"):
        if not isinstance(obj[name], str) or not obj[name]:
            raise KaiError(f"checkpoint {name} must be a non-empty string", where=where)
    if not isinstance(obj["head"], str) or not _HEX64.match(obj["head"]):
        raise KaiError("checkpoint head must be 64 lowercase hex digits", where=where)
    key, signature = obj["key"], obj["signature"]
    if (key is None) != (signature is None):
        raise KaiError("checkpoint key and signature must both be given or both be null",
                       where=where)
    if key is not None and (not isinstance(key, str) or not _HEX64.match(key)):
        raise KaiError("checkpoint key must be a 64-hex-digit fingerprint", where=where)
    if signature is not None and not isinstance(signature, str):
        raise KaiError("checkpoint signature must be a base64 string", where=where)
    return Checkpoint(log=obj["log"], size=size, head=obj["head"], time=obj["time"],
                      key=key, signature=signature)


def read_checkpoints(path: Path) -> list[tuple[str, Checkpoint]]:
    """Every checkpoint in ``path``: one JSON object (a checkpoint or a stage report), or
    JSON Lines of checkpoints. Regular files only (a FIFO is refused, not waited on)."""
    where = str(path)
    data = _read_small(path, _MAX_FILE)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise KaiError(f"not UTF-8 ({err.reason} at byte {err.start})", where=where) from None
    try:
        whole = json.loads(text)
    except RecursionError:
        raise KaiError("not valid JSON (nested too deeply)", where=where) from None
    except ValueError:
        whole = None  # not one JSON document: JSON Lines, or broken (reported per line)
    else:
        return [(where, parse_checkpoint(whole, where))]
    found: list[tuple[str, Checkpoint]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        at = f"{where}:{n}"
        try:
            obj = json.loads(line)
        except RecursionError:
            raise KaiError("not valid JSON (nested too deeply)", where=at) from None
        except ValueError as err:
            raise KaiError(f"not valid JSON ({err})", where=at) from None
        found.append((at, parse_checkpoint(obj, at)))
    if not found:
        raise KaiError("holds no checkpoint", where=where)
    return found


# -- checking the log against checkpoints -------------------------------------------------


def signature_problem(cp: Checkpoint, keys: Mapping[str, Ed25519PublicKey]) -> str | None:
    """Why ``cp``'s signature cannot be trusted, or None if it verifies (or is unsigned)."""
    if cp.key is None or cp.signature is None:
        return None
    public = keys.get(cp.key)
    if public is None:
        return (f"signed by unknown key {short(cp.key)} (not in the key folder): its "
                "signature cannot be checked")
    try:
        public.verify(base64.b64decode(cp.signature, validate=True), cp.message())
    except (InvalidSignature, binascii.Error, ValueError):
        return f"signature does not verify with key {short(cp.key)} (checkpoint forged or altered)"
    return None


def extension_problem(cp: Checkpoint, last_seq: int, hashes: Mapping[int, str]) -> str | None:
    """Why the log does not extend ``cp``, or None if it does.

    ``last_seq`` is the newest entry's seq in the database (0 if empty), ``hashes``
    the hash of every entry whose seq some checkpoint names. The chain check is
    separate (``Store.audit_verify``); both must pass.
    """
    if cp.size == 0:
        return None if cp.head == GENESIS_HASH else \
            "records 0 entries but a head other than the empty log's (checkpoint malformed)"
    if last_seq == 0:
        records = f"{cp.size} {'entry' if cp.size == 1 else 'entries'}"
        return f"the log is empty but the checkpoint records {records} (wiped)"
    if last_seq < cp.size:
        has = f"{last_seq} {'entry' if last_seq == 1 else 'entries'}"
        return f"the log has only {has} (truncated or rolled back)"
    found = hashes.get(cp.size)
    if found is None:
        return f"entry {cp.size} is missing (deleted)"
    if found != cp.head:
        return (f"entry {cp.size} has a different hash (log rewritten, or rolled back and "
                "written again)")
    return None


@dataclass
class CheckpointReport:
    """What checking the log against its checkpoints found."""

    problems: list[str]
    notes: list[str]
    checked: int
    newest: Checkpoint | None


def check_checkpoints(checkpoints: Iterable[tuple[str, Checkpoint]],
                      keys: Mapping[str, Ed25519PublicKey], log: str,
                      last_seq: int, hashes: Mapping[int, str]) -> CheckpointReport:
    """Judge every checkpoint (deduplicated) against the log; one line per problem.

    A checkpoint made for another database is still checked against this one (the
    same database opened under another URL has another log id) and noted.
    """
    problems: list[str] = []
    notes: list[str] = []
    seen: set[Checkpoint] = set()
    newest: Checkpoint | None = None
    for where, cp in checkpoints:
        if cp in seen:
            continue
        seen.add(cp)
        label = f"{cp.label()} [{where}]"
        if cp.key is None:
            notes.append(f"{label}: unsigned; checked against the log, but who made it "
                         "cannot be proven")
        sig = signature_problem(cp, keys)
        if sig:
            problems.append(f"{label}: {sig}")
        ext = extension_problem(cp, last_seq, hashes)
        if ext:
            problems.append(f"{label}: {ext}")
        if cp.log != log:
            notes.append(f"{label}: made for database {cp.log}, this one is {log}")
        if newest is None or (cp.size, cp.time) > (newest.size, newest.time):
            newest = cp
    return CheckpointReport(problems=problems, notes=notes, checked=len(seen), newest=newest)


def verify_store(store: Store, files: Sequence[Path] = ()) -> CheckpointReport:
    """Check ``store``'s log against the checkpoints in ``files`` and those kaieval wrote.

    The files are read *before* the database: a writer appends its checkpoint only
    after its commit, so every checkpoint read is already covered by what the
    database shows next, and a write landing in between cannot look like a
    truncation. The chain itself is ``Store.audit_verify``'s job.
    """
    given = [row for path in files for row in read_checkpoints(path)]
    written = store.keys.written(store.log_id)
    keys = store.keys.public_keys() if any(cp.key for _, cp in given + written) else {}
    last, hashes = store.audit_hashes(cp.size for _, cp in given + written)
    report = check_checkpoints(given + written, keys, store.log_id, last, hashes)
    if not written:
        if store.keys.has_private_key():
            report.notes.append(f"no checkpoint written for this database in {store.keys.path} "
                                "yet: the next write signs one (or `kai audit-log checkpoint`)")
        elif not given:
            report.notes.append("no checkpoints: run `kai keys init` so writes are signed")
    return report
