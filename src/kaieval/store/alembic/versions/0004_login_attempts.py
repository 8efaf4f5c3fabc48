"""Login attempts, for a rate limit every server process shares.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-07

``kai serve --workers N`` runs several processes; a limit counted in one process's memory
would let an attacker make N times the attempts. Attempts are kept here instead: a plain
table, not audited (failed logins are not decisions, and would flood the audit log), whose
rows older than the limit's window are deleted as new ones come.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    """Create ``login_attempts``."""
    op.create_table(
        "login_attempts",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("key", sa.String(300), nullable=False),
        sa.Column("at", sa.Float(), nullable=False),
    )
    op.create_index("ix_login_attempts_key", "login_attempts", ["key"])
    op.create_index("ix_login_attempts_at", "login_attempts", ["at"])


def downgrade() -> None:
    """Drop ``login_attempts`` (only a rate limit's memory is lost)."""
    op.drop_index("ix_login_attempts_at", table_name="login_attempts")
    op.drop_index("ix_login_attempts_key", table_name="login_attempts")
    op.drop_table("login_attempts")
