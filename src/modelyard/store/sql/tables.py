"""The metadata schema. Changing it means a new Alembic revision in `migrations/versions` and a new
`SCHEMA_VERSION`; a test checks the two agree."""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    text,
)

SCHEMA_VERSION = "0008"

metadata = MetaData()

# Unique among active experiments only: purging (or deleting) one frees its name. PostgreSQL's copy of the
# WHERE clause is added by `use_postgresql()`.
_ACTIVE = "lifecycle_stage = 'active'"
_unique_active_name = Index("ux_experiments_active_name", "name", unique=True, sqlite_where=text(_ACTIVE))

experiments = Table(
    "experiments",
    metadata,
    Column("experiment_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(256), nullable=False),
    Column("artifact_location", Text, nullable=False),
    Column("lifecycle_stage", String(16), nullable=False, server_default="active"),
    Column("creation_time", BigInteger),
    Column("last_update_time", BigInteger),
    _unique_active_name,
)


def use_postgresql() -> None:
    """Give the partial unique index its PostgreSQL WHERE clause; called when a PostgreSQL engine is made.
    Naming `postgresql_where` above would import SQLAlchemy's PostgreSQL dialect (~40 ms) into every
    process, SQLite users' CLI commands and pipeline runs included."""
    _unique_active_name.dialect_options["postgresql"]["where"] = text(_ACTIVE)


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

# The last point each buffered writer stored per run (see schemas.BatchSequence): a re-sent batch is skipped.
metric_sequences = Table(
    "metric_sequences",
    metadata,
    Column("writer_id", String(32), primary_key=True),
    Column("run_uuid", String(32), ForeignKey("runs.run_uuid", ondelete="CASCADE"), primary_key=True),
    Column("last_seq", BigInteger, nullable=False),
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
    Column("profile", Text),
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

# Added by revision 0004: the model registry. Children follow a renamed model (ON UPDATE CASCADE).

registered_models = Table(
    "registered_models",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("description", Text, nullable=False, server_default=""),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_updated_time", BigInteger, nullable=False),
    Column("gate_policy", Text),  # JSON GatePolicy
)

registered_model_tags = Table(
    "registered_model_tags",
    metadata,
    Column(
        "name",
        String(256),
        ForeignKey("registered_models.name", onupdate="CASCADE", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
)

model_versions = Table(
    "model_versions",
    metadata,
    Column(
        "name",
        String(256),
        ForeignKey("registered_models.name", onupdate="CASCADE", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("version", Integer, primary_key=True),
    Column("creation_time", BigInteger, nullable=False),
    Column("last_updated_time", BigInteger, nullable=False),
    Column("description", Text, nullable=False, server_default=""),
    Column("source", Text, nullable=False),
    Column("run_id", String(32), index=True),
    Column("status", String(24), nullable=False),
    Column("stage", String(16), nullable=False),
    Column("signature", Text),  # JSON
    Column("created_by", String(256)),
)

model_version_tags = Table(
    "model_version_tags",
    metadata,
    Column("name", String(256), primary_key=True),
    Column("version", Integer, primary_key=True),
    Column("key", String(250), primary_key=True),
    Column("value", Text, nullable=False),
    ForeignKeyConstraint(
        ["name", "version"],
        ["model_versions.name", "model_versions.version"],
        onupdate="CASCADE",
        ondelete="CASCADE",
    ),
)

model_aliases = Table(
    "model_aliases",
    metadata,
    Column(
        "name",
        String(256),
        ForeignKey("registered_models.name", onupdate="CASCADE", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("alias", String(256), primary_key=True),
    Column("version", Integer, nullable=False),
)

stage_transitions = Table(
    "stage_transitions",
    metadata,
    Column("transition_id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(256), nullable=False),
    Column("version", Integer, nullable=False),
    Column("from_stage", String(16), nullable=False),
    Column("to_stage", String(16), nullable=False),
    Column("time", BigInteger, nullable=False),
    Column("user", String(256)),
    Column("comment", Text, nullable=False, server_default=""),
    Index("ix_stage_transitions_version", "name", "version"),
)

# Every registry change and run lifecycle change, in the transaction that made it (webhooks read it).
registry_events = Table(
    "registry_events",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column("time", BigInteger, nullable=False),
    Column("type", String(64), nullable=False),
    Column("name", String(256), index=True),
    Column("version", Integer),
    Column("experiment_id", String(32)),
    Column("run_id", String(32)),
    Column("user", String(256)),
    Column("payload", Text, nullable=False, server_default="{}"),
)

# Webhooks: subscribers to registry and run events, and one row per (webhook, event) delivery with its attempts.
webhooks = Table(
    "webhooks",
    metadata,
    Column("webhook_id", String(32), primary_key=True),
    Column("url", Text, nullable=False),
    Column("secret", Text, nullable=False),  # the HMAC-SHA256 key; it must be readable to sign deliveries
    Column("events", Text, nullable=False, server_default="*"),  # comma-separated event types, or '*'
    Column("model_name", String(256)),  # subscribe to one registered model ...
    Column("experiment_id", String(32)),  # ... or one experiment's runs
    Column("description", Text, nullable=False, server_default=""),
    Column("active", Boolean, nullable=False, server_default=text("true")),
    Column("created_time", BigInteger, nullable=False),
    Column("last_event_id", Integer, nullable=False, server_default="0"),  # events up to here are queued
)

webhook_deliveries = Table(
    "webhook_deliveries",
    metadata,
    Column("delivery_id", Integer, primary_key=True, autoincrement=True),
    Column("webhook_id", String(32), ForeignKey("webhooks.webhook_id", ondelete="CASCADE"), nullable=False),
    Column("event_id", Integer, nullable=False),
    Column("state", String(16), nullable=False),  # pending, delivered, failed
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("next_attempt_time", BigInteger, nullable=False),
    Column("last_status", Integer),
    Column("last_error", Text),
    Column("last_duration_ms", Integer),
    Column("created_time", BigInteger, nullable=False),
    Column("delivered_time", BigInteger),
    Index("ix_webhook_deliveries_due", "state", "next_attempt_time"),
    Index("ix_webhook_deliveries_webhook", "webhook_id", "delivery_id"),
)

# Added by revision 0005: pipelines that the server's scheduler runs on a cron schedule (see
# store/sql/pipeline_schedules.py). A due schedule is claimed by moving its next_run_time conditionally.
pipeline_schedules = Table(
    "pipeline_schedules",
    metadata,
    Column("schedule_id", String(32), primary_key=True),
    Column("name", String(128), nullable=False, unique=True),
    Column("target", Text, nullable=False),  # FILE.py:FUNCTION (absolute) or package.module:FUNCTION
    Column("params", Text, nullable=False, server_default="{}"),  # JSON object
    Column("experiment", String(256)),
    Column("cron", String(200), nullable=False),
    Column("timezone", String(64), nullable=False, server_default="UTC"),
    Column("enabled", Boolean, nullable=False, server_default=text("true")),
    Column("next_run_time", BigInteger),  # NULL while paused
    Column("last_run_time", BigInteger),
    Column("last_run_id", String(32)),
    Column("last_status", String(16)),
    Column("last_error", Text),
    Column("created_by", String(256)),
    Column("created_time", BigInteger, nullable=False),
    Index("ix_pipeline_schedules_due", "enabled", "next_run_time"),
)

# Added by revision 0006: deployment records (see store/sql/deployments.py). `traffic` is the current split
# as JSON; `deployment_versions` lists every model version a deployment's traffic ever held (version 0: a
# model that is not a registered version), so "the deployments of a version" is one indexed query.
deployments = Table(
    "deployments",
    metadata,
    Column("deployment_id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    Column("endpoint", Text, nullable=False),
    Column("target", String(16), nullable=False),
    Column("state", String(16), nullable=False),
    Column("traffic", Text, nullable=False, server_default="[]"),  # JSON list of TrafficEntry
    Column("info", Text, nullable=False, server_default="{}"),  # JSON object
    Column("created_by", String(256)),
    Column("created_time", BigInteger, nullable=False),
    Column("updated_time", BigInteger, nullable=False),
    Column("heartbeat_time", BigInteger),  # the model server's last heartbeat (None: it sends none)
    Index("ix_deployments_created", "created_time"),
    Index("ix_deployments_state", "state"),
)

deployment_versions = Table(
    "deployment_versions",
    metadata,
    Column(
        "deployment_id",
        String(64),
        ForeignKey("deployments.deployment_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("model_name", String(256), primary_key=True),
    Column("version", Integer, primary_key=True, autoincrement=False),  # 0: not a registered version
    Column("first_time", BigInteger, nullable=False),
    Index("ix_deployment_versions_model", "model_name", "version"),
)

deployment_events = Table(
    "deployment_events",
    metadata,
    Column("event_id", Integer, primary_key=True, autoincrement=True),
    Column(
        "deployment_id",
        String(64),
        ForeignKey("deployments.deployment_id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("time", BigInteger, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("message", Text, nullable=False, server_default=""),
    Column("state", String(16), nullable=False),
    Column("traffic", Text, nullable=False, server_default="[]"),
    Column("details", Text, nullable=False, server_default="{}"),
    Column("user", String(256)),
    Index("ix_deployment_events_deployment", "deployment_id", "event_id"),
)
