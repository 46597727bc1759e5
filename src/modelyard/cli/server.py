"""`modelyard server`: the tracking server for a team (REST API v1 on a database and an artifact root)."""

from __future__ import annotations

import gc
import os

import click

from modelyard.cli.common import State, err, pass_state
from modelyard.store.validation import is_loopback_host


@click.command("server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind.")
@click.option("--port", default=5000, show_default=True, type=click.IntRange(1, 65535), help="Port to bind.")
@click.option(
    "--backend-store-uri",
    metavar="URI",
    help="Database: sqlite:///path or postgresql+psycopg://user@host/db (default: the local store).",
)
@click.option(
    "--artifacts-uri",
    metavar="URI",
    help="Root for new experiments' artifacts: a folder, s3://bucket/prefix or gs://bucket/prefix (default: MODELYARD_ARTIFACT_URI).",
)
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64), help="Worker processes.")
@click.option(
    "--max-body-mb",
    default=64.0,
    show_default=True,
    type=click.FloatRange(0.001),
    help="Largest request body.",
)
@click.option(
    "--auth",
    is_flag=True,
    help="Require an API token on every request, enforce roles per experiment and model, and keep an audit "
    "log of writes. Create the first admin with `modelyard users create NAME --admin` on the database.",
)
@click.option(
    "--default-role",
    type=click.Choice(["NONE", "READ", "EDIT", "MANAGE"], case_sensitive=False),
    default="READ",
    show_default=True,
    help="With --auth: the role users hold on experiments and models nobody granted them a role on.",
)
@click.option(
    "--artifact-location-prefix",
    "artifact_location_prefixes",
    metavar="URI",
    multiple=True,
    help="With --auth: users other than admins may give a new experiment an artifact location in a folder "
    "of its own under this prefix (an absolute folder, s3:// or gs://bucket/path; repeatable). Without one, only "
    "admins choose locations; everyone else gets the default under --artifacts-uri.",
)
@click.option(
    "--insecure",
    is_flag=True,
    help="Allow binding an address other than loopback without --auth: anyone who can reach the port can "
    "read and write everything.",
)
@pass_state
def server(
    state: State,
    host: str,
    port: int,
    backend_store_uri: str | None,
    artifacts_uri: str | None,
    workers: int,
    max_body_mb: float,
    auth: bool,
    default_role: str,
    artifact_location_prefixes: tuple[str, ...],
    insecure: bool,
) -> None:
    """Serve the tracking REST API (/api/v1, OpenAPI at /api/v1/openapi.json, /health, /ready).

    Clients point MODELYARD_TRACKING_URI at http://HOST:PORT and use the same SDK and CLI. Without --auth
    the server binds only loopback addresses (unless --insecure).

    \b
    Example:
      modelyard server --backend-store-uri postgresql+psycopg://postgres@127.0.0.1/modelyard \\
          --artifacts-uri s3://ml-artifacts/modelyard
      MODELYARD_TRACKING_URI=http://127.0.0.1:5000 python train.py
    Example (a team server with accounts):
      modelyard users create admin --admin --tracking-uri postgresql+psycopg://postgres@127.0.0.1/modelyard
      modelyard server --host 0.0.0.0 --auth --backend-store-uri postgresql+psycopg://postgres@127.0.0.1/modelyard
    """
    import uvicorn

    from modelyard.errors import InvalidArgument

    if not is_loopback_host(host) and not auth and not insecure:
        raise InvalidArgument(
            f"Refusing to bind {host} without authentication. Add --auth (API tokens and roles), bind "
            "127.0.0.1, or pass --insecure to accept that anyone who reaches the port can read and write "
            "every experiment."
        )
    if artifact_location_prefixes and not auth:
        err().print(
            "[yellow]--artifact-location-prefix has no effect without --auth[/] (every caller is an admin)."
        )
    backend = backend_store_uri or state.tracking_uri
    if backend and backend.startswith(("http://", "https://")):
        raise InvalidArgument("--backend-store-uri must be a database (sqlite:/// or postgresql+psycopg://).")
    # The app factory reads its settings from the environment, so every worker process builds the same app.
    for name, value in (
        ("MODELYARD_SERVER_BACKEND_STORE_URI", backend),
        ("MODELYARD_SERVER_ARTIFACTS_URI", artifacts_uri),
        ("MODELYARD_SERVER_MAX_BODY_MB", str(max_body_mb)),
        ("MODELYARD_SERVER_AUTH", "1" if auth else "0"),
        ("MODELYARD_SERVER_DEFAULT_ROLE", default_role.upper()),
        ("MODELYARD_SERVER_ARTIFACT_LOCATION_PREFIXES", "\n".join(artifact_location_prefixes)),
    ):
        if value:
            os.environ[name] = value
    from modelyard.server.app import app_from_env
    from modelyard.server.protocol import NoDelayHttpProtocol

    app = app_from_env()  # fail here, with a clean message, if the store cannot be opened
    err().print(
        f"[green]Modelyard server[/] on http://{host}:{port}  (API docs: http://{host}:{port}/api/v1/docs)"
        + ("  [bold]auth on[/]" if auth else "")
    )
    if auth and not any(u.is_admin for u in app.state.accounts.list_users()):
        from modelyard import config
        from modelyard.store.sql.engine import redact

        err().print(
            "[yellow]No admin user yet.[/] Create one (it prints its token): modelyard users create NAME "
            f"--admin --tracking-uri '{redact(backend or config.tracking_uri())}'"
        )
    # What startup loaded (the app, its routes and models) stays: keep it out of the collector's full passes.
    # No gc.collect() first: it would add ~50 ms to the startup for the little garbage importing leaves.
    gc.freeze()
    uvicorn.run(
        "modelyard.server.app:asgi_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=NoDelayHttpProtocol,
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # no access log, and nothing reads client addresses: one middleware less
    )
