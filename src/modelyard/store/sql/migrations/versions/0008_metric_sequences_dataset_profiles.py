"""Metric sequences: the last point each buffered writer stored per run, so that a batch re-sent after a
crash or a lost reply is stored once. And datasets keep the profile their client sent (MLflow's JSON).

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "metric_sequences",
        sa.Column("writer_id", sa.String(32), primary_key=True),
        sa.Column(
            "run_uuid", sa.String(32), sa.ForeignKey("runs.run_uuid", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("last_seq", sa.BigInteger(), nullable=False),
    )
    with op.batch_alter_table("datasets") as batch:
        batch.add_column(sa.Column("profile", sa.Text(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("datasets") as batch:
        batch.drop_column("profile")
    op.drop_table("metric_sequences")
