"""Initial store schema: results, stage_results, the audit log and its head.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | None = None
depends_on: str | None = None

GENESIS_HASH = "0" * 64


def upgrade() -> None:
    """Create the tables and seed the audit head at the genesis hash."""
    op.create_table(
        "results",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("natural_key", sa.String(512), nullable=False),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("stage_id", sa.String(128), nullable=False),
        sa.Column("team_id", sa.String(128), nullable=False),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("content_hash", sa.String(80), nullable=False),
        sa.Column("input_hashes", sa.Text(), nullable=False),
        sa.Column("code_version", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("natural_key", name="uq_results_natural_key"),
    )
    op.create_index("ix_results_kind", "results", ["kind"])
    op.create_index("ix_results_stage_id", "results", ["stage_id"])
    op.create_index("ix_results_team_id", "results", ["team_id"])

    op.create_table(
        "stage_results",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("stage_id", sa.String(128), nullable=False),
        sa.Column("run_label", sa.String(128), nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("input_hash", sa.String(200), nullable=False),
        sa.Column("code_version", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("stage_id", "run_label", name="uq_stage_results_stage_run"),
    )

    op.create_table(
        "audit_log",
        sa.Column("seq", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("at", sa.String(40), nullable=False),
        sa.Column("actor", sa.String(200), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("entity", sa.String(32), nullable=False),
        sa.Column("entity_key", sa.String(512), nullable=False),
        sa.Column("content_hash", sa.String(80), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.create_index("ix_audit_log_entity_key", "audit_log", ["entity_key"])

    head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=False),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
    )
    op.bulk_insert(head, [{"id": 1, "seq": 0, "hash": GENESIS_HASH}])


def downgrade() -> None:
    """Drop everything 0001 created (destroys the audit trail: operators only)."""
    op.drop_table("audit_head")
    op.drop_index("ix_audit_log_entity_key", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_table("stage_results")
    op.drop_index("ix_results_team_id", table_name="results")
    op.drop_index("ix_results_stage_id", table_name="results")
    op.drop_index("ix_results_kind", table_name="results")
    op.drop_table("results")
