"""`modelyard serve MODEL_URI`: serve one model over OIP v2, KServe v1 and /invocations, with dynamic batching."""

from __future__ import annotations

import os
import sys
import time
from pathlib import PurePosixPath
from typing import Any

import click

from modelyard.cli.common import State, err, parse_key_values, tracking_uri_option
from modelyard.cli.serve_run import listen, run_recorded


def model_identity(uri: str, name: str | None) -> tuple[str, str, str]:
    """(the name to serve under, its version, the URI to load): a `models:/` URI is pinned to the version it
    names now (an alias or stage is read at start-up; `--follow` then keeps up with it)."""
    if uri.startswith("models:/"):
        from modelyard.registry.uris import model_version_for

        version = model_version_for(uri)
        return name or version.name, str(version.version), f"models:/{version.name}/{version.version}"
    if name:
        return name, "1", uri
    parts = [p for p in PurePosixPath(uri.split(":", 1)[-1]).parts if p not in ("/", ".", "..")]
    return (parts[-1] if parts else "model"), "1", uri


def _key_values(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    """--env/--label/--annotation KEY=VALUE pairs (an error names the option)."""
    return parse_key_values(values, f"'{max(param.opts, key=len)}'")


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
    help="Longest a request waits for others to join its batch while other batches run (an idle model "
    "takes requests at once).",
)
@click.option(
    "--max-queue",
    default=1024,
    show_default=True,
    type=click.IntRange(1),
    help="Most rows waiting; beyond it requests get 503 with Retry-After at once.",
)
@click.option(
    "--max-request-mb",
    default=100.0,
    show_default=True,
    type=click.FloatRange(0, min_open=True),
    help="Largest inference request body in MiB; larger ones get 413 before they are read whole.",
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
@click.option(
    "--replicas",
    type=click.IntRange(1),
    help="Worker processes holding the model; 1: the model runs in the server's process "
    "(kserve: minReplicas = maxReplicas = N).",
)
@click.option(
    "--autoscale",
    metavar="MIN:MAX",
    callback=lambda _ctx, _param, value: _parse_autoscale(value),
    help="Scale the worker processes between MIN and MAX on requests in flight per replica "
    "(kserve: minReplicas, maxReplicas; MIN 0 scales to zero there).",
)
@click.option(
    "--scale-up-delay",
    type=click.FloatRange(0),
    metavar="SECONDS",
    help="[local --autoscale] Scale up only to a count wanted for this long [default: 2].",
)
@click.option(
    "--scale-down-delay",
    type=click.FloatRange(0),
    metavar="SECONDS",
    help="[local --autoscale] Scale down only to a count wanted for this long [default: 30].",
)
@click.option(
    "--scale-window",
    type=click.FloatRange(0, min_open=True),
    metavar="SECONDS",
    help="[local --autoscale] Average the requests in flight over this many seconds (Knative's stable "
    "window): longer is steadier, shorter reacts sooner [default: 6].",
)
@click.option(
    "--target",
    type=click.Choice(["local", "kserve"]),
    default="local",
    show_default=True,
    help="local: serve here; kserve: a KServe InferenceService running `modelyard serve` "
    "(with --dry-run or --apply).",
)
@click.option("--dry-run", is_flag=True, help="[kserve] Print the InferenceService YAML (or write it to -o).")
@click.option(
    "--apply", "apply_", is_flag=True, help="[kserve] Create it in the cluster, or update it if it exists."
)
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, writable=True),
    help="[kserve] Write the YAML to this file.",
)
@click.option("--image", help="[kserve] Container image with Modelyard (and the model's flavor) installed.")
@click.option("--namespace", help="[kserve] Namespace [default: the kubeconfig context's, or 'default'].")
@click.option(
    "--kubeconfig",
    type=click.Path(dir_okay=False, exists=True),
    help="[kserve] Kubeconfig file for --apply [default: KUBECONFIG or ~/.kube/config].",
)
@click.option("--kube-context", help="[kserve] Kubeconfig context for --apply [default: the current one].")
@click.option(
    "--scale-metric",
    type=click.Choice(["concurrency", "rps", "cpu", "memory"]),
    help="[kserve] Autoscaling metric (concurrency, rps: Knative; cpu, memory: HPA).",
)
@click.option(
    "--scale-target",
    type=click.IntRange(1),
    help="Target value of --scale-metric per replica (kserve); local --autoscale: requests in flight per "
    "replica [default: 4].",
)
@click.option(
    "--canary",
    "canary",
    metavar="MODEL_URI",
    help="Serve this model too, as a canary taking --canary-percent of the requests that name no version.",
)
@click.option(
    "--canary-percent",
    type=click.IntRange(0, 100),
    help="Traffic share of --canary [default: 10]; kserve: of this version, the rest staying on the last "
    "rolled-out one.",
)
@click.option(
    "--shadow",
    "shadows",
    multiple=True,
    metavar="MODEL_URI",
    help="Serve this model too, as a shadow: it gets a copy of every request and its answers are only "
    "compared and logged (repeatable).",
)
@click.option(
    "--follow/--no-follow",
    default=True,
    show_default=True,
    help="For models:/NAME@ALIAS (or /STAGE, /latest): switch to the version it names when it moves.",
)
@click.option(
    "--follow-interval",
    type=click.FloatRange(0, min_open=True),
    default=5.0,
    show_default=True,
    metavar="SECONDS",
    help="How often --follow looks the alias or stage up.",
)
@click.option(
    "--cpu", callback=lambda _c, p, v: _quantity(p, v), help="[kserve] CPU per replica (e.g. 2, 500m)."
)
@click.option(
    "--memory", callback=lambda _c, p, v: _quantity(p, v), help="[kserve] Memory per replica (e.g. 4Gi)."
)
@click.option("--gpu", type=click.IntRange(1), help="[kserve] NVIDIA GPUs per replica.")
@click.option(
    "--env",
    "env",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_key_values,
    help="[kserve] Container environment variable (repeatable).",
)
@click.option(
    "--label",
    "labels",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_key_values,
    help="[kserve] Extra label (repeatable).",
)
@click.option(
    "--annotation",
    "annotations",
    multiple=True,
    metavar="KEY=VALUE",
    callback=_key_values,
    help="[kserve] Extra annotation (repeatable).",
)
@click.option(
    "--service-account", help="[kserve] Service account of the pods (e.g. one holding S3 credentials)."
)
@click.option(
    "--log-payloads",
    type=click.FloatRange(0, 1),
    metavar="FRACTION",
    help="Fraction of requests and responses to log as Parquet for drift monitoring "
    "[default: 1 with --payload-log-uri, else 0].",
)
@click.option(
    "--payload-log-uri",
    metavar="URI",
    help="Folder, file:// or s3:// URI for payload logs [default: <artifact root>/payload-logs].",
)
@click.option("--no-metrics", is_flag=True, help="Do not serve Prometheus /metrics.")
@click.option(
    "--model-threads",
    type=click.IntRange(1),
    help="Threads the model's libraries (torch, BLAS, OpenMP) use per replica [default: OMP_NUM_THREADS if "
    "set, else 1: batches of single-row requests gain nothing from more, and replicas give the parallelism].",
)
@click.option(
    "--no-record",
    is_flag=True,
    help="Do not record the deployment (traffic split, changes, state) in the tracking store.",
)
@tracking_uri_option
@click.pass_context
def serve(
    ctx: click.Context,
    model_uri: str,
    name: str | None,
    host: str,
    port: int,
    max_batch_size: int,
    max_batch_delay_ms: float,
    max_queue: int,
    max_request_mb: float,
    timeout_ms: float | None,
    trusted: bool,
    replicas: int | None,
    autoscale: tuple[int, int] | None,
    scale_up_delay: float | None,
    scale_down_delay: float | None,
    scale_window: float | None,
    target: str,
    log_payloads: float | None,
    payload_log_uri: str | None,
    no_metrics: bool,
    no_record: bool,
    model_threads: int | None,
    canary: str | None,
    shadows: tuple[str, ...],
    follow: bool,
    follow_interval: float,
    **kserve: Any,
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
    Example (10% of the traffic to version 5, a copy of every request to version 6; see also
    `modelyard rollout`):
      modelyard serve models:/iris@champion --canary models:/iris/5 --canary-percent 10 --shadow models:/iris/6
    Example (worker processes: 4, or 1 to 8 on 4 requests in flight per replica):
      modelyard serve models:/iris/1 --replicas 4
      modelyard serve models:/iris/1 --autoscale 1:8 --scale-target 4 --scale-down-delay 60 --scale-window 10
    Example (a KServe InferenceService: print it, then submit it):
      modelyard serve models:/iris@champion --target kserve --dry-run \\
        --image registry.example.com/modelyard:0.1 --autoscale 1:4 --scale-metric concurrency --scale-target 4
      modelyard serve models:/iris/2 --target kserve --apply --image registry.example.com/modelyard:0.1 \\
        --namespace models --canary-percent 10 --cpu 2 --memory 4Gi
    """
    if replicas is not None and autoscale is not None:
        raise click.BadParameter("give --replicas or --autoscale, not both.", param_hint="'--autoscale'")
    if target == "kserve" and (canary or shadows):
        raise click.UsageError(
            "--canary and --shadow serve here (--target local); with --target kserve, --canary-percent makes "
            "this version the InferenceService's canary."
        )
    local_scaling = {
        "scale_up_delay": scale_up_delay,
        "scale_down_delay": scale_down_delay,
        "scale_window": scale_window,
    }
    if target == "kserve":
        for key, value in local_scaling.items():
            if value is not None:
                raise click.UsageError(f"{_option_name(ctx, key)} applies to --target local only.")
        _serve_kserve(
            ctx,
            model_uri,
            name,
            port,
            max_batch_size,
            max_batch_delay_ms,
            max_queue,
            max_request_mb,
            timeout_ms,
            trusted,
            replicas,
            autoscale,
            kserve,
        )
        return
    _refuse_kserve_only_options(ctx, kserve)
    if kserve["canary_percent"] is not None and canary is None:
        raise click.UsageError("--canary-percent needs --canary MODEL_URI (or --target kserve).")
    scaling = {"scale_target": kserve["scale_target"], **local_scaling}
    if autoscale is None:
        for key, value in scaling.items():
            if value is not None:
                raise click.UsageError(f"{_option_name(ctx, key)} applies to --autoscale.")
    elif autoscale[0] < 1:
        raise click.BadParameter(
            "serving here needs MIN >= 1: scaling to zero needs something that holds requests while a "
            "replica starts (KServe's activator: use --target kserve).",
            param_hint="'--autoscale'",
        )
    listener = listen(host, port)  # a busy port fails here: before loading, announcing or recording
    ctx.call_on_close(listener.close)  # when loading the model fails
    limit_model_threads(model_threads)
    state = ctx.find_object(State)
    if state is not None and state.tracking_uri:
        from modelyard.tracking.fluent import set_tracking_uri

        set_tracking_uri(state.tracking_uri)
    from modelyard.serving import BatchConfig, Deployment, create_serving_app
    from modelyard.serving.follow import AliasFollower, followable

    served_name, version, load_uri = model_identity(model_uri, name)
    config = BatchConfig(
        max_batch_size=max_batch_size,
        max_batch_delay=max_batch_delay_ms / 1000,
        max_queue=max_queue,
        timeout=timeout_ms / 1000 if timeout_ms is not None else None,
    )
    model = _served_model(served_name, version, load_uri, config, trusted, replicas, autoscale, scaling)
    side = side_models(served_name, version, canary, shadows, config, trusted)
    percent = kserve["canary_percent"]
    deployment = Deployment([model, *side], canary_percent=10 if percent is None else percent)
    background = []
    if follow and followable(model_uri):

        def load(found: Any, current: Any) -> Any:
            uri = f"models:/{found.name}/{found.version}"
            return _served_model(
                served_name, str(found.version), uri, config, trusted, replicas, autoscale, scaling
            )

        follower = AliasFollower(
            deployment,
            model_uri,
            name=served_name,
            interval=follow_interval,
            load=load,
            on_switch=print_switch,
        )
        background.append(follower.run)
    app = create_serving_app(
        deployment,
        metrics=not no_metrics,
        payload_log=payload_log_config(log_payloads, payload_log_uri),
        background=background,
        max_request_bytes=int(max_request_mb * 1024 * 1024),
    )
    err().print(
        f"[green]Serving[/] {served_name} version {version} ({model.predictor.flavor.name}) on "
        f"{listener.url}  (OIP v2: /v2/models/{served_name}/infer)" + _replicas_note(model)
    )
    for extra in side:
        share = (
            f" ({deployment.split(served_name).percent:g}% of the requests)" if extra.role == "canary" else ""
        )
        err().print(f"  {extra.role} version {extra.version}{share}: {extra.predictor.uri}")
    if background:
        err().print(f"  following {model_uri} (looked up every {follow_interval:g} s)")
    info = {"follows": model_uri} if background else {}
    run_recorded(app, deployment, served_name, listener, record=not no_record, info=info)


def _served_model(
    name: str,
    version: str,
    uri: str,
    config: Any,
    trusted: bool,
    replicas: int | None,
    autoscale: tuple[int, int] | None,
    scaling: dict[str, Any],
) -> Any:
    """The `ServedModel` to serve here: the model loaded in this process (one replica), or held by worker
    processes (`--replicas N`, `--autoscale MIN:MAX`), which the front process never loads it for."""
    from modelyard.serving import ServedModel

    started = time.perf_counter()
    if autoscale is None and (replicas or 1) == 1:
        from modelyard.models import load_predictor

        predictor = load_predictor(uri, trusted=trusted)
        return ServedModel(name, version, predictor, config, load_seconds=time.perf_counter() - started)
    import logging

    from modelyard.serving.autoscale import AutoscaleConfig, Autoscaler
    from modelyard.serving.replicas import ProcessRunner

    handler = logging.StreamHandler()  # replica starts, crashes and scaling decisions, at INFO
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    logging.getLogger("modelyard.serving").addHandler(handler)
    logging.getLogger("modelyard.serving").setLevel(logging.INFO)
    runner = ProcessRunner(uri, autoscale[0] if autoscale else replicas or 1, trusted=trusted,
                           name=f"{name}/{version}")  # fmt: skip
    model = ServedModel(
        name, version, runner, config, runner=runner, load_seconds=time.perf_counter() - started
    )
    if autoscale is not None:
        options = {"target": scaling["scale_target"], "scale_up_delay": scaling["scale_up_delay"],
                   "scale_down_delay": scaling["scale_down_delay"], "window": scaling["scale_window"]}  # fmt: skip
        Autoscaler(model, AutoscaleConfig(*autoscale, **{k: v for k, v in options.items() if v is not None}))
    return model


def _replicas_note(model: Any) -> str:
    """What holds the model, when worker processes do (they stand in for the predictor, see ProcessRunner)."""
    if model.predictor is not model.runner:
        return ""
    workers = f"{model.replicas} worker process" + ("es" if model.replicas > 1 else "")
    autoscaler = model.batcher.autoscaler
    if autoscaler is None:
        return f"  [dim]{workers}[/]"
    config = autoscaler.config
    return (
        f"  [dim]{workers}, autoscaled between {config.min_replicas} and {config.max_replicas} on "
        f"{config.target:g} requests in flight per replica[/]"
    )


_KSERVE_ONLY = (
    "dry_run",
    "apply_",
    "output",
    "image",
    "namespace",
    "kubeconfig",
    "kube_context",
    "scale_metric",
    "cpu",
    "memory",
    "gpu",
    "env",
    "labels",
    "annotations",
    "service_account",
)


def _option_name(ctx: click.Context, key: str) -> str:
    for param in ctx.command.params:
        if param.name == key and isinstance(param, click.Option):
            return max(param.opts, key=len)
    return "--" + key.replace("_", "-")


def _refuse_kserve_only_options(ctx: click.Context, kserve: dict[str, Any]) -> None:
    from click.core import ParameterSource

    for key in _KSERVE_ONLY:
        if ctx.get_parameter_source(key) not in (None, ParameterSource.DEFAULT):
            raise click.UsageError(f"{_option_name(ctx, key)} applies to --target kserve only.")


def _parse_autoscale(value: str | None) -> tuple[int, int] | None:
    if value is None:
        return None
    low, sep, high = value.partition(":")
    try:
        bounds = (int(low), int(high))
    except ValueError:
        bounds = None
    if not sep or bounds is None or bounds[0] < 0 or bounds[1] < 1 or bounds[0] > bounds[1]:
        raise click.BadParameter(
            f"{value!r}: write MIN:MAX with 0 <= MIN <= MAX and MAX >= 1 (e.g. 1:4).",
            param_hint="'--autoscale'",
        )
    return bounds


def _quantity(param: click.Parameter, value: str | None) -> str | None:
    from modelyard.kube.validate import is_quantity

    if value is not None and not is_quantity(value):
        raise click.BadParameter(
            f"{value!r} is not a Kubernetes quantity (e.g. 2, 500m, 4Gi).", param_hint=f"'--{param.name}'"
        )
    return value


def _serve_kserve(
    ctx: click.Context,
    model_uri: str,
    name: str | None,
    port: int,
    max_batch_size: int,
    max_batch_delay_ms: float,
    max_queue: int,
    max_request_mb: float,
    timeout_ms: float | None,
    trusted: bool,
    replicas: int | None,
    autoscale: tuple[int, int] | None,
    kserve: dict[str, Any],
) -> None:
    """`--target kserve`: build the InferenceService, check it, then print/write it or submit it."""
    import os
    from pathlib import Path

    from click.core import ParameterSource
    from rich.text import Text

    from modelyard.kube import to_yaml
    from modelyard.serving.kserve import KServeOptions, build

    if kserve["dry_run"] == kserve["apply_"]:
        raise click.UsageError(
            "--target kserve needs --dry-run (print the InferenceService) or --apply (submit it), one of them."
        )
    if not kserve["image"]:
        raise click.UsageError(
            "--target kserve needs --image: a container image with Modelyard and the model's flavor installed "
            "(e.g. --image registry.example.com/modelyard:0.1)."
        )
    state = ctx.find_object(State)
    tracking_uri = (state.tracking_uri if state else None) or os.environ.get("MODELYARD_TRACKING_URI") or None
    low, high = autoscale if autoscale else (replicas, replicas)

    def given(option: str) -> bool:  # left out of the container's command line when left at its default
        return ctx.get_parameter_source(option) != ParameterSource.DEFAULT

    options = KServeOptions(
        image=kserve["image"],
        name=name,
        namespace=kserve["namespace"],
        port=port,
        min_replicas=low,
        max_replicas=high,
        scale_metric=kserve["scale_metric"],
        scale_target=kserve["scale_target"],
        canary_percent=kserve["canary_percent"],
        max_batch_size=max_batch_size,
        max_batch_delay_ms=max_batch_delay_ms,
        max_queue=max_queue if given("max_queue") else None,
        max_request_mb=max_request_mb if given("max_request_mb") else None,
        timeout_ms=timeout_ms,
        trusted=trusted,
        cpu=kserve["cpu"],
        memory=kserve["memory"],
        gpu=kserve["gpu"],
        env=kserve["env"],
        labels=kserve["labels"],
        annotations=kserve["annotations"],
        tracking_uri=tracking_uri,
        service_account=kserve["service_account"],
    )
    manifest, notes = build(model_uri, options, strict=not kserve["dry_run"])
    for note in notes:
        line = Text(note, style="yellow" if note.warning else "dim")
        err().print(Text("Warning: ", style="bold yellow") + line if note.warning else line)
    text = to_yaml(manifest)
    if kserve["output"]:
        Path(kserve["output"]).write_text(text, encoding="utf-8")
        err().print(f"[green]Wrote[/] InferenceService {manifest['metadata']['name']} to {kserve['output']}")
    elif kserve["dry_run"]:
        click.echo(text, nl=False)
    if kserve["apply_"]:
        from modelyard.kube import apply

        applied = apply(
            manifest,
            namespace=kserve["namespace"],
            kubeconfig=kserve["kubeconfig"],
            context=kserve["kube_context"],
        )
        err().print(
            f"[green]{applied.action.capitalize()}[/] InferenceService {applied.name} in namespace "
            f"{applied.namespace}  (kubectl get inferenceservice {applied.name} -n {applied.namespace})"
        )
        _record_kserve(applied, model_uri, name, kserve["canary_percent"], kserve["image"])


def _record_kserve(applied: Any, model_uri: str, name: str | None, canary: int | None, image: str) -> None:
    """Record an applied InferenceService in the tracking store: a new deployment (STARTING: the cluster
    rolls it out), or the next change of the one recorded for it — KServe's canaryTrafficPercent sends that
    share to the new version and keeps the rest on the last one rolled out."""
    from modelyard.errors import ModelyardError
    from modelyard.registry.deployments import deployment_store_for
    from modelyard.serving.recording import identity

    served, _, uri = model_identity(model_uri, name)
    new = identity(uri, served)
    endpoint = f"http://{applied.name}.{applied.namespace}.svc.cluster.local"  # its address in the cluster
    try:
        store = deployment_store_for()
        found = [
            d
            for d in store.list_deployments(name=applied.name)
            if d.endpoint == endpoint and d.state.value != "STOPPED"
        ]
        if not found:
            traffic = [{**new, "percent": 100, "role": "primary"}]
            info = {"namespace": applied.namespace, "inferenceservice": applied.name, "image": image}
            store.create_deployment(applied.name, endpoint, traffic, target="kserve", info=info,
                                    message=f"{applied.action} the InferenceService")  # fmt: skip
            return
        record = found[0]
        primary = next(t for t in record.traffic if t.role.value == "primary")
        same = (primary.model_name, primary.version) == (new["model_name"], new["version"])
        if canary is not None and canary < 100 and not same:
            traffic = [
                {**primary.model_dump(mode="json"), "percent": 100 - canary},
                {**new, "percent": canary, "role": "canary"},
            ]
            store.update_deployment(record.deployment_id, traffic, state="ROLLING_OUT",
                                    message=f"canary at {canary}%: {uri}")  # fmt: skip
        else:
            traffic = [{**new, "percent": 100, "role": "primary"}]
            store.update_deployment(record.deployment_id, traffic, state="RUNNING", message=f"serving {uri}",
                                    kind=None if same else "promoted")  # fmt: skip
    except ModelyardError as exc:
        err().print(f"[yellow]The deployment was not recorded in the tracking store:[/] {exc.message}")


# -- local serving pieces shared with `modelyard rollout` -------------------------------------------------------


def side_models(
    name: str, version: str, canary: str | None, shadows: tuple[str, ...], config: Any, trusted: bool
) -> list[Any]:
    """The `--canary` and `--shadow` models, served under `name` next to `version`: a registry version keeps
    its number; another URI (a folder, runs:/) is labelled by its role (canary, shadow, shadow-2, ...)."""
    taken, models = {version}, []
    for role, uri in [*([("canary", canary)] if canary else []), *(("shadow", uri) for uri in shadows)]:
        _, side_version, load_uri = model_identity(uri, name)
        if not uri.startswith("models:/"):
            side_version = next(label for n in range(1, len(taken) + 2)
                                if (label := role if n == 1 else f"{role}-{n}") not in taken)  # fmt: skip
        if side_version in taken:
            raise click.UsageError(
                f"{uri} is version {side_version} of {name!r}, which is served already; give another version."
            )
        taken.add(side_version)
        model = _served_model(name, side_version, load_uri, config, trusted, None, None, {})
        model.role = role
        models.append(model)
    return models


def payload_log_config(fraction: float | None, uri: str | None) -> Any:
    """The payload log of `--log-payloads FRACTION` / `--payload-log-uri URI` (None: off)."""
    sample = fraction if fraction is not None else (1.0 if uri else 0.0)
    if sample <= 0:
        return None
    from modelyard import config as settings
    from modelyard.artifacts import join_uri
    from modelyard.serving.payload_log import PayloadLogConfig

    return PayloadLogConfig(uri or join_uri(settings.artifact_uri(), "payload-logs"), sample=sample)


def print_switch(switch: Any) -> None:
    """One line per move of a followed alias or stage."""
    if switch.error is None:
        err().print(
            f"[green]Following[/] {switch.uri}: now serving version {switch.new_version} (was "
            f"{switch.old_version}; loaded and switched in {switch.load_seconds:.1f} s)"
        )
    else:
        err().print(
            f"[red]Not following[/] {switch.uri} to version {switch.new_version} (still serving "
            f"{switch.old_version}): {switch.error}"
        )


_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def limit_model_threads(threads: int | None) -> None:
    """Cap the threads of the model's numeric libraries, in this process and the replicas it starts (they
    read these variables when they are imported: before the model is loaded). Without a cap torch's OpenMP
    threads spin on every small batch: 2.5x the CPU per request and 15x the p99 latency, measured here."""
    if threads is None:
        if os.environ.get("OMP_NUM_THREADS"):
            return  # the user's choice
        threads = 1
    for name in _THREAD_VARIABLES:
        os.environ[name] = str(threads)
    if "torch" in sys.modules:  # imported already: tell it too
        sys.modules["torch"].set_num_threads(threads)
