"""Hot-path statements compiled once and run on the DBAPI connection.

SQLAlchemy's per-execution overhead (~35 µs, more per transaction) is larger than SQLite's own cost for the
small writes that every run and metric batch makes, so those few statements skip it. The SQL still comes
from the Core statements in `store.py`, compiled for the engine's dialect: one source of truth."""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from sqlalchemy import Connection, Dialect, Engine
from sqlalchemy.sql import ClauseElement


class Record(dict[str, Any]):
    """A result row: keys as items and as attributes, like SQLAlchemy's Row."""

    def __getattr__(self, name: str) -> Any:
        try:
            return self[name]
        except KeyError:
            raise AttributeError(name) from None


AnyConnection = Any  # a SQLAlchemy Connection, or the driver connection of a `RawStatements.transaction`


def _dbapi(conn: AnyConnection) -> Any:
    """The driver connection behind a SQLAlchemy Connection, or `conn` itself when it already is one."""
    return conn.connection.driver_connection if isinstance(conn, Connection) else conn


class RawStatements:
    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        dialect: Dialect = engine.dialect
        # Named parameters work with dicts on both drivers (sqlite3 `:name`, psycopg `%(name)s`).
        named = dialect.paramstyle in ("named", "pyformat")
        self._dialect = dialect if named else type(dialect)(paramstyle="named")  # type: ignore[call-arg]
        self._sqlite = dialect.name == "sqlite"
        self._writer_lock = threading.Lock()
        self._writer: Any = None  # SQLite's dedicated write connection, opened on first use

    @functools.lru_cache(maxsize=64)  # noqa: B019 - one instance per store, statements are few and static
    def compile(self, stmt: ClauseElement, column_keys: tuple[str, ...] | None = None) -> str:
        return str(
            stmt.compile(dialect=self._dialect, column_keys=list(column_keys) if column_keys else None)
        )

    @contextlib.contextmanager
    def transaction(self) -> Iterator[Any]:
        """A write transaction on a driver connection; commits on success, rolls back on error.

        SQLite allows one writer at a time anyway, so its writes share one dedicated connection under a
        lock instead of paying a pool checkout and return per transaction; PostgreSQL uses the pool."""
        if not self._sqlite:
            pooled = self._engine.raw_connection()
            try:
                yield from self._commit_or_rollback(pooled.driver_connection)
            finally:
                pooled.close()  # back to the pool
            return
        with self._writer_lock:
            if self._writer is None:
                self._writer = self._engine.raw_connection()
            dbapi = self._writer.driver_connection
            dbapi.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]  # lock up front (see engine.py)
            yield from self._commit_or_rollback(dbapi)

    @staticmethod
    def _commit_or_rollback(dbapi: Any) -> Iterator[Any]:
        try:
            yield dbapi
            dbapi.commit()
        except BaseException:
            dbapi.rollback()
            raise

    def close(self) -> None:
        with self._writer_lock:
            if self._writer is not None:
                self._writer.close()
                self._writer = None

    @staticmethod
    def fetch(conn: AnyConnection, sql: str, params: Mapping[str, Any]) -> list[Record]:
        cursor = _dbapi(conn).cursor()
        try:
            cursor.execute(sql, params)
            if cursor.description is None:
                return []
            names = [d[0] for d in cursor.description]
            return [Record(zip(names, row)) for row in cursor.fetchall()]
        finally:
            cursor.close()

    @staticmethod
    def fetch_tuples(conn: AnyConnection, sql: str, params: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        cursor = _dbapi(conn).cursor()
        try:
            cursor.execute(sql, params)
            return cursor.fetchall()  # type: ignore[no-any-return]
        finally:
            cursor.close()

    @staticmethod
    def execute_many(conn: AnyConnection, sql: str, rows: Sequence[Mapping[str, Any]]) -> None:
        cursor = _dbapi(conn).cursor()
        try:
            cursor.executemany(sql, rows)
        finally:
            cursor.close()
