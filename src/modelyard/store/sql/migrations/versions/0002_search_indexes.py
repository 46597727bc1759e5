"""Search indexes: latest metric values by key, dataset digests, runs by lifecycle stage and start time.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_latest_metrics_key_value", "latest_metrics", ["key", "value"])
    op.create_index("ix_datasets_digest", "datasets", ["digest"])
    op.create_index("ix_runs_stage_start", "runs", ["lifecycle_stage", "start_time"])


def downgrade() -> None:
    op.drop_index("ix_runs_stage_start", "runs")
    op.drop_index("ix_datasets_digest", "datasets")
    op.drop_index("ix_latest_metrics_key_value", "latest_metrics")
