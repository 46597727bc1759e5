from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from modelyard.store.base import TrackingStore
from modelyard.store.sql.store import SqlTrackingStore


def _reset_postgres(url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        names = sa.inspect(conn).get_table_names()
        everything = ("experiments", "datasets", "users", "audit_log", "registered_models", "stage_transitions",
                      "registry_events", "webhooks", "pipeline_schedules", "deployments")  # fmt: skip
        tables = [t for t in everything if t in names]
        if tables:
            conn.execute(sa.text(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    _reset_postgres(url)
    return url


@pytest.fixture(params=["direct", "rest"])
def store(request: pytest.FixtureRequest, store_uri: str, tmp_path: Path) -> Iterator[TrackingStore]:
    """The store itself, and the same store behind the REST API (server app in-process, RestStore client)."""
    artifacts = (tmp_path / "artifacts").as_uri()
    if request.param == "direct":
        direct = SqlTrackingStore(store_uri, default_artifact_root=artifacts)
        yield direct
        direct.close()
        return
    from modelyard.store.rest import RestStore

    with served(store_uri, artifacts) as client:
        rest = RestStore("http://testserver", client=client, retries=0)
        yield rest
        rest.close()


@contextlib.contextmanager
def served(store_uri: str, artifacts: str) -> Iterator[Any]:
    """A TestClient on the server app; the app's own store (its connection pool) is closed afterwards, so
    that PostgreSQL tests do not run out of connections."""
    from starlette.testclient import TestClient

    from modelyard.server import ServerSettings, create_app

    app = create_app(ServerSettings(backend_store_uri=store_uri, artifacts_uri=artifacts))
    try:
        yield TestClient(app)
    finally:
        app.state.store.close()
