"""A KServe `InferenceService` (serving.kserve.io/v1beta1) that runs `modelyard serve` in the predictor.

    source = resolve_model("models:/iris@champion", tracking_uri="http://modelyard:5000")
    manifest = inference_service(source, KServeOptions(image="registry.example.com/modelyard:0.1"))
    modelyard.kube.validate(manifest)      # the CRD schema + KServe's webhook rules
    modelyard.kube.apply(manifest)         # create, or update in place

What maps to what:

- the model: when its files are in `s3://` or `gs://`, the predictor container gets `STORAGE_URI` (KServe's
  storage initializer downloads them to /mnt/models before the server starts) and serves `/mnt/models`;
  otherwise the container loads the pinned URI itself (`models:/NAME/VERSION`, `runs:/...`) through
  `MODELYARD_TRACKING_URI`, which must then be a server or database the pod can reach;
- replicas / autoscale / scale metric and target / canary percent: the predictor's `minReplicas`,
  `maxReplicas`, `scaleMetric`, `scaleTarget`, `canaryTrafficPercent`;
- batching: `modelyard serve`'s own options (every protocol), and KServe's `batcher` (which batches only the
  v1 `:predict` protocol in KServe's agent) with the same size and delay;
- resources: requests = limits for cpu and memory (guaranteed QoS), `nvidia.com/gpu` limits;
- labels and annotations carry the model's name, version and URI.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from modelyard.errors import InvalidArgument
from modelyard.store.validation import is_loopback_host

API_VERSION = "serving.kserve.io/v1beta1"
KIND = "InferenceService"
CONTAINER_NAME = "kserve-container"  # the container KServe treats as the model server
STORAGE_URI_ENV = "STORAGE_URI"  # read by KServe's storage initializer for custom containers
MOUNT_PATH = "/mnt/models"  # where the storage initializer puts the files
STORAGE_SCHEMES = ("s3", "gs")
REMOTE_TRACKING_SCHEMES = ("http", "https", "postgresql", "postgresql+psycopg", "mysql")
SCALE_METRICS = ("concurrency", "rps", "cpu", "memory")
LABEL_PREFIX = "modelyard.io/"


@dataclass(frozen=True)
class ModelSource:
    """The model to serve: its name and registry version (None outside the registry), the URI the container
    loads when it fetches the model itself, and where its files are (an artifact URI, None for a folder)."""

    name: str
    version: str | None
    uri: str
    location: str | None

    @property
    def storage_uri(self) -> str | None:
        """The location when KServe's storage initializer can download it (s3://, gs://)."""
        if self.location and urlsplit(self.location).scheme in STORAGE_SCHEMES:
            return self.location
        return None


@dataclass(frozen=True)
class KServeOptions:
    """How to run it. `image` must contain Modelyard with the model's flavor (`modelyard` on PATH)."""

    image: str
    name: str | None = None
    namespace: str | None = None
    port: int = 8080
    min_replicas: int | None = None
    max_replicas: int | None = None
    scale_metric: str | None = None
    scale_target: int | None = None
    canary_percent: int | None = None
    max_batch_size: int = 32
    max_batch_delay_ms: float = 5.0
    max_queue: int | None = None
    max_request_mb: float | None = None
    timeout_ms: float | None = None
    trusted: bool = False
    cpu: str | None = None
    memory: str | None = None
    gpu: int | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    annotations: Mapping[str, str] = field(default_factory=dict)
    tracking_uri: str | None = None
    service_account: str | None = None


def is_remote_tracking_uri(uri: str | None) -> bool:
    """Whether a pod could reach this tracking store (a server or a database server, not a local file)."""
    return bool(uri) and urlsplit(uri or "").scheme in REMOTE_TRACKING_SCHEMES


def resolve_model(uri: str, tracking_uri: str | None = None) -> ModelSource:
    """The name, version and file location of the model `uri` names. A `models:/` URI is pinned to the version
    it names now (an alias or stage is read once); `runs:/` is located through its run's artifact URI."""
    from modelyard.models.uris import parse_runs_uri

    if uri.startswith("models:/"):
        from modelyard.registry.uris import model_version_for, source_location

        version = model_version_for(uri, tracking_uri)
        source = source_location(version.source, tracking_uri)
        location = _run_location(source, tracking_uri) if source.startswith("runs:/") else source
        return ModelSource(
            version.name, str(version.version), f"models:/{version.name}/{version.version}", location
        )
    if uri.startswith("runs:/"):
        _, path = parse_runs_uri(uri)
        name = PurePosixPath(path).name if path else "model"
        return ModelSource(name, None, uri, _run_location(uri, tracking_uri))
    parsed = urlsplit(uri)
    has_scheme = len(parsed.scheme) > 1  # not a Windows drive letter
    parts = [p for p in PurePosixPath(parsed.path if has_scheme else uri).parts if p not in ("/", ".", "..")]
    remote = has_scheme and parsed.scheme != "file"
    return ModelSource(parts[-1] if parts else "model", None, uri, uri if remote else None)


