"""Accounts of the people who use the web app, kept as audited documents in the store.

An account is ``user/<name>``; its API token is found through ``token/<sha256 of the
token>`` (a token is 32 random bytes, so a plain hash is enough; a password is not,
and is hashed with argon2 through pwdlib). Creating one returns a one-time password
and the token, shown once and never stored in the clear.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from enum import StrEnum
from typing import Any

from pwdlib import PasswordHash
from pydantic import BaseModel, ConfigDict, Field

from kaieval.errors import KaiError
from kaieval.records import MAX_ID
from kaieval.store import Store

_HASHER = PasswordHash.recommended()  # argon2id with pwdlib's current parameters
_DUMMY_HASH = _HASHER.hash("timing equaliser")  # checked against when a name is unknown
NO_PASSWORD = "!"
"""``password_hash`` of a token-only account (a script, a load test): no login form."""


class Role(StrEnum):
    """What an account may do; the public is anyone not logged in."""

    ADMIN = "admin"  # the programme office
    EXPERT = "expert"  # an expert evaluator: committee sheets
    USER = "user"  # a user evaluator: ratings and arena votes
    TEAM = "team"  # a competing team: submissions and objections


PUBLIC = "public"
"""The role of a request without an account, as the authorisation rules name it."""


class Account(BaseModel):
    """One person's account (stored under ``user/<name>``)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(min_length=1, max_length=MAX_ID, pattern=r"^[A-Za-z0-9._@-]+$")
    role: Role
    team_id: str | None = None
    affiliation: str = Field(default="", max_length=300)
    password_hash: str
    token_hash: str
    must_change_password: bool = True
    disabled: bool = False
    created_at: str

    def public(self) -> dict[str, Any]:
        """What ``/api/v1/me`` and ``kai users list`` show: never a hash."""
        return self.model_dump(exclude={"password_hash", "token_hash"})


def _key(name: str) -> str:
    return f"user/{name}"


def _token_key(token: str) -> str:
    return f"token/{hashlib.sha256(token.encode()).hexdigest()}"


def create_account(store: Store, name: str, role: Role, *, team_id: str | None = None,
                   affiliation: str = "", actor: str, password_login: bool = True,
                   ) -> tuple[Account, str, str]:
    """Create an account; returns it with its one-time password and its API token.

    ``password_login=False`` makes a token-only account (no password, ``""`` returned):
    for scripts, and cheap to make in bulk since nothing is argon2-hashed.
    """
    if role is Role.TEAM and not team_id:
        raise KaiError("a team account needs --team (the team id it speaks for)")
    if role is not Role.TEAM and team_id:
        raise KaiError(f"--team is only for team accounts, not {role.value}")
    if role is Role.EXPERT and not affiliation.strip():
        raise KaiError("an expert needs --affiliation (conflicts of interest are computed "
                       "from it)")
    password = secrets.token_urlsafe(12) if password_login else ""
    token = f"kai_{secrets.token_urlsafe(32)}"
    try:
        account = Account(name=name, role=role, team_id=team_id, affiliation=affiliation.strip(),
                          password_hash=_HASHER.hash(password) if password else NO_PASSWORD,
                          token_hash=hashlib.sha256(token.encode()).hexdigest(),
                          must_change_password=password_login, created_at=_now())
    except ValueError as exc:
        raise KaiError(f"account name {name!r}: letters, digits and . _ @ - only, at most "
                       f"{MAX_ID} characters") from exc
    store.put_objects({_key(name): account.model_dump(mode="json"),
                       _token_key(token): {"user": name}}, actor=actor,
                      create_only=[_key(name)])
    return account, password, token


def get_account(store: Store, name: str) -> Account | None:
    """The account called ``name``, or None."""
    data = store.get_object(_key(name))
    return None if data is None else Account.model_validate(data)


def accounts(store: Store) -> list[Account]:
    """Every account, by name."""
    return [Account.model_validate(v) for v in store.objects("user/").values()]


def authenticate(store: Store, name: str, password: str) -> Account | None:
    """The enabled account whose password this is, else None (same work either way)."""
    account = get_account(store, name) if 0 < len(name) <= MAX_ID else None
    if account is None or account.password_hash == NO_PASSWORD:
        _HASHER.verify(password, _DUMMY_HASH)  # no faster answer for unknown names
        return None
    if not _HASHER.verify(password, account.password_hash) or account.disabled:
        return None
    return account


def by_token(store: Store, token: str) -> Account | None:
    """The enabled account an API token belongs to, else None."""
    if not token.startswith("kai_") or len(token) > 100:
        return None
    link = store.get_object(_token_key(token))
    if link is None:
        return None
    account = get_account(store, str(link.get("user", "")))
    if account is None or account.disabled:
        return None
    return account


def set_password(store: Store, account: Account, password: str, actor: str) -> Account:
    """Replace the one-time password with the person's own (at least 12 characters)."""
    if len(password) < 12:
        raise KaiError("a password needs at least 12 characters")
    updated = account.model_copy(update={"password_hash": _HASHER.hash(password),
                                         "must_change_password": False})
    store.put_objects({_key(account.name): updated.model_dump(mode="json")}, actor=actor)
    return updated


def disable(store: Store, name: str, actor: str, reason: str = "") -> None:
    """Disable an account: it can no longer log in or use its token."""
    account = get_account(store, name)
    if account is None:
        raise KaiError("no such account (see `kai users list`)", where=f"user {name!r}")
    store.put_objects({_key(name): account.model_copy(update={"disabled": True})
                       .model_dump(mode="json")}, actor=actor, reason=reason)


def _now() -> str:
    return dt.datetime.now(dt.UTC).replace(microsecond=0).isoformat().replace("+00:00", "Z")
