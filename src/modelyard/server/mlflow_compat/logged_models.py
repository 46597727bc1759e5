"""MLflow 3's logged models (`/logged-models/*`, `/runs/outputs`), kept as files in the artifact store.

MLflow 3's `mlflow.<flavor>.log_model` creates a logged model, uploads its files, then registers
`models:/<model_id>`. Modelyard has no logged-model table: each one is a folder under its experiment's
artifact root, its files under `artifacts/` and what MLflow knows about it in `meta.json`:

    <experiment artifact root>/models/<model_id>/meta.json
    <experiment artifact root>/models/<model_id>/artifacts/...     MLmodel, model.pkl, ...

The client reaches the files through the artifact proxy (`mlflow-artifacts:/<experiment_id>/models/<id>/
artifacts`), with the experiment's permissions. A model id carries its experiment's id
(`m-<32 hex>-<experiment_id>`, see convert.py), so getting one reads one file; a search reads the
`meta.json` of every logged model of the experiments it names.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any, Literal

from fastapi import APIRouter, Response
from pydantic import BaseModel, Field, ValidationError

from modelyard.artifacts import ArtifactStore, artifact_store_for
from modelyard.errors import InvalidArgument, NotFound
from modelyard.schemas import RunTag
from modelyard.schemas.accounts import Role
from modelyard.server.authz import require
from modelyard.server.mlflow_compat import filters
from modelyard.server.mlflow_compat.convert import (
    LOGGED_MODEL_ID,
    LOGGED_MODELS_FOLDER,
    OUTPUT_TAG,
    key_values,
    logged_model_artifact_uri,
    logged_model_experiment,
    mlflow_filter,
    pairs,
)
from modelyard.server.mlflow_compat.route import Fields, MlflowRoute, Params, Store, reply
from modelyard.store import validation as v
from modelyard.store.base import TrackingStore
from modelyard.store.registry_filter import Clause, parse_registry_filter

router = APIRouter(prefix="/logged-models", route_class=MlflowRoute)
outputs_router = APIRouter(prefix="/runs", route_class=MlflowRoute)

STATUSES = ("LOGGED_MODEL_PENDING", "LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED")  # proto numbers 1-3
VERSIONS_TAG = "mlflow.modelVersions"  # the registered versions made from a model, as MLflow records them
_META = "meta.json"
_NAME_FORBIDS = ("/", ":", ".", "%", '"', "'")  # MLflow's own rule for logged model names
_FILTER_FIELDS = ("name", "model_id", "model_type", "status", "source_run_id")
_ORDER_FIELDS = {
    "name": "name",
    "model_id": "model_id",
    "creation_timestamp": "creation_timestamp_ms",
    "creation_time": "creation_timestamp_ms",
    "last_updated_timestamp": "last_updated_timestamp_ms",
    "last_updated_time": "last_updated_timestamp_ms",
}
_SEARCH_LIMIT = 50_000


# the files ------------------------------------------------------------------------------------------------
def _root(s: TrackingStore, experiment_id: str, needed: Role) -> ArtifactStore:
    exp = s.get_experiment(experiment_id)
    require(s, exp.experiment_id, needed)
    return artifact_store_for(exp.artifact_location)


def _meta_path(model_id: str) -> str:
    return f"{LOGGED_MODELS_FOLDER}/{model_id}/{_META}"


class _ModelMetric(BaseModel):
    """A metric point logged with `model_id` (MLflow's `log_metric(..., model_id=...)`)."""

    key: str
    value: float | Literal["NaN", "Infinity", "-Infinity"]
    timestamp: int
    step: int
    run_id: str | None = None
    dataset_name: str | None = None
    dataset_digest: str | None = None


class _Meta(BaseModel):
    """What meta.json holds, checked on every read: the file sits in the artifact store, where anyone who
    may write the experiment's artifacts may also rewrite it."""

    model_id: str
    experiment_id: str
    name: str
    model_type: str | None = None
    source_run_id: str | None = None
    status: Literal["LOGGED_MODEL_PENDING", "LOGGED_MODEL_READY", "LOGGED_MODEL_UPLOAD_FAILED"]
    status_message: str | None = None
    creation_timestamp_ms: int
    last_updated_timestamp_ms: int = 0
    params: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)
    metrics: list[_ModelMetric] = Field(default_factory=list)
    deleted: bool = False


