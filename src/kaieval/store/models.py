"""ORM tables of the store (SQLAlchemy 2 typed style).

The schema itself is owned by the Alembic migrations in ``alembic/versions``;
these classes mirror it for querying, and a test compares the two so they cannot
drift apart silently.

Why the audit timestamp is text: ``audit_log.at`` takes part in the hash chain,
so it must read back byte-identical on every backend. SQLite returns naive
datetimes and PostgreSQL aware ones; an ISO-8601 UTC string is the same on both.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import DateTime, Float, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

GENESIS_HASH = "0" * 64
"""``prev_hash`` of the first audit row, and the head hash of an empty log."""


class Base(DeclarativeBase):
    """Declarative base for the store's tables."""


class ResultRow(Base):
    """One result record, keyed by its natural key; ``payload`` is the full record JSON.

    ``kind``/``stage_id``/``team_id``/``source``/``input_hashes``/``code_version``
    are copies of payload fields kept as columns so queries can filter on them;
    ``audit_verify`` checks they still agree with the payload.
    """

    __tablename__ = "results"
    __table_args__ = (UniqueConstraint("natural_key", name="uq_results_natural_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    natural_key: Mapped[str] = mapped_column(String(512))
    kind: Mapped[str] = mapped_column(String(64), index=True)
    stage_id: Mapped[str] = mapped_column(String(128), index=True)
    team_id: Mapped[str] = mapped_column(String(128), index=True)
    source: Mapped[str] = mapped_column(String(32))
    payload: Mapped[str] = mapped_column(Text)
    content_hash: Mapped[str] = mapped_column(String(80))
    input_hashes: Mapped[str] = mapped_column(Text)
    code_version: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class StageResultRow(Base):
    """A computed stage outcome (the scoring engine's JSON) per stage and run label."""

    __tablename__ = "stage_results"
    __table_args__ = (UniqueConstraint("stage_id", "run_label", name="uq_stage_results_stage_run"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    stage_id: Mapped[str] = mapped_column(String(128))
    run_label: Mapped[str] = mapped_column(String(128))
    payload: Mapped[str] = mapped_column(Text)
    input_hash: Mapped[str] = mapped_column(String(200))
    code_version: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[dt.datetime] = mapped_column(DateTime(timezone=True))


class AuditRow(Base):
    """One append-only audit entry; ``hash`` chains it to the entry before it."""

    __tablename__ = "audit_log"

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    at: Mapped[str] = mapped_column(String(40))
    actor: Mapped[str] = mapped_column(String(200))
    action: Mapped[str] = mapped_column(String(32))
    entity: Mapped[str] = mapped_column(String(32))
    entity_key: Mapped[str] = mapped_column(String(512), index=True)
    content_hash: Mapped[str] = mapped_column(String(80))
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64))
    note: Mapped[str] = mapped_column(Text, default="", server_default="")


class ResultHistoryRow(Base):
    """A version of a result that a replace or delete took out of ``results``.

    Who, when and why are in the audit entry ``superseded_seq``; the payload's
    hash must equal what the entry before it recorded for the key, which
    ``audit_verify`` checks, so history cannot be rewritten quietly either.
    """

    __tablename__ = "result_history"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    natural_key: Mapped[str] = mapped_column(String(512), index=True)
    kind: Mapped[str] = mapped_column(String(64))
    stage_id: Mapped[str] = mapped_column(String(128), index=True)
    team_id: Mapped[str] = mapped_column(String(128))
    payload: Mapped[str] = mapped_column(Text)
    superseded_seq: Mapped[int] = mapped_column(Integer)


class AuditHead(Base):
    """The single row naming the latest audit entry, so a truncated tail is detectable.

    It is updated in the same transaction as every append and row-locked by
    writers, which also serialises concurrent writers on PostgreSQL.
    """

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(Integer)
    hash: Mapped[str] = mapped_column(String(64))


class ObjectRow(Base):
    """One application document (an account, an assignment, a draft ...) per key.

    ``kind`` is the key's first segment, kept as a column to list by kind; the
    audit log records each change (entity ``object``) with the payload's hash.
    """

    __tablename__ = "objects"
    __table_args__ = (UniqueConstraint("key", name="uq_objects_key"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(512))
    kind: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[str] = mapped_column(Text)
    updated_at: Mapped[str] = mapped_column(String(40))


class LoginAttempt(Base):
    """One login attempt counted against ``key`` (an address or a name), at ``at`` (Unix
    seconds): the rate limit all server processes share. Not audited."""

    __tablename__ = "login_attempts"

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(300), index=True)
    at: Mapped[float] = mapped_column(Float, index=True)
