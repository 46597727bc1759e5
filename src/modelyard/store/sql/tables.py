"""The metadata schema. Changing it means a new Alembic revision in `migrations/versions` and a new
`SCHEMA_VERSION`; a test checks the two agree."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
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

SCHEMA_VERSION = "0003"

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

# Added by revision 0003: the server's accounts. Tokens are stored only as SHA-256 digests (they are random
# 256-bit secrets, so a fast hash is safe); grants name a resource by type and id without a foreign key,
# so the same table serves experiments and registered models (purging an experiment removes its grants).
users = Table(
    "users",
    metadata,
    Column("user_id", Integer, primary_key=True, autoincrement=True),
    Column("username", String(256), nullable=False, unique=True),
    Column("is_admin", Boolean, nullable=False, server_default=text("false")),
    Column("created_time", BigInteger, nullable=False),
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("token_id", String(16), primary_key=True),
    Column("user_id", Integer, ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False, index=True),
    Column("name", String(256), nullable=False),
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_time", BigInteger, nullable=False),
    Column("expires_time", BigInteger),
    Column("revoked_time", BigInteger),
    Column("last_used_time", BigInteger),
)

permissions = Table(
    "permissions",
    metadata,
    Column("user_id", Integer, ForeignKey("users.user_id", ondelete="CASCADE"), primary_key=True),
    Column("resource_type", String(32), primary_key=True),
    Column("resource_id", String(256), primary_key=True),
    Column("role", String(8), nullable=False),
    Index("ix_permissions_resource", "resource_type", "resource_id"),
)

# Who wrote what, when: one row per write request (refused ones included). No foreign key: the trail
# outlives deleted users.
audit_log = Table(
    "audit_log",
    metadata,
    Column("entry_id", Integer, primary_key=True, autoincrement=True),
    Column("time", BigInteger, nullable=False, index=True),
    Column("username", String(256), index=True),
    Column("method", String(8), nullable=False),
    Column("path", Text, nullable=False),
    Column("targets", Text, nullable=False, server_default=""),
    Column("status", Integer, nullable=False),
    Column("client", String(64)),
)
