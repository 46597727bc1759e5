"""A fresh PostgreSQL database per test session, on the server named by MODELYARD_TEST_POSTGRES_URL.

Missing server: the tests skip, unless MODELYARD_TEST_REQUIRE_SERVICES=1 (CI), where they fail."""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest


def require_or_skip(reason: str) -> None:
    if os.environ.get("MODELYARD_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(f"{reason} (MODELYARD_TEST_REQUIRE_SERVICES=1 makes this a failure)")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    base = os.environ.get("MODELYARD_TEST_POSTGRES_URL")
    if not base:
        require_or_skip("MODELYARD_TEST_POSTGRES_URL is not set")
    import sqlalchemy as sa

    from modelyard.store.sql.engine import normalize_url

    url = sa.make_url(normalize_url(base))
    name = f"modelyard_test_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except Exception as exc:
        require_or_skip(f"cannot create a database on {url.render_as_string(hide_password=True)}: {exc}")
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        from modelyard.store.registry import clear_cache

        clear_cache()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
