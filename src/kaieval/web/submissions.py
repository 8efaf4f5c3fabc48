"""Team submissions: the dossier, checked on upload as ``kai validate`` checks it, and the
files the committee reads, stored content-addressed until the stage's deadline.

Files live in one folder (``upload_root``), each named by the sha256 of its bytes,
written atomically (a temp file, then a rename), never executed, unpacked or
unpickled: they are only handed back as downloads. What is known about a file -- its
name as uploaded, size, hash, who, when, why -- is an audited store document
``upload/<stage>/<team>/<sha256>``. An accepted dossier is ``dossier/<team>/<stage>``
(its text and hash). See docs/web-teams.md.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
import stat
import unicodedata
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

from kaieval.errors import KaiError
from kaieval.io import MiB, atomic_path, open_regular, size_error
from kaieval.spec.dossier import Dossier
from kaieval.spec.load import parse_dossier_text
from kaieval.spec.program import KST, Program, Stage
from kaieval.store import Store
from kaieval.web.accounts import Account
from kaieval.web.context import WebContext

MAX_UPLOAD_BYTES = 64 * MiB
"""One file's limit (a technical report, a training-log file)."""
MAX_DOSSIER_BYTES = 1 * MiB
"""A dossier's limit: it is kept as text in the store."""
MAX_FILES = 100
"""Files one team may keep for one stage (submission and objection files together)."""
SHA256 = re.compile(r"^[0-9a-f]{64}$")
PURPOSES = ("submission", "objection")


class Closed(KaiError):
    """Refused because a deadline or window has passed (or not opened)."""

    http_status = 409


class TooLarge(KaiError):
    """Refused because a file is over its limit."""

    http_status = 413


def _hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def now() -> dt.datetime:
    """The time deadlines and windows are compared with (tests replace it)."""
    return dt.datetime.now(dt.UTC)


