"""Result store: SQLite by default, PostgreSQL for a shared deployment, with an audit chain.

Public API::

    from kaieval.store import Store
    store = Store()                      # $KAI_DATABASE_URL or ./kaieval.sqlite
    summary = store.put(records, actor="kai run")
    store.records(stage_id="stage1", kind="benchmark")
    problems = store.audit_verify()      # [] means intact

See docs/store.md.
"""

from __future__ import annotations

from kaieval.store.database import DEFAULT_URL, ENV_VAR, head_revision, masked, parse_url
from kaieval.store.log import AuditEntry
from kaieval.store.store import PutSummary, Store, Superseding

__all__ = [
    "DEFAULT_URL",
    "ENV_VAR",
    "AuditEntry",
    "PutSummary",
    "Store",
    "Superseding",
    "head_revision",
    "masked",
    "parse_url",
]
