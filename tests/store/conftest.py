from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.store.sql.store import SqlTrackingStore


def _reset_postgres(url: str) -> None:
    import sqlalchemy as sa

    engine = sa.create_engine(url)
    with engine.begin() as conn:
        names = sa.inspect(conn).get_table_names()
        if "experiments" in names:
            conn.execute(sa.text("TRUNCATE experiments, datasets RESTART IDENTITY CASCADE"))
    engine.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def store_uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    _reset_postgres(url)
    return url


@pytest.fixture
def store(store_uri: str, tmp_path: Path) -> Iterator[SqlTrackingStore]:
    s = SqlTrackingStore(store_uri, default_artifact_root=(tmp_path / "artifacts").as_uri())
    yield s
    s.close()
