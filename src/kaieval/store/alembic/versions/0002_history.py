"""Superseded records stay readable, and audit entries can carry a reason.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-07

``result_history`` keeps every version of a result that a replace or a delete
took out of ``results`` (with the audit entry that did it, who, and why), so a
correction never destroys what was there. ``audit_log.note`` holds the reason
given for a replace or delete; it takes part in the entry's hash when it is not
empty, so entries written before this revision keep their hashes.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Add ``audit_log.note`` and the ``result_history`` table."""
    with op.batch_alter_table("audit_log") as batch:
        batch.add_column(sa.Column("note", sa.Text(), nullable=False, server_default=""))
    op.create_table(
        "result_history",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("natural_key", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("stage_id", sa.String(128), nullable=False),
        sa.Column("team_id", sa.String(128), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("superseded_seq", sa.Integer(), nullable=False),
    )
    op.create_index("ix_result_history_natural_key", "result_history", ["natural_key"])
    op.create_index("ix_result_history_stage_id", "result_history", ["stage_id"])


def downgrade() -> None:
    """Drop what 0002 added (destroys superseded versions: operators only)."""
    op.drop_index("ix_result_history_stage_id", table_name="result_history")
    op.drop_index("ix_result_history_natural_key", table_name="result_history")
    op.drop_table("result_history")
    with op.batch_alter_table("audit_log") as batch:
        batch.drop_column("note")
