"""`modelyard serve MODEL_URI`: serve one model over OIP v2, KServe v1 and /invocations, with dynamic batching."""

from __future__ import annotations

from pathlib import PurePosixPath

import click

from modelyard.cli.common import err


def model_identity(uri: str, name: str | None) -> tuple[str, str, str]:
    """(the name to serve under, its version, the URI to load): a `models:/` URI is pinned to the version it
    names now (an alias or stage is read once, at start-up)."""
    if uri.startswith("models:/"):
        from modelyard.registry.uris import model_version_for

        version = model_version_for(uri)
        return name or version.name, str(version.version), f"models:/{version.name}/{version.version}"
    if name:
        return name, "1", uri
    parts = [p for p in PurePosixPath(uri.split(":", 1)[-1]).parts if p not in ("/", ".", "..")]
    return (parts[-1] if parts else "model"), "1", uri


@click.command("serve")
@click.argument("model_uri", metavar="MODEL_URI")
@click.option("--name", help="Model name in the URLs (default: the registered name, or the folder's name).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (0.0.0.0: all).")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(1, 65535), help="Port to bind.")
@click.option(
    "--max-batch-size",
    default=32,
    show_default=True,
    type=click.IntRange(1),
    help="Most rows the model predicts on at once (1 turns batching off).",
)
@click.option(
    "--max-batch-delay-ms",
    default=5.0,
    show_default=True,
    type=click.FloatRange(0),
    help="Longest a request waits for others to join its batch.",
)
@click.option(
    "--max-queue",
    default=1024,
    show_default=True,
    type=click.IntRange(1),
    help="Most rows waiting; beyond it requests get 503 with Retry-After at once.",
)
@click.option(
    "--timeout-ms",
    type=click.FloatRange(0, min_open=True),
    help="Answer 504 when a request waits and runs longer than this [default: no limit].",
)
@click.option(
    "--trusted",
    is_flag=True,
    help="Load formats that run code when loaded (pickle, cloudpickle) without the UnsafeModelWarning.",
)
def serve(
    model_uri: str,
    name: str | None,
    host: str,
    port: int,
    max_batch_size: int,
    max_batch_delay_ms: float,
    max_queue: int,
    timeout_ms: float | None,
    trusted: bool,
) -> None:
    """Serve a model over HTTP: Open Inference Protocol v2 (/v2/...), KServe v1 (/v1/models/NAME:predict)
    and MLflow-style /invocations, batching concurrent requests.

    MODEL_URI: models:/NAME/VERSION, models:/NAME@ALIAS, models:/NAME/STAGE, runs:/RUN_ID/PATH or a model
    folder. Requests are checked against the model's signature before they are queued.

    \b
    Example:
      modelyard serve models:/iris@champion --port 8080
      curl -s localhost:8080/v2/models/iris/infer -H 'Content-Type: application/json' \\
        -d '{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP64", "data": [5.1, 3.5, 1.4, 0.2]}]}'
      curl -s localhost:8080/invocations -H 'Content-Type: application/json' \\
        -d '{"dataframe_split": {"columns": ["a", "b"], "data": [[1, 2]]}}'
    Example (a folder, larger batches, a 200 ms deadline):
      modelyard serve ./my-model --name scorer --max-batch-size 64 --timeout-ms 200
    """
    import uvicorn

    from modelyard.models import load_predictor
    from modelyard.serving import BatchConfig, Deployment, create_serving_app

    served_name, version, load_uri = model_identity(model_uri, name)
    config = BatchConfig(
        max_batch_size=max_batch_size,
        max_batch_delay=max_batch_delay_ms / 1000,
        max_queue=max_queue,
        timeout=timeout_ms / 1000 if timeout_ms is not None else None,
    )
    predictor = load_predictor(load_uri, trusted=trusted)
    app = create_serving_app(Deployment.single(predictor, served_name, version, config))
    from modelyard.server.protocol import NoDelayHttpProtocol

    err().print(
        f"[green]Serving[/] {served_name} version {version} ({predictor.flavor.name}) on http://{host}:{port}  "
        f"(OIP v2: /v2/models/{served_name}/infer)"
    )
    uvicorn.run(
        app,
        host=host,
        port=port,
        http=NoDelayHttpProtocol,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=30,
    )
