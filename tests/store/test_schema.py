"""Schema creation and migrations: an empty database starts at the current schema, an old one is refused
until `modelyard db upgrade` (Alembic) migrates it, keeping its data."""

from __future__ import annotations

from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext

from modelyard.errors import SchemaOutdated
from modelyard.schemas import Metric
from modelyard.store.sql import migrate
from modelyard.store.sql.engine import stored_version
from modelyard.store.sql.store import SqlTrackingStore
from modelyard.store.sql.tables import SCHEMA_VERSION, metadata


def test_schema_version_is_the_alembic_head() -> None:
    assert migrate.head_revision() == SCHEMA_VERSION


def test_migrations_produce_exactly_the_declared_schema(store_uri: str) -> None:
    """Running every migration on an empty database gives the schema `create_all` gives."""
    if store_uri.startswith("postgresql"):
        engine = sa.create_engine(store_uri)
        with engine.begin() as conn:
            conn.execute(sa.text("DROP SCHEMA public CASCADE; CREATE SCHEMA public"))
        engine.dispose()
    migrate.upgrade(store_uri)
    engine = sa.create_engine(store_uri)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    engine.dispose()
    assert diff == []


def test_sqlite_users_do_not_import_the_postgresql_dialect(tmp_path: Path) -> None:
    """It costs ~40 ms of every CLI command and pipeline run; PostgreSQL users load it with their engine."""
    import subprocess
    import sys

    code = (
        "import sys; from modelyard.store.sql.store import SqlTrackingStore; "
        f"SqlTrackingStore('sqlite:///{tmp_path / 'x.db'}').create_experiment('e'); "
        "print('sqlalchemy.dialects.postgresql' in sys.modules)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "False", done.stderr


def test_empty_database_is_created_at_current_version(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'new' / 'nested' / 'db.sqlite'}"
    store = SqlTrackingStore(uri)
    assert stored_version(store._write) == SCHEMA_VERSION
    store.close()


def test_old_schema_is_refused_then_upgraded_with_data_kept(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'old.db'}"
    migrate.upgrade(uri, "0001")
    engine = sa.create_engine(uri)
    with engine.begin() as conn:  # data written by the old version
        conn.execute(
            sa.text(
                "INSERT INTO experiments (experiment_id, name, artifact_location, lifecycle_stage) "
                "VALUES (5, 'legacy', '/tmp/a/5', 'active')"
            )
        )
        conn.execute(
            sa.text(
                "INSERT INTO runs (run_uuid, experiment_id, name, status, start_time, "
                "lifecycle_stage, artifact_uri) VALUES ('r' || hex(randomblob(15)), 5, 'old', "
                "'FINISHED', 1, 'active', '/tmp/a/5/r')"
            )
        )
    engine.dispose()
    with pytest.raises(SchemaOutdated, match="modelyard db upgrade") as err:
        SqlTrackingStore(uri)
    assert "0001" in err.value.message and SCHEMA_VERSION in err.value.message

    before, after = migrate.upgrade(uri)
    assert (before, after) == ("0001", SCHEMA_VERSION)
    store = SqlTrackingStore(uri)
    runs = store.search_runs(["5"]).runs
    assert [r.info.run_name for r in runs] == ["old"]
    store.log_batch(runs[0].run_id, metrics=[Metric(key="m", value=1.0, step=0, timestamp=0)])
    store.close()


def test_foreign_database_is_refused(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'foreign.db'}"
    engine = sa.create_engine(uri)
    with engine.begin() as conn:
        conn.execute(sa.text("CREATE TABLE runs (x INTEGER)"))
    engine.dispose()
    with pytest.raises(SchemaOutdated, match="unknown"):
        SqlTrackingStore(uri)


def test_unreachable_database_is_unavailable_not_a_traceback() -> None:
    from modelyard.errors import Unavailable

    with pytest.raises(Unavailable, match=r"127\.0\.0\.1:1"):
        SqlTrackingStore("postgresql+psycopg://nobody:secret@127.0.0.1:1/none")


def test_password_is_redacted_from_errors() -> None:
    from modelyard.errors import Unavailable

    with pytest.raises(Unavailable) as err:
        SqlTrackingStore("postgresql+psycopg://nobody:hunter2@127.0.0.1:1/none")
    assert "hunter2" not in err.value.message
