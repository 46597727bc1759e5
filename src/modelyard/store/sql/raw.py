"""Hot-path statements compiled once and run on the DBAPI cursor.

SQLAlchemy's per-execution overhead (~35 µs) is larger than SQLite's own cost for the small writes that
every run and metric batch makes, so those few statements skip it. The SQL still comes from the Core
statements in `store.py`, compiled for the engine's dialect: one source of truth for the schema."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Dialect
from sqlalchemy.sql import ClauseElement


class Record(dict[str, Any]):
    """A result row: keys as items and as attributes, like SQLAlchemy's Row."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


class RawStatements:
    def __init__(self, dialect: Dialect) -> None:
        # Named parameters work with dicts on both drivers (sqlite3 `:name`, psycopg `%(name)s`).
        named = dialect.paramstyle in ("named", "pyformat")
        self._dialect = dialect if named else type(dialect)(paramstyle="named")  # type: ignore[call-arg]

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one instance per store, statements are few and static
    def compile(self, stmt: ClauseElement, column_keys: tuple[str, ...] | None = None) -> str:
        return str(
            stmt.compile(dialect=self._dialect, column_keys=list(column_keys) if column_keys else None)
        )

    @staticmethod
    def fetch(conn: Connection, sql: str, params: Mapping[str, Any]) -> list[Record]:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, params)
            if cursor.description is None:
                return []
            names = [d[0] for d in cursor.description]
            return [Record(zip(names, row)) for row in cursor.fetchall()]
        finally:
            cursor.close()

    @staticmethod
    def fetch_tuples(conn: Connection, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, params)
            return cursor.fetchall()  # type: ignore[no-any-return]
        finally:
            cursor.close()

    @staticmethod
    def execute_many(conn: Connection, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.executemany(sql, rows)
        finally:
            cursor.close()
