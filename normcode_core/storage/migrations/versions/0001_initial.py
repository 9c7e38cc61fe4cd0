"""Initial schema: plans, plan_versions, runs.

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None


def _timestamp(name: str, nullable: bool) -> sa.Column:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "plans",
        sa.Column("plan_id", sa.String(200), primary_key=True),
        sa.Column("name", sa.String(500), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("latest_version", sa.String(100), nullable=False),
        _timestamp("created_at", False),
        _timestamp("updated_at", False),
    )
    op.create_table(
        "plan_versions",
        sa.Column("plan_id", sa.String(200), primary_key=True),
        sa.Column("version", sa.String(100), primary_key=True),
        sa.Column("content_hash", sa.String(128), nullable=False),
        sa.Column("manifest_json", sa.Text(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        _timestamp("deployed_at", False),
    )
    op.create_table(
        "runs",
        sa.Column("run_id", sa.String(64), primary_key=True),
        sa.Column("plan_id", sa.String(200), nullable=False),
        sa.Column("plan_version", sa.String(100), nullable=False),
        sa.Column("plan_hash", sa.String(128), nullable=False),
        sa.Column("status", sa.String(32), nullable=False),
        sa.Column("agent", sa.String(200), nullable=False),
        sa.Column("inputs_json", sa.Text(), nullable=False),
        sa.Column("max_cycles", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("progress_json", sa.Text(), nullable=False),
        sa.Column("usage_json", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.String(200), nullable=True, unique=True),
        sa.Column("parent_run_id", sa.String(64), nullable=True),
        sa.Column("owner", sa.String(200), nullable=True),
        _timestamp("lease_until", True),
        _timestamp("created_at", False),
        _timestamp("started_at", True),
        _timestamp("finished_at", True),
    )
    op.create_index("ix_runs_plan_id", "runs", ["plan_id"])
    op.create_index("ix_runs_status_created", "runs", ["status", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_runs_status_created", table_name="runs")
    op.drop_index("ix_runs_plan_id", table_name="runs")
    op.drop_table("runs")
    op.drop_table("plan_versions")
    op.drop_table("plans")
