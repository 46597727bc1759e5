"""Deployment records: where model servers serve which versions, their traffic split and rollout history.

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "deployments",
        sa.Column("deployment_id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=256), nullable=False),
        sa.Column("endpoint", sa.Text(), nullable=False),
        sa.Column("target", sa.String(length=16), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("traffic", sa.Text(), server_default="[]", nullable=False),
        sa.Column("info", sa.Text(), server_default="{}", nullable=False),
        sa.Column("created_by", sa.String(length=256), nullable=True),
        sa.Column("created_time", sa.BigInteger(), nullable=False),
        sa.Column("updated_time", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("deployment_id"),
    )
    op.create_index("ix_deployments_created", "deployments", ["created_time"])
    op.create_index("ix_deployments_state", "deployments", ["state"])
    op.create_table(
        "deployment_versions",
        sa.Column("deployment_id", sa.String(length=64), nullable=False),
        sa.Column("model_name", sa.String(length=256), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("first_time", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.deployment_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("deployment_id", "model_name", "version"),
    )
    op.create_index("ix_deployment_versions_model", "deployment_versions", ["model_name", "version"])
    op.create_table(
        "deployment_events",
        sa.Column("event_id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("deployment_id", sa.String(length=64), nullable=False),
        sa.Column("time", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=32), nullable=False),
        sa.Column("message", sa.Text(), server_default="", nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("traffic", sa.Text(), server_default="[]", nullable=False),
        sa.Column("details", sa.Text(), server_default="{}", nullable=False),
        sa.Column("user", sa.String(length=256), nullable=True),
        sa.ForeignKeyConstraint(["deployment_id"], ["deployments.deployment_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("event_id"),
    )
    op.create_index("ix_deployment_events_deployment", "deployment_events", ["deployment_id", "event_id"])


def downgrade() -> None:
    op.drop_index("ix_deployment_events_deployment", "deployment_events")
    op.drop_table("deployment_events")
    op.drop_index("ix_deployment_versions_model", "deployment_versions")
    op.drop_table("deployment_versions")
    op.drop_index("ix_deployments_state", "deployments")
    op.drop_index("ix_deployments_created", "deployments")
    op.drop_table("deployments")