def _read(root: ArtifactStore, model_id: str) -> dict[str, Any]:
    try:
        with root.open_read(_meta_path(model_id)) as stream:
            meta = _Meta.model_validate_json(stream.read()).model_dump()
    except NotFound:
        raise NotFound(f"Logged model with ID '{model_id}' not found.") from None
    except ValidationError:
        meta = {}
    if meta.get("model_id") != model_id:
        raise NotFound(f"Logged model with ID '{model_id}' not found (its {_META} is unreadable).")
    return meta


def _write(root: ArtifactStore, meta: dict[str, Any]) -> None:
    meta["last_updated_timestamp_ms"] = _now()
    root.put_bytes(json.dumps(meta, sort_keys=True).encode(), _meta_path(meta["model_id"]))


def load(
    s: TrackingStore, model_id: str, needed: Role = Role.READ, allow_deleted: bool = False
) -> tuple[ArtifactStore, dict[str, Any]]:
    """The logged model's artifact root and its metadata, once the caller holds `needed` on its experiment."""
    root = _root(s, logged_model_experiment(model_id), needed)
    meta = _read(root, model_id)
    if meta.get("deleted") and not allow_deleted:
        raise NotFound(f"Logged model with ID '{model_id}' not found (it was deleted).")
    return root, meta


def record_registration(s: TrackingStore, model_id: str, name: str, version: int) -> None:
    """Note a registered version on its logged model, in MLflow's `mlflow.modelVersions` tag."""
    root, meta = load(s, model_id, Role.EDIT)
    try:
        versions = json.loads(meta["tags"].get(VERSIONS_TAG, "[]"))
        versions = versions if isinstance(versions, list) else []
    except ValueError:
        versions = []
    entry = {"name": name, "version": version}  # an integer, as MLflow's server writes it
    if not any(isinstance(e, dict) and e.get("name") == name and str(e.get("version")) == str(version)
               for e in versions):  # fmt: skip
        meta["tags"][VERSIONS_TAG] = json.dumps([*versions, entry])
        _write(root, meta)


def editable(s: TrackingStore, model_ids: list[str]) -> dict[str, tuple[ArtifactStore, dict[str, Any]]]:
    """The logged models `model_ids` name, each once the caller may edit it."""
    return {model_id: load(s, model_id, Role.EDIT) for model_id in dict.fromkeys(model_ids)}


def record_metrics(
    models: dict[str, tuple[ArtifactStore, dict[str, Any]]],
    run_id: str,
    points: list[tuple[str, dict[str, Any]]],
) -> None:
    """Keep metric points logged with a `model_id` on their logged models (`models`, from `editable`):
    `points` are (model id, point) pairs, the point as `model_json` shows it."""
    for model_id, point in points:
        models[model_id][1]["metrics"].append({**point, "run_id": run_id})
    for root, meta in models.values():
        _write(root, meta)


def _now() -> int:
    return int(time.time() * 1000)


def model_json(meta: dict[str, Any]) -> dict[str, Any]:
    info: dict[str, Any] = {
        "model_id": meta["model_id"],
        "experiment_id": meta["experiment_id"],
        "name": meta["name"],
        "creation_timestamp_ms": meta["creation_timestamp_ms"],
        "last_updated_timestamp_ms": meta["last_updated_timestamp_ms"],
        "artifact_uri": logged_model_artifact_uri(meta["model_id"]),
        "status": meta["status"],
        "tags": pairs(meta["tags"]),
    }
    for key in ("model_type", "source_run_id", "status_message"):
        if meta.get(key):
            info[key] = meta[key]
    metrics = [
        {**{k: v for k, v in m.items() if v is not None}, "model_id": meta["model_id"]}
        for m in meta["metrics"]
    ]
    return {"info": info, "data": {"params": pairs(meta["params"]), "metrics": metrics}}


# endpoints ------------------------------------------------------------------------------------------------
def _validated(items: list[tuple[str, str]], kind: str) -> dict[str, str]:
    out = {}
    for key, value in items:
        v.validate_key(kind, key)
        if kind == "Param":
            v.validate_param_value(key, value)
        else:
            v.validate_tag_value(key, value)
        out[key] = value
    return out


