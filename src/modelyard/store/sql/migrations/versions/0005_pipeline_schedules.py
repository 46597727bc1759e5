"""Pipeline schedules: pipelines that the server's scheduler runs on a cron schedule.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "pipeline_schedules",
        sa.Column("schedule_id", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=128), nullable=False),
        sa.Column("target", sa.Text(), nullable=False),
        sa.Column("params", sa.Text(), server_default="{}", nullable=False),
        sa.Column("experiment", sa.String(length=256), nullable=True),
        sa.Column("cron", sa.String(length=200), nullable=False),
        sa.Column("timezone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("enabled", sa.Boolean(), server_default=sa.text("true"), nullable=False),
        sa.Column("next_run_time", sa.BigInteger(), nullable=True),
        sa.Column("last_run_time", sa.BigInteger(), nullable=True),
        sa.Column("last_run_id", sa.String(length=32), nullable=True),
        sa.Column("last_status", sa.String(length=16), nullable=True),
        sa.Column("last_error", sa.Text(), nullable=True),
        sa.Column("created_by", sa.String(length=256), nullable=True),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("schedule_id"),
        sa.UniqueConstraint("name"),
    )
    op.create_index("ix_pipeline_schedules_due", "pipeline_schedules", ["enabled", "next_run_time"])


def downgrade() -> None:
    op.drop_index("ix_pipeline_schedules_due", "pipeline_schedules")
    op.drop_table("pipeline_schedules")
