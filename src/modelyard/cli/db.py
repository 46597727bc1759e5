"""`modelyard db ...`: the tracking database's schema version, and migrating it after an upgrade."""

from __future__ import annotations

import click

from modelyard.cli.common import DIM, State, esc, key_value_grid, out, pass_state

_uri_option = click.option(
    "--tracking-uri",
    "db_uri",
    metavar="URI",
    help="The database to act on (default: the global --tracking-uri, MODELYARD_TRACKING_URI or the local store).",
)


@click.group("db")
def db() -> None:
    """Inspect and migrate the tracking database's schema.

    \b
    Example:
      modelyard db current
      modelyard db upgrade --tracking-uri postgresql+psycopg://user@host/modelyard
    """


def _database_uri(state: State, override: str | None) -> str:
    from modelyard import config
    from modelyard.errors import InvalidArgument

    uri = override or state.tracking_uri or config.tracking_uri()
    if uri.startswith(("http://", "https://")):
        raise InvalidArgument(
            f"{uri} is a tracking server: run `modelyard db` on the server's machine, against its database URI "
            "(sqlite:///... or postgresql+psycopg://...)."
        )
    return uri


@db.command("current")
@_uri_option
@pass_state
def current(state: State, db_uri: str | None) -> None:
    """Show the stored and needed schema versions.

    Compares the schema version stored in the database with the one this Modelyard needs.

    \b
    Example:
      modelyard db current
    """
    from modelyard.store.sql.engine import create_engines, database_errors, redact, stored_version
    from modelyard.store.sql.tables import SCHEMA_VERSION

    uri = _database_uri(state, db_uri)
    write_engine, read_engine = create_engines(uri)
    try:
        with database_errors(uri):
            version = stored_version(read_engine)
    finally:
        write_engine.dispose()
        read_engine.dispose()
    if version is None:
        verdict = f"[{DIM}]empty database: the schema is created on first use[/]"
    elif version == SCHEMA_VERSION:
        verdict = "[green]up to date[/]"
    else:
        verdict = "[yellow]needs an upgrade[/]: back it up, then run `modelyard db upgrade`"
    out().print(
        key_value_grid(
            [
                ("Database", esc(redact(uri))),
                ("Stored schema", version or "none"),
                ("Needed schema", SCHEMA_VERSION),
                ("Status", verdict),
            ]
        )
    )


@db.command("upgrade")
@_uri_option
@pass_state
def upgrade(state: State, db_uri: str | None) -> None:
    """Migrate the database to the current schema.

    Applies every migration between the stored schema and the one this Modelyard needs. Back it up first.

    \b
    Example:
      modelyard db upgrade
      modelyard db upgrade --tracking-uri postgresql+psycopg://user@host/modelyard
    """
    from modelyard.store.sql.engine import database_errors, redact
    from modelyard.store.sql.migrate import upgrade as migrate

    uri = _database_uri(state, db_uri)
    with database_errors(uri):
        before, after = migrate(uri)
    where = esc(redact(uri))
    if before == after:
        out().print(f"Schema of {where} is already up to date (version {after}).")
    else:
        out().print(f"Upgraded schema of {where}: {before or 'empty'} → [green]{after}[/]")