@router.post("")
def create_logged_model(p: Fields, s: Store) -> Response:
    experiment_id = p.experiment_id()
    name = p.string("name") or f"model-{uuid.uuid4().hex[:8]}"
    if any(c in name for c in _NAME_FORBIDS) or len(name) > 256:
        raise InvalidArgument(
            f"Invalid model name {name!r}: at most 256 characters, none of {' '.join(_NAME_FORBIDS)}."
        )
    source_run_id = p.string(
        "source_run_id"
    )  # stored as given, as MLflow does: it may name another server's run
    meta: dict[str, Any] = {
        "model_id": f"m-{uuid.uuid4().hex}-{experiment_id}",
        "experiment_id": experiment_id,
        "name": name,
        "model_type": p.string("model_type"),
        "source_run_id": source_run_id,
        "status": STATUSES[0],
        "creation_timestamp_ms": _now(),
        "params": _validated(key_values(p.messages("params")), "Param"),
        "tags": _validated(key_values(p.messages("tags")), "Tag"),
        "metrics": [],
    }
    _write(_root(s, experiment_id, Role.EDIT), meta)
    return reply({"model": model_json(meta)})


@router.post("/search")
def search_logged_models(p: Fields, s: Store) -> Response:
    experiment_ids = p.experiment_ids()
    if not experiment_ids:
        raise InvalidArgument("Missing value for required parameter 'experiment_ids'.")
    max_results = p.integer("max_results", 100)
    assert max_results is not None
    v.validate_max_results(max_results, _SEARCH_LIMIT)
    clauses = parse_registry_filter(mlflow_filter(p.string("filter"), {"model_name": "name"}), _FILTER_FIELDS)
    datasets = _datasets(p.messages("datasets"))
    order = _order(p.messages("order_by"))
    found = []
    for experiment_id in dict.fromkeys(experiment_ids):
        root = _root(s, experiment_id, Role.READ)
        for entry in root.list(LOGGED_MODELS_FOLDER):
            model_id = entry.path.rsplit("/", 1)[-1]
            match = LOGGED_MODEL_ID.fullmatch(model_id)
            if not (entry.is_dir and match and match[1] == experiment_id):
                continue  # not a logged model's folder
            try:
                meta = _read(root, model_id)
            except NotFound:
                continue  # created this instant, or a folder someone else put there
            if (
                not meta.get("deleted")
                and all(_matches(meta, c) for c in clauses)
                and (not datasets or _on_datasets(meta, datasets))
            ):
                found.append(meta)
    for field, ascending in reversed(order):  # stable sorts, the last key first
        found.sort(key=lambda meta: _sort_key(meta.get(field)), reverse=not ascending)
    start = filters.decode_offset(p.string("page_token"))
    body: dict[str, Any] = {"models": [model_json(m) for m in found[start : start + max_results]]}
    if start + max_results < len(found):
        body["next_page_token"] = filters.encode_offset(start + max_results)
    return reply(body)


def _datasets(items: list[Params]) -> list[tuple[str, str | None]]:
    found = []
    for item in items:
        name = item.string("dataset_name")
        if not name:
            raise InvalidArgument("`dataset_name` in the `datasets` clause must be specified.")
        found.append((name, item.string("dataset_digest")))
    return found


def _on_datasets(meta: dict[str, Any], datasets: list[tuple[str, str | None]]) -> bool:
    """MLflow's rule: the model has a metric on one of the datasets (by name, and digest when given)."""
    return any(
        m.get("dataset_name") == name and (digest is None or m.get("dataset_digest") == digest)
        for m in meta["metrics"]
        for name, digest in datasets
    )


def _sort_key(value: Any) -> tuple[int, int, str]:
    return (0, value, "") if isinstance(value, int) else (1, 0, str(value or ""))


def _order(items: list[Params]) -> list[tuple[str, bool]]:
    """MLflow's default is the newest first."""
    order = []
    for item in items:
        field = item.required("field_name").removeprefix("attributes.")
        if field not in _ORDER_FIELDS:
            raise InvalidArgument(
                f"Cannot order logged models by {field!r}: use one of {', '.join(sorted(_ORDER_FIELDS))}."
            )
        ascending = item.raw("ascending")
        order.append((_ORDER_FIELDS[field], ascending is not False and ascending != "false"))
    return order or [("creation_timestamp_ms", False)]


