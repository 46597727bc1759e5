"""`modelyard server`: the tracking server for a team (REST API v1 on a database and an artifact root)."""

from __future__ import annotations

import ipaddress
import os

import click

from modelyard.cli.common import State, err, pass_state

_LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    if host in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    help="Root for new experiments' artifacts: a folder or s3://bucket/prefix (default: MODELYARD_ARTIFACT_URI).",
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
    "--insecure",
    is_flag=True,
    help="Allow binding an address other than loopback. Authentication is not built yet: anyone who can reach "
    "the port can read and write everything.",
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
    insecure: bool,
) -> None:
    """Serve the tracking REST API (/api/v1, OpenAPI at /api/v1/openapi.json, /health, /ready).

    Clients point MODELYARD_TRACKING_URI at http://HOST:PORT and use the same SDK and CLI.

    \b
    Example:
      modelyard server --backend-store-uri postgresql+psycopg://postgres@127.0.0.1/modelyard \\
          --artifacts-uri s3://ml-artifacts/modelyard
      MODELYARD_TRACKING_URI=http://127.0.0.1:5000 python train.py
    """
    import uvicorn

    from modelyard.errors import InvalidArgument

    if not is_loopback(host) and not insecure:
        raise InvalidArgument(
            f"Refusing to bind {host} without authentication. Bind 127.0.0.1, or pass --insecure to accept that "
            "anyone who reaches the port can read and write every experiment."
        )
    backend = backend_store_uri or state.tracking_uri
    if backend and backend.startswith(("http://", "https://")):
        raise InvalidArgument("--backend-store-uri must be a database (sqlite:/// or postgresql+psycopg://).")
    # The app factory reads its settings from the environment, so every worker process builds the same app.
    for name, value in (
        ("MODELYARD_SERVER_BACKEND_STORE_URI", backend),
        ("MODELYARD_SERVER_ARTIFACTS_URI", artifacts_uri),
        ("MODELYARD_SERVER_MAX_BODY_MB", str(max_body_mb)),
    ):
        if value:
            os.environ[name] = value
    from modelyard.server.app import app_from_env
    from modelyard.server.protocol import NoDelayHttpProtocol

    app_from_env()  # fail here, with a clean message, if the store cannot be opened
    err().print(
        f"[green]Modelyard server[/] on http://{host}:{port}  (API docs: http://{host}:{port}/api/v1/docs)"
    )
    uvicorn.run(
        "modelyard.server.app:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        http=NoDelayHttpProtocol,
        log_level="warning",
        access_log=False,
    )
