"""Schema migrations with Alembic, driven from code (no alembic.ini needed by users)."""

from __future__ import annotations

from pathlib import Path

from modelyard.store.sql.engine import create_engines, redact, stored_version
from modelyard.store.sql.tables import SCHEMA_VERSION

MIGRATIONS = Path(__file__).parent / "migrations"


def _config(connection: object) -> object:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = connection
    return cfg


def upgrade(uri: str, revision: str = "head") -> tuple[str | None, str]:
    """Migrate the database at `uri` to `revision`; returns (version before, version after)."""
    from alembic import command

    write_engine, _ = create_engines(uri)
    try:
        before = stored_version(write_engine)
        with write_engine.begin() as conn:
            command.upgrade(_config(conn), revision)  # type: ignore[arg-type]
        return before, stored_version(write_engine) or SCHEMA_VERSION
    finally:
        write_engine.dispose()


def head_revision() -> str:
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return ScriptDirectory.from_config(cfg).get_current_head()  # type: ignore[return-value]


__all__ = ["head_revision", "redact", "upgrade"]