def stamp(t: dt.datetime) -> str:
    """A time as stored: UTC, seconds, ``Z``."""
    return t.astimezone(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")


def shown(t: dt.datetime) -> str:
    """A time as shown to people: Korean time, to the minute."""
    return t.astimezone(KST).strftime("%Y-%m-%d %H:%M KST")


def upload_root(ctx: WebContext) -> Path:
    """The upload folder: the context's, else ``$KAI_UPLOAD_DIR``, else ``kai-uploads`` next
    to a SQLite store's file, else ``./kai-uploads``."""
    if ctx.upload_dir is not None:
        return ctx.upload_dir
    env = os.environ.get("KAI_UPLOAD_DIR")
    if env:
        return Path(env)
    try:
        url = make_url(ctx.store.url)
    except ArgumentError:
        url = None
    if url is not None and url.get_backend_name() == "sqlite" and url.database \
            and url.database != ":memory:":
        return Path(url.database).resolve().parent / "kai-uploads"
    return Path("kai-uploads").resolve()


def clean_name(name: str) -> str:
    """An uploaded file's name for showing: the last part, printable, at most 200 characters.
    It is never used as a path."""
    base = re.split(r"[/\\]", name or "")[-1]
    text = "".join(c for c in base if unicodedata.category(c)[0] != "C").strip()
    return text[:200] or "file"


def stage_of(program: Program, stage_id: str) -> Stage:
    for s in program.stages:
        if s.id == stage_id:
            return s
    raise KaiError(f"no stage {stage_id!r} in programme '{program.id}'")


def uploads_open(stage: Stage, at: dt.datetime | None = None) -> bool:
    deadline = stage.deadline()
    return deadline is None or (at or now()) < deadline


def check_uploads_open(stage: Stage) -> None:
    """A one-line refusal once the stage's submission deadline has passed."""
    if not uploads_open(stage):
        deadline = stage.deadline()
        assert deadline is not None
        raise Closed(f"the submission deadline of stage '{stage.id}' ({shown(deadline)}) has "
                       "passed: uploads are closed")


def _team_of(account: Account) -> str:
    if not account.team_id:
        raise KaiError("only a team account uploads for a team")
    return account.team_id


def store_file(ctx: WebContext, stage_id: str, account: Account, name: str, data: bytes,
               purpose: str = "submission") -> dict[str, Any]:
    """Keep one uploaded file for the account's team; returns its metadata.

    Submission files are refused after the deadline (objection files follow the
    objection window instead, checked by the caller).
    """
    stage = stage_of(ctx.program, stage_id)
    team_id = _team_of(account)
    if purpose not in PURPOSES:
        raise KaiError(f"unknown purpose {purpose!r}")
    if purpose == "submission":
        check_uploads_open(stage)
    label = clean_name(name)
    if len(data) > MAX_UPLOAD_BYTES:
        raise TooLarge(str(size_error(len(data), MAX_UPLOAD_BYTES, "uploaded files", label)))
    if not data:
        raise KaiError("the file is empty", where=label)
    prefix = f"upload/{stage_id}/{team_id}/"
    digest = _hex(data)
    kept = ctx.store.objects(prefix)
    if prefix + digest not in kept and len(kept) >= MAX_FILES:
        raise KaiError(f"team {team_id} already keeps {MAX_FILES} files for stage "
                       f"'{stage_id}'", where=label)
    _write(upload_root(ctx), digest, data)
    meta = {"name": label, "size": len(data), "sha256": digest, "by": account.name,
            "at": stamp(now()), "purpose": purpose, "stage_id": stage_id, "team_id": team_id}
    ctx.store.put_objects({prefix + digest: meta}, actor=account.name)
    return meta


def _write(root: Path, digest: str, data: bytes) -> None:
    """Write ``data`` as ``root/<digest>`` unless an intact copy is there; anything at that
    name that is not a regular file (a FIFO, a link, a folder) is refused, never opened."""
    root.mkdir(parents=True, exist_ok=True)
    target = root / digest
    try:
        mode = os.lstat(target).st_mode
    except FileNotFoundError:
        mode = None
    if mode is not None:
        if not stat.S_ISREG(mode):
            raise KaiError("the upload folder holds something other than a regular file "
                           "under this file's hash: refused (tell the programme office)",
                           where=digest[:12])
        try:
            if _hex(_read_regular(target)) == digest:
                return
        except KaiError:
            pass  # unreadable or damaged: replaced below
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def _read_regular(path: Path) -> bytes:
    with open_regular(path) as f:
        size = os.fstat(f.fileno()).st_size
        if size > MAX_UPLOAD_BYTES:
            raise size_error(size, MAX_UPLOAD_BYTES, "uploaded files", path.name)
        return f.read(MAX_UPLOAD_BYTES + 1)


def read_file(ctx: WebContext, digest: str) -> bytes:
    """A stored file's bytes, checked against its hash (a regular file only)."""
    if not SHA256.match(digest):
        raise KaiError("not a sha256")
    data = _read_regular(upload_root(ctx) / digest)
    if _hex(data) != digest:
        raise KaiError("the stored file does not match its hash (tell the programme office)",
                       where=digest[:12])
    return data


def files(ctx: WebContext, stage_id: str, team_id: str,
          purpose: str | None = None) -> list[dict[str, Any]]:
    """The metadata of a team's files for a stage, oldest first."""
    out = [m for m in ctx.store.objects(f"upload/{stage_id}/{team_id}/").values()
           if purpose is None or m.get("purpose") == purpose]
    return sorted(out, key=lambda m: (str(m.get("at")), str(m.get("name"))))


def upload_dossier(ctx: WebContext, stage_id: str, account: Account, raw: bytes,
                   name: str) -> dict[str, Any]:
    """Check and keep a team's dossier for a stage; the app uses it from then on.

    Problems raise ``KaiError``/``KaiErrors`` with ``kai validate``'s one-line messages
    (``name:line: field: message``); the dossier must be the account's own team's and
    have a submission for the stage.
    """
    stage = stage_of(ctx.program, stage_id)
    team_id = _team_of(account)
    check_uploads_open(stage)
    label = clean_name(name)
    if len(raw) > MAX_DOSSIER_BYTES:
        raise TooLarge(str(size_error(len(raw), MAX_DOSSIER_BYTES, "dossiers", label)))
    dossier, doc = parse_dossier_text(raw, label, ctx.program)
    if dossier.team.id != team_id:
        raise KaiError(f"team.id: this dossier is for team '{dossier.team.id}'; your account "
                       f"speaks for team '{team_id}'", where=doc.where(("team", "id")))
    if stage_id not in dossier.submissions:
        raise KaiError(f"submissions: no submission for stage '{stage_id}' (add "
                       f"'{stage_id}:' under 'submissions')", where=doc.where(("submissions",)))
    for other in ctx.dossiers:
        if other.team.id != team_id and \
                other.team.name.casefold() == dossier.team.name.casefold():
            raise KaiError(f"team.name: '{dossier.team.name}' reads the same as the name of "
                           f"team '{other.team.id}'", where=doc.where(("team", "name")))
    meta = {"text": raw.decode("utf-8-sig"), "sha256": _hex(raw), "name": label,
            "by": account.name, "at": stamp(now())}
    ctx.store.put_objects({f"dossier/{team_id}/{stage_id}": meta}, actor=account.name)
    ctx.refresh_dossiers()
    return {k: v for k, v in meta.items() if k != "text"}


def uploaded_dossiers(store: Store, program: Program) -> dict[str, Dossier]:
    """Each team's uploaded dossier: the one for its latest stage in programme order.
    One that no longer reads against the programme is passed over."""
    order = {s.id: i for i, s in enumerate(program.stages)}
    latest: dict[str, tuple[int, dict[str, Any]]] = {}
    for key, meta in store.objects("dossier/").items():
        parts = key.split("/")
        if len(parts) != 3 or parts[2] not in order:
            continue
        rank = order[parts[2]]
        if parts[1] not in latest or rank > latest[parts[1]][0]:
            latest[parts[1]] = (rank, meta)
    out: dict[str, Dossier] = {}
    for team_id, (_, meta) in latest.items():
        try:
            dossier, _doc = parse_dossier_text(str(meta.get("text", "")).encode(),
                                               f"dossier/{team_id}", program)
        except KaiError:
            continue
        if dossier.team.id == team_id:
            out[team_id] = dossier
    return out


def dossier_meta(ctx: WebContext, team_id: str, stage_id: str) -> dict[str, Any] | None:
    """What is shown of an uploaded dossier (name, hash, who, when), or None."""
    meta = ctx.store.get_object(f"dossier/{team_id}/{stage_id}")
    return None if meta is None else {k: v for k, v in meta.items() if k != "text"}
