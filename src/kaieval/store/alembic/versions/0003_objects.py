"""Audited application state: accounts, assignments, drafts, uploads, objections.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-07

The web app keeps what is not a result record (an account, who evaluates which
team, a sheet still being written, an uploaded file's metadata, an objection) as
one JSON document per key in ``objects``. One table and one audited write path
for all of them: every change is an audit entry (entity ``object``), and ``kai
audit-log verify`` checks each row against the log like a result row.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``objects``."""
    op.create_table(
        "objects",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("updated_at", sa.String(40), nullable=False),
        sa.UniqueConstraint("key", name="uq_objects_key"),
    )
    op.create_index("ix_objects_kind", "objects", ["kind"])


def downgrade() -> None:
    """Drop ``objects`` (destroys accounts and drafts: operators only)."""
    op.drop_index("ix_objects_kind", table_name="objects")
    op.drop_table("objects")
