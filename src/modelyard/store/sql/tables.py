"""The metadata schema. Changing it means a new Alembic revision in `migrations/versions` and a new
`SCHEMA_VERSION`; a test checks the two agree."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

SCHEMA_VERSION = "0002"

metadata = MetaData()

experiments = Table(
    "experiments",
    metadata,
    Column("experiment_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(256), nullable=False),
    Column("artifact_location", Text, nullable=False),
    Column("lifecycle_stage", String(16), nullable=False, server_default="active"),
    Column("creation_time", BigInteger),
    Column("last_update_time", BigInteger),
    # Unique among active experiments only: purging (or deleting) one frees its name.
    Index(
        "ux_experiments_active_name",
        "name",
        unique=True,
        sqlite_where=text("lifecycle_stage = 'active'"),
        postgresql_where=text("lifecycle_stage = 'active'"),
    ),
)

experiment_tags = Table(
    "experiment_tags",
    metadata,
    Column(
        "experiment_id",
        Integer,
        ForeignKey("experiments.experiment_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

runs = Table(
    "runs",
    metadata,
    Column("run_uuid", String(32), primary_key=True),
    Column(
        "experiment_id", Integer, ForeignKey("experiments.experiment_id", ondelete="CASCADE"), nullable=False
    ),
    Column("name", String(250), nullable=False),
    Column("status", String(9), nullable=False),
    Column("start_time", BigInteger, nullable=False),
    Column("end_time", BigInteger),
    Column("lifecycle_stage", String(16), nullable=False, server_default="active"),
    Column("deleted_time", BigInteger),
    Column("artifact_uri", Text, nullable=False),
    Column("parent_run_id", String(32), index=True),
    Column("description", Text),
    Index("ix_runs_experiment_start", "experiment_id", "start_time"),
)

params = Table(
    "params",
    metadata,
    Column("run_uuid", String(32), ForeignKey("runs.run_uuid", ondelete="CASCADE"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", String(6000), nullable=False),
)

tags = Table(
    "tags",
    metadata,
    Column("run_uuid", String(32), ForeignKey("runs.run_uuid", ondelete="CASCADE"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

# Every point. NULL value means NaN: SQLite cannot store NaN, and NULL keeps NaN out of comparisons on
# both databases. The index covers the history query (no table lookups for 100,000 points).
metrics = Table(
    "metrics",
    metadata,
    Column("run_uuid", String(32), ForeignKey("runs.run_uuid", ondelete="CASCADE"), nullable=False),
    Column("key", String(250), nullable=False),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("value", Float(precision=53)),
    Index("ix_metrics_history", "run_uuid", "key", "step", "timestamp", "value"),
)

# Latest point per (run, key), maintained once per logged batch; search and ordering read only this table.
latest_metrics = Table(
    "latest_metrics",
    metadata,
    Column("run_uuid", String(32), ForeignKey("runs.run_uuid", ondelete="CASCADE"), primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("step", BigInteger, nullable=False),
    Column("timestamp", BigInteger, nullable=False),
    Column("value", Float(precision=53)),
)

datasets = Table(
    "datasets",
    metadata,
    Column("dataset_id", Integer, primary_key=True, autoincrement=True),
    Column(
        "experiment_id", Integer, ForeignKey("experiments.experiment_id", ondelete="CASCADE"), nullable=False
    ),
    Column("name", String(500), nullable=False),
    Column("digest", String(64), nullable=False),
    Column("source_type", String(36)),
    Column("source", Text),
    Column("schema", Text),
    Column("num_rows", BigInteger),
    Index("ux_datasets_identity", "experiment_id", "name", "digest", unique=True),
)

run_inputs = Table(
    "run_inputs",
    metadata,
    Column("run_uuid", String(32), ForeignKey("runs.run_uuid", ondelete="CASCADE"), primary_key=True),
    Column("dataset_id", Integer, ForeignKey("datasets.dataset_id", ondelete="CASCADE"), primary_key=True),
    Column("context", String(64), primary_key=True, server_default=""),
)

# Added by revision 0002: the indexes that make search and dataset look-ups fast at 100,000 runs.
# (Runs are found through ix_runs_experiment_start: every search names its experiments.)
SEARCH_INDEXES = (
    Index("ix_latest_metrics_key_value", latest_metrics.c.key, latest_metrics.c.value),
    Index("ix_datasets_digest", datasets.c.digest),
)