def _run_location(runs_uri: str, tracking_uri: str | None) -> str:
    from modelyard.models.uris import parse_runs_uri
    from modelyard.tracking.client import Client
    from modelyard.tracking.fluent import get_tracking_uri

    run_id, path = parse_runs_uri(runs_uri)
    client = Client(tracking_uri or get_tracking_uri())
    try:
        root = client.get_run(run_id).info.artifact_uri.rstrip("/")
    finally:
        client.close()
    return f"{root}/{path}" if path else root


def service_name(source: ModelSource, name: str | None) -> str:
    """The InferenceService name (also the model's name in the URLs): `name`, else the model's name, which
    must then be a DNS-1035 label."""
    from modelyard.kube.validate import dns1035_label, dns1035_label_problem

    chosen = name or source.name
    if problem := dns1035_label_problem(chosen):
        raise InvalidArgument(
            f"Cannot name the InferenceService {chosen!r}: {problem}. Pass --name {dns1035_label(chosen)}."
        )
    return chosen


def serve_args(source: ModelSource, name: str, options: KServeOptions) -> list[str]:
    """The arguments of `modelyard` in the predictor container."""
    args = ["serve", MOUNT_PATH if source.storage_uri else source.uri, "--name", name]
    args += ["--host", "0.0.0.0", "--port", str(options.port)]
    args += [
        "--max-batch-size",
        str(options.max_batch_size),
        "--max-batch-delay-ms",
        _number(options.max_batch_delay_ms),
    ]
    if options.max_queue is not None:
        args += ["--max-queue", str(options.max_queue)]
    if options.max_request_mb is not None:
        args += ["--max-request-mb", _number(options.max_request_mb)]
    if options.timeout_ms is not None:
        args += ["--timeout-ms", _number(options.timeout_ms)]
    if options.trusted:
        args.append("--trusted")
    return args


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def container_env(source: ModelSource, options: KServeOptions) -> list[dict[str, str]]:
    env: dict[str, str] = {}
    if source.storage_uri:
        env[STORAGE_URI_ENV] = source.storage_uri
    if tracking := pod_tracking_uri(options):
        env["MODELYARD_TRACKING_URI"] = tracking
    env.update(options.env)
    return [{"name": key, "value": value} for key, value in env.items()]


class Note(str):
    """A note for the user (a plain string to print); `warning`: the manifest will not work as it is."""

    warning: bool

    def __new__(cls, text: str, warning: bool = False) -> Note:
        note = super().__new__(cls, text)
        note.warning = warning
        return note


def pod_tracking_uri(options: KServeOptions) -> str | None:
    """The MODELYARD_TRACKING_URI the container gets (an --env entry wins over the tracking URI)."""
    given = options.env.get("MODELYARD_TRACKING_URI")
    if given:
        return given
    return options.tracking_uri if is_remote_tracking_uri(options.tracking_uri) else None


def is_loopback(uri: str) -> bool:
    """Whether `uri` names this machine (localhost, *.localhost, 127.0.0.0/8, ::1): in a pod, the pod itself."""
    host = urlsplit(uri).hostname or ""
    return host.endswith(".localhost") or is_loopback_host(host)


def notes(source: ModelSource, options: KServeOptions, *, strict: bool = True) -> list[Note]:
    """What the user should know about where the pod finds the model. When the pod cannot find it at all,
    `strict` raises; otherwise (a dry run: a manifest to review) it is a warning saying what a cluster needs."""
    found: list[Note] = []
    tracking = pod_tracking_uri(options)
    if tracking and is_loopback(tracking):
        text = (
            f"The pod's MODELYARD_TRACKING_URI is {tracking}: in a pod that address is the pod itself, not this "
            "machine. Give a tracking server the cluster can reach (--tracking-uri, or --env "
            "MODELYARD_TRACKING_URI=http://modelyard.NAMESPACE.svc:5000)."
        )
        found.append(Note(text, warning=True))
    if source.storage_uri:
        return found
    if source.uri.startswith(("models:/", "runs:/")):
        if tracking is None:
            where = f" (its files are at {source.location})" if source.location else ""
            need = (
                "keep the artifacts in s3:// or gs:// (MODELYARD_ARTIFACT_URI) so that KServe downloads them, or "
                "pass --tracking-uri with a tracking server (http://...) or database the pod can reach"
            )
            if strict:
                raise InvalidArgument(f"A pod cannot load {source.uri}{where}: {need}.")
            text = (
                f"A pod cannot load {source.uri} from this store{where}: this manifest is for review. A cluster "
                f"needs the model where it can reach it: {need}. --apply refuses it until then."
            )
            found.append(Note(text, warning=True))
            return found
        found.append(Note(f"The container loads {source.uri} through the tracking store {tracking}."))
    elif source.location:
        found.append(
            Note(f"The container loads {source.uri} itself; KServe's storage initializer is not used.")
        )
    else:
        found.append(
            Note(f"The container loads {source.uri} from its own file system: the image must contain it.")
        )
    return found