def _matches(meta: dict[str, Any], clause: Clause) -> bool:
    if clause.tag is not None:
        if clause.tag not in meta["tags"]:
            return False
        actual = meta["tags"][clause.tag]
    elif clause.field == "status":
        actual = str(meta["status"]).removeprefix("LOGGED_MODEL_")
    else:
        actual = meta.get(clause.field) or ""
    wanted = clause.value
    if clause.field == "status":
        wanted = (
            [w.upper().removeprefix("LOGGED_MODEL_") for w in wanted]
            if isinstance(wanted, list)
            else wanted.upper().removeprefix("LOGGED_MODEL_")
        )
    if clause.op in ("IN", "NOT IN"):
        return (actual in wanted) == (clause.op == "IN")
    if clause.op in ("LIKE", "ILIKE"):
        pattern = re.escape(str(wanted)).replace("%", ".*").replace("_", ".")
        return (
            re.fullmatch(pattern, actual, re.DOTALL | (re.IGNORECASE if clause.op == "ILIKE" else 0))
            is not None
        )
    return (actual == wanted) == (clause.op == "=")


@router.get("/{model_id}")
def get_logged_model(model_id: str, p: Fields, s: Store) -> Response:
    allow_deleted = str(p.string("allow_deleted", "false")).lower() == "true"
    return reply({"model": model_json(load(s, model_id, allow_deleted=allow_deleted)[1])})


@router.patch("/{model_id}")
def finalize_logged_model(model_id: str, p: Fields, s: Store) -> Response:
    status = p.enum("status", STATUSES, "")
    if not status:
        raise InvalidArgument(
            f"Missing value for required parameter 'status': use one of {', '.join(STATUSES)}."
        )
    root, meta = load(s, model_id, Role.EDIT)
    meta["status"] = status
    _write(root, meta)
    return reply({"model": model_json(meta)})


@router.delete("/{model_id}")
def delete_logged_model(model_id: str, s: Store) -> Response:
    """A soft delete, as in MLflow: the files stay, the model leaves searches and gets."""
    root, meta = load(s, model_id, Role.EDIT)
    meta["deleted"] = True
    _write(root, meta)
    return reply({})


@router.patch("/{model_id}/tags")
def set_logged_model_tags(model_id: str, p: Fields, s: Store) -> Response:
    tags = _validated(key_values(p.messages("tags")), "Tag")
    root, meta = load(s, model_id, Role.EDIT)
    meta["tags"].update(tags)
    _write(root, meta)
    return reply({})


@router.delete("/{model_id}/tags/{key:path}")
def delete_logged_model_tag(model_id: str, key: str, s: Store) -> Response:
    root, meta = load(s, model_id, Role.EDIT)
    if meta["tags"].pop(key, None) is None:
        raise NotFound(f"Logged model {model_id!r} has no tag {key!r}.")
    _write(root, meta)
    return reply({})


@router.post("/{model_id}/params")
def log_logged_model_params(model_id: str, p: Fields, s: Store) -> Response:
    params = _validated(key_values(p.messages("params")), "Param")
    root, meta = load(s, model_id, Role.EDIT)
    meta["params"].update(params)
    _write(root, meta)
    return reply({})


@outputs_router.post("/outputs")
def log_outputs(p: Fields, s: Store) -> Response:
    """The client links the models it logs to their run: one run tag per model, `OUTPUT_TAG<model id>`
    holding the step, which `runs/get` shows as the run's `outputs.model_outputs` (convert.py)."""
    run_id = p.run_id()
    tags = []
    for item in p.messages("models"):
        model_id = item.required("model_id")
        load(s, model_id)  # it exists, and the caller may read it
        tags.append(RunTag(key=f"{OUTPUT_TAG}{model_id}", value=str(item.integer("step", 0) or 0)))
    if tags:
        s.log_batch(run_id, tags=tags)
    else:
        s.get_run(run_id)
    return reply({})


__all__ = [
    "editable",
    "load",
    "model_json",
    "outputs_router",
    "record_metrics",
    "record_registration",
    "router",
]
