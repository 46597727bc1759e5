"""Engines for the SQL store: SQLite tuned for concurrent writers, PostgreSQL through psycopg 3, and the
schema check that creates an empty database or refuses an outdated one."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DatabaseError

from modelyard.errors import InvalidArgument, SchemaOutdated, Unavailable
from modelyard.store.sql.tables import SCHEMA_VERSION, metadata, use_postgresql

BUSY_TIMEOUT_S = 60


def normalize_url(uri: str) -> str:
    """Accept postgres:// and postgresql:// as shorthands for the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if uri.startswith(prefix):
            return "postgresql+psycopg://" + uri[len(prefix) :]
    return uri


def _sqlite_engine(url: str, immediate: bool) -> Engine:
    database = make_url(url).database
    if database and database != ":memory:":
        folder = Path(database).expanduser().parent
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise InvalidArgument(
                f"Cannot create the folder {folder} for the SQLite database {url}: {exc.strerror or exc}. "
                "Point the tracking URI at a folder you can write to."
            ) from None
    engine = create_engine(
        url, connect_args={"timeout": BUSY_TIMEOUT_S, "check_same_thread": False, "isolation_level": None}
    )

    @event.listens_for(engine, "connect")
    def _pragmas(dbapi_conn: Any, _record: Any) -> None:
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
        cur.execute("PRAGMA synchronous=NORMAL")  # WAL stays consistent on crash; commits skip an fsync
        cur.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_S * 1000}")
        cur.execute("PRAGMA wal_autocheckpoint=4000")  # checkpoint (and fsync) every ~16 MB, not every 4 MB
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA case_sensitive_like=ON")  # LIKE is case-sensitive, as on PostgreSQL; ILIKE is not
        cur.close()

    # Writers take the write lock up front: a deferred transaction that later upgrades to a writer can fail
    # with "database is locked" without waiting, which would lose points under concurrent writers.
    begin = "BEGIN IMMEDIATE" if immediate else "BEGIN"

    @event.listens_for(engine, "begin")
    def _begin(conn: Any) -> None:
        conn.connection.driver_connection.execute(
            begin
        )  # straight to sqlite3: this runs on every transaction

    return engine


def create_engines(uri: str) -> tuple[Engine, Engine]:
    """(write engine, read engine). They are the same engine except on SQLite."""
    url = normalize_url(uri)
    try:
        backend = make_url(url).get_backend_name()
    except Exception as exc:
        raise InvalidArgument(f"Cannot parse tracking URI {uri!r}: {exc}") from None
    if backend == "sqlite":
        return _sqlite_engine(url, immediate=True), _sqlite_engine(url, immediate=False)
    if backend == "postgresql":
        use_postgresql()
        engine = create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=16)
        return engine, engine
    raise InvalidArgument(
        f"Unsupported database {backend!r} in {uri!r}: use sqlite:/// or postgresql+psycopg://."
    )


def stored_version(engine: Engine) -> str | None:
    with engine.connect() as conn:
        if not inspect(conn).has_table("alembic_version"):
            return None
        return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


@contextmanager
def database_errors(uri: str) -> Iterator[None]:
    """A database that cannot be reached or opened (no server, not a SQLite file, no rights) is the user's to
    fix: `Unavailable` in one line, not the driver's traceback."""
    try:
        yield
    except DatabaseError as exc:
        raise Unavailable(f"Cannot open the tracking database {redact(uri)}: {exc.orig}") from None


def ensure_schema(write_engine: Engine, uri: str) -> None:
    """Create an empty database at the current schema; refuse one at another version with what to do."""
    with database_errors(uri), write_engine.begin() as conn:
        if conn.dialect.name == "postgresql":  # concurrent first starts must not both create tables
            conn.execute(text("SELECT pg_advisory_xact_lock(7461836)"))
        insp = inspect(conn)
        if insp.has_table("alembic_version"):
            version = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        elif insp.has_table("runs"):
            version = "unknown (no alembic_version table)"
        else:
            metadata.create_all(conn)
            conn.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL PRIMARY KEY)"))
            conn.execute(text("INSERT INTO alembic_version VALUES (:v)"), {"v": SCHEMA_VERSION})
            return
    if version != SCHEMA_VERSION:
        raise SchemaOutdated(
            f"The tracking database {redact(uri)} has schema version {version}, this Modelyard needs "
            f"{SCHEMA_VERSION}. Back it up, then run: modelyard db upgrade --tracking-uri '{redact(uri)}'"
        )


def redact(uri: str) -> str:
    """The URI without its password, for messages and logs."""
    try:
        return make_url(normalize_url(uri)).render_as_string(hide_password=True)
    except Exception:
        return uri