def resources(options: KServeOptions) -> dict[str, dict[str, str]]:
    requests: dict[str, str] = {}
    if options.cpu:
        requests["cpu"] = options.cpu
    if options.memory:
        requests["memory"] = options.memory
    limits = dict(requests)
    if options.gpu:
        limits["nvidia.com/gpu"] = str(options.gpu)
    out: dict[str, dict[str, str]] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def metadata(source: ModelSource, name: str, options: KServeOptions) -> dict[str, Any]:
    from modelyard.kube.validate import label_value_problem

    labels = {"app.kubernetes.io/managed-by": "modelyard"}
    for key, value in (("model", source.name), ("model-version", source.version)):
        if value is not None and label_value_problem(value) is None:
            labels[LABEL_PREFIX + key] = value
    labels.update(options.labels)
    annotations = {LABEL_PREFIX + "model-name": source.name, LABEL_PREFIX + "model-uri": source.uri}
    if source.version is not None:
        annotations[LABEL_PREFIX + "model-version"] = source.version
    if source.location:
        annotations[LABEL_PREFIX + "model-location"] = source.location
    annotations.update(options.annotations)
    meta: dict[str, Any] = {"name": name}
    if options.namespace:
        meta["namespace"] = options.namespace
    meta["labels"] = labels
    meta["annotations"] = annotations
    return meta


def inference_service(source: ModelSource, options: KServeOptions) -> dict[str, Any]:
    """The InferenceService manifest (a plain dict, keys in a readable order); not yet validated."""
    if not options.image:
        raise InvalidArgument(
            "An InferenceService needs the image to run: pass --image (one with Modelyard in it)."
        )
    name = service_name(source, options.name)
    container: dict[str, Any] = {
        "name": CONTAINER_NAME,
        "image": options.image,
        "command": ["modelyard"],
        "args": serve_args(source, name, options),
        "ports": [{"containerPort": options.port, "protocol": "TCP"}],
    }
    if env := container_env(source, options):
        container["env"] = env
    if res := resources(options):
        container["resources"] = res
    container["readinessProbe"] = {"httpGet": {"path": "/v2/health/ready", "port": options.port}}
    predictor: dict[str, Any] = {}
    if options.min_replicas is not None:
        predictor["minReplicas"] = options.min_replicas
    if options.max_replicas is not None:
        predictor["maxReplicas"] = options.max_replicas
    if options.scale_metric is not None:
        predictor["scaleMetric"] = options.scale_metric
    if options.scale_target is not None:
        predictor["scaleTarget"] = options.scale_target
    if options.canary_percent is not None:
        predictor["canaryTrafficPercent"] = options.canary_percent
    if options.max_batch_size > 1:
        predictor["batcher"] = {
            "maxBatchSize": options.max_batch_size,
            "maxLatency": max(1, math.ceil(options.max_batch_delay_ms)),
        }
    if options.service_account:
        predictor["serviceAccountName"] = options.service_account
    predictor["containers"] = [container]
    return {
        "apiVersion": API_VERSION,
        "kind": KIND,
        "metadata": metadata(source, name, options),
        "spec": {"predictor": predictor},
    }


def build(uri: str, options: KServeOptions, *, strict: bool = True) -> tuple[dict[str, Any], list[Note]]:
    """(the validated manifest for the model `uri` names, notes for the user). The CRD schema is checked
    when its file is found (`modelyard.kube.validate.crds_dir`); KServe's webhook rules always are. `strict`
    (for a manifest to apply) refuses a model the pod cannot load; without it (a dry run) that is a warning."""
    from modelyard.kube.validate import crds_dir, validate

    source = resolve_model(uri, options.tracking_uri)
    manifest = inference_service(source, options)
    found_notes = notes(source, options, strict=strict)
    schema = crds_dir() is not None
    validate(manifest, schema=schema)
    if not schema:
        found_notes.append(
            Note(
                "The CRD schema was not checked (no CRD files found; set MODELYARD_CRDS_DIR); KServe's rules were."
            )
        )
    return manifest, found_notes
