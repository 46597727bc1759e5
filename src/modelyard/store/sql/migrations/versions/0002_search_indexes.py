"""Search indexes: latest metric values by key, and dataset digests.

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


def downgrade() -> None:
    op.drop_index("ix_datasets_digest", "datasets")
    op.drop_index("ix_latest_metrics_key_value", "latest_metrics")
