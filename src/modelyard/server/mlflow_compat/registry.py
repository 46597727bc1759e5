"""MLflow's model registry endpoints (`/registered-models/*`, `/model-versions/*`) over Modelyard's registry.

A version's `source` is kept as the client sent it (`runs:/<run_id>/model`, `mlflow-artifacts:/...`,
`models:/<logged model id>`); `get-download-uri` turns it into a URI the client downloads through this
server. Registering from another version (`models:/<name>/<version>`, `@alias`, `/<Stage>`) copies that
version's source and run. Local paths (`file:`, `/...`) are refused, as MLflow's server does: they name
the client's disk, not the server's.

Modelyard's registry rules stay in force: a promotion its gates refuse fails with INVALID_STATE and a
message naming the rule; deleting a version an alias or the Staging/Production stage points at, or a
model with such versions, is refused with INVALID_STATE (MLflow would delete them).
"""

from __future__ import annotations

import contextlib
import operator
import re
import urllib.parse
from collections.abc import Callable, Iterator
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Response

from modelyard.errors import InvalidArgument, ModelyardError
from modelyard.schemas.registry import (
    ModelVersion,
    ModelVersionsPage,
    RegisteredModel,
    RegisteredModelsPage,
    Stage,
)
from modelyard.server.mlflow_compat import filters, logged_models
from modelyard.server.mlflow_compat.convert import (
    ARTIFACT_SCHEME,
    key_values,
    logged_model_artifact_uri,
    logged_model_of,
    mlflow_filter,
    model_version_json,
    registered_model_json,
)
from modelyard.server.mlflow_compat.route import (
    Fields,
    MlflowRoute,
    NotImplementedInModelyard,
    Params,
    Store,
    reply,
)
from modelyard.server.routes import model_registry
from modelyard.store.base import TrackingStore
from modelyard.store.model_registry import ModelRegistryStore

router = APIRouter(route_class=MlflowRoute)
Registry = Annotated[ModelRegistryStore, Depends(model_registry)]

_STORE_PAGE = 10_000  # the most the registry store returns at once
_MODELS_LIMIT = 1_000  # MLflow's cap on one page of registered models
_VERSIONS_LIMIT = 200_000  # ... and of model versions (pages past the store's are cut to it)
_COLLECT_LIMIT = 50_000  # the most matches sorted in memory when a search has an order_by
_MODEL_ORDER = {
    "name": "name",
    "creation_timestamp": "creation_time",
    "last_updated_timestamp": "last_updated_time",
}
_VERSION_ORDER = {**_MODEL_ORDER, "version_number": "version"}
_VERSION_FILTER_NAMES = {"version_number": "version", "source_path": "source", "current_stage": "stage"}
_ACTIVE_STAGES = (Stage.STAGING, Stage.PRODUCTION)
PROMPT_TAG = "mlflow.prompt.is_prompt"
_PROMPT_EXCLUSION = re.compile(r"(?i)(?:^|\s+AND)\s*tags?\.`?mlflow\.prompt\.is_prompt`?\s*!=\s*'true'\s*$")

T = TypeVar("T", RegisteredModel, ModelVersion)


def _flag(p: Params, name: str) -> bool:
    value = p.raw(name)
    if value is None or value == "":
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise InvalidArgument(f"Parameter {name!r} must be a boolean, got {value!r}.")


def _version(p: Params) -> str:
    """A version number: MLflow sends it as a string, other clients as a number."""
    value = p.string("version", required=True, numbers=True)
    assert value is not None
    return value


def _tags(p: Params) -> dict[str, str] | None:
    tags = dict(key_values(p.messages("tags")))
    _no_prompt(tags.get(PROMPT_TAG))
    return tags or None


def _no_prompt(value: str | None) -> None:
    if value is not None and value.lower() == "true":
        raise NotImplementedInModelyard(
            f"Prompts (registered models tagged {PROMPT_TAG}=true) are not supported by Modelyard's registry."
        )


def _models_filter(text: str | None) -> str | None:
    """MLflow's client adds `tag.`mlflow.prompt.is_prompt` != 'true'` to every model search, to leave
    prompts out; Modelyard's registry holds no prompts, and its `!=` on a tag needs the tag, so it goes."""
    text = _PROMPT_EXCLUSION.sub("", mlflow_filter(text, {}) or "").strip()
    return re.sub(r"(?i)\s+AND\s*$", "", text) or None


# registered models ----------------------------------------------------------------------------------------
@router.post("/registered-models/create")
def create_registered_model(p: Fields, r: Registry) -> Response:
    model = r.create_registered_model(p.required("name"), p.string("description", "") or "", _tags(p))
    return reply({"registered_model": registered_model_json(model)})


@router.get("/registered-models/get")
def get_registered_model(p: Fields, r: Registry) -> Response:
    return reply({"registered_model": registered_model_json(r.get_registered_model(p.required("name")))})


@router.post("/registered-models/rename")
def rename_registered_model(p: Fields, r: Registry) -> Response:
    model = r.rename_registered_model(p.required("name"), p.required("new_name"))
    return reply({"registered_model": registered_model_json(model)})


@router.patch("/registered-models/update")
def update_registered_model(p: Fields, r: Registry) -> Response:
    model = r.update_registered_model(p.required("name"), p.string("description", "") or "")
    return reply({"registered_model": registered_model_json(model)})


@router.delete("/registered-models/delete")
def delete_registered_model(p: Fields, r: Registry) -> Response:
    r.delete_registered_model(p.required("name"))
    return reply({})


@router.get("/registered-models/search")
def search_registered_models(p: Fields, r: Registry) -> Response:
    size = _max_results(p, 100, _MODELS_LIMIT)
    text = _models_filter(p.string("filter"))
    with _filter_named(p, text):
        found, token = _search(
            lambda page_size, token: _models(r.search_registered_models(text, page_size, token)),
            p, size, _MODEL_ORDER,
        )  # fmt: skip
    body: dict[str, Any] = {"registered_models": [registered_model_json(m) for m in found]}
    if token:
        body["next_page_token"] = token
    return reply(body)


@router.post("/registered-models/set-tag")
def set_registered_model_tag(p: Fields, r: Registry) -> Response:
    key, value = p.required("key"), p.string("value", "") or ""
    _no_prompt(value if key == PROMPT_TAG else None)
    r.set_registered_model_tag(p.required("name"), key, value)
    return reply({})


@router.delete("/registered-models/delete-tag")
def delete_registered_model_tag(p: Fields, r: Registry) -> Response:
    r.delete_registered_model_tag(p.required("name"), p.required("key"))
    return reply({})


@router.post("/registered-models/get-latest-versions")
@router.get("/registered-models/get-latest-versions")
def get_latest_versions(p: Fields, r: Registry) -> Response:
    found = r.get_latest_versions(p.required("name"), p.strings("stages") or None)
    return reply({"model_versions": [model_version_json(mv) for mv in found]})


@router.post("/registered-models/alias")
def set_registered_model_alias(p: Fields, r: Registry) -> Response:
    r.set_alias(p.required("name"), p.required("alias"), _version(p))
    return reply({})


@router.delete("/registered-models/alias")
def delete_registered_model_alias(p: Fields, r: Registry) -> Response:
    r.delete_alias(p.required("name"), p.required("alias"))
    return reply({})


@router.get("/registered-models/alias")
def get_model_version_by_alias(p: Fields, r: Registry) -> Response:
    mv = r.get_version_by_alias(p.required("name"), p.required("alias"))
    return reply({"model_version": model_version_json(mv)})


# model versions -------------------------------------------------------------------------------------------
@router.post("/model-versions/create")
def create_model_version(p: Fields, r: Registry, s: Store) -> Response:
    name = p.required("name")
    source, run_id, model_id = _resolve_source(p, r, s)
    mv = r.create_model_version(name, source, run_id, p.string("description", "") or "", _tags(p))
    if model_id is not None:
        try:  # MLflow lists a logged model's registrations in a tag; a bookkeeping miss fails nothing
            logged_models.record_registration(s, model_id, mv.name, mv.version)
        except ModelyardError:
            pass
    return reply({"model_version": model_version_json(mv)})


@router.get("/model-versions/get")
def get_model_version(p: Fields, r: Registry) -> Response:
    mv = r.get_model_version(p.required("name"), _version(p))
    return reply({"model_version": model_version_json(mv)})


@router.patch("/model-versions/update")
def update_model_version(p: Fields, r: Registry) -> Response:
    mv = r.update_model_version(p.required("name"), _version(p), p.string("description", "") or "")
    return reply({"model_version": model_version_json(mv)})


@router.delete("/model-versions/delete")
def delete_model_version(p: Fields, r: Registry) -> Response:
    r.delete_model_version(p.required("name"), _version(p))
    return reply({})


@router.get("/model-versions/search")
def search_model_versions(p: Fields, r: Registry) -> Response:
    size = _max_results(p, _STORE_PAGE, _VERSIONS_LIMIT)
    text = mlflow_filter(p.string("filter"), _VERSION_FILTER_NAMES)
    with _filter_named(p, text):
        found, token = _search(
            lambda page_size, token: _versions(r.search_model_versions(text, page_size, token)),
            p, size, _VERSION_ORDER,
        )  # fmt: skip
    body: dict[str, Any] = {"model_versions": [model_version_json(mv) for mv in found]}
    if token:
        body["next_page_token"] = token
    return reply(body)


@router.post("/model-versions/set-tag")
def set_model_version_tag(p: Fields, r: Registry) -> Response:
    r.set_model_version_tag(p.required("name"), _version(p), p.required("key"), p.string("value", "") or "")
    return reply({})


@router.delete("/model-versions/delete-tag")
def delete_model_version_tag(p: Fields, r: Registry) -> Response:
    r.delete_model_version_tag(p.required("name"), _version(p), p.required("key"))
    return reply({})


@router.post("/model-versions/transition-stage")
def transition_model_version_stage(p: Fields, r: Registry) -> Response:
    stage = Stage.parse(p.required("stage"))
    archive = _flag(p, "archive_existing_versions")
    if archive and stage not in _ACTIVE_STAGES:
        raise InvalidArgument(
            f"Model version transition cannot archive existing model versions because {stage.value!r} is not "
            "an active stage: archive_existing_versions works with Staging and Production only."
        )
    mv = r.transition_stage(p.required("name"), _version(p), stage, archive)
    return reply({"model_version": model_version_json(mv)})


@router.get("/model-versions/get-download-uri")
def get_model_version_download_uri(p: Fields, r: Registry, s: Store) -> Response:
    mv = r.get_model_version(p.required("name"), _version(p))
    return reply({"artifact_uri": download_uri(s, mv)})


# sources --------------------------------------------------------------------------------------------------
def _resolve_source(p: Params, r: ModelRegistryStore, s: TrackingStore) -> tuple[str, str | None, str | None]:
    """The source to store, the version's run and the logged model it comes from, checked as MLflow's
    server checks them."""
    source, run_id, model_id = p.required("source"), p.string("run_id"), p.string("model_id")
    parsed = urllib.parse.urlsplit(source)
    if ".." in urllib.parse.unquote(urllib.parse.unquote(parsed.path)).replace("\\", "/").split("/"):
        raise InvalidArgument(f"Invalid model version source {source!r}: it holds a '..' path segment.")
    if parsed.scheme in ("", "file") or len(parsed.scheme) == 1:  # a local path (or a Windows drive)
        raise InvalidArgument(
            f"Invalid model version source {source!r}: a local path names the client's disk, which this "
            "server cannot read. Log the model to a run and register runs:/<run_id>/<path> or models:/<model_id>."
        )
    if parsed.scheme == "models" and logged_model_of(source) is None:
        if parsed.netloc:
            raise InvalidArgument(f"Invalid model version source {source!r}: use this server's registry.")
        other = _referenced_version(r, parsed.path.lstrip("/"), source)
        return other.source, run_id or other.run_id, logged_model_of(other.source)
    found = logged_model_of(source)
    if model_id is not None and model_id != found:
        raise InvalidArgument(
            f"Invalid model version source {source!r}: with model_id {model_id!r}, the source must be "
            f"models:/{model_id} or a path under that model's artifacts."
        )
    if found is not None:
        meta = logged_models.load(s, found)[1]
        run_id = run_id or meta.get("source_run_id")
    return source, run_id, found


def _referenced_version(r: ModelRegistryStore, path: str, source: str) -> ModelVersion:
    """The version a `models:/<name>/<version|stage|latest>` or `models:/<name>@<alias>` URI names."""
    if "/" not in path and "@" in path:
        name, alias = path.rsplit("@", 1)
        return r.get_version_by_alias(name, alias)
    name, _, suffix = path.rpartition("/")
    if not name or not suffix:
        raise InvalidArgument(
            f"Invalid model version source {source!r}: use models:/<name>/<version>, models:/<name>@<alias> "
            "or models:/<logged model id>."
        )
    if suffix.isdigit():
        return r.get_model_version(name, suffix)
    stages = None if suffix.lower() == "latest" else [suffix]
    latest = r.get_latest_versions(name, stages)
    if not latest:
        raise InvalidArgument(f"Invalid model version source {source!r}: model {name!r} has no such version.")
    return max(latest, key=lambda mv: mv.version)


def download_uri(s: TrackingStore, mv: ModelVersion) -> str:
    """Where the MLflow client downloads a version from: logged models and files of a run through the
    artifact proxy, `runs:/` and other URIs as they are."""
    model_id = logged_model_of(mv.source)
    if model_id is not None:
        if mv.source.startswith(ARTIFACT_SCHEME):
            return mv.source
        return logged_model_artifact_uri(model_id)
    if mv.run_id and not mv.source.startswith(("runs:/", "models:/", ARTIFACT_SCHEME)):
        # registered by Modelyard with the files' real location (a folder, file:///..., s3://...)
        try:
            run = s.get_run(mv.run_id)
        except ModelyardError:
            return mv.source
        root = run.info.artifact_uri.rstrip("/")
        if mv.source == root or mv.source.startswith(root + "/"):
            rest = mv.source[len(root) :]
            return f"{ARTIFACT_SCHEME}/{run.info.experiment_id}/{run.info.run_id}/artifacts{rest}"
    return mv.source


# searches -------------------------------------------------------------------------------------------------
@contextlib.contextmanager
def _filter_named(p: Params, text: str | None) -> Iterator[None]:
    """A filter error quotes the filter as the client wrote it when we had to reword it."""
    try:
        yield
    except InvalidArgument as exc:
        original = p.string("filter")
        if original and text != original:
            raise InvalidArgument(f"{exc.message} (in the filter {original!r}, read as {text!r})") from None
        raise


def _max_results(p: Params, default: int, limit: int) -> int:
    size = p.integer("max_results", default)
    assert size is not None
    if not 1 <= size <= limit:
        raise InvalidArgument(f"Invalid value {size} for parameter 'max_results': use 1 to {limit}.")
    return size


def _models(page: RegisteredModelsPage) -> tuple[list[RegisteredModel], str | None]:
    return page.registered_models, page.next_page_token


def _versions(page: ModelVersionsPage) -> tuple[list[ModelVersion], str | None]:
    return page.model_versions, page.next_page_token


def _search(
    fetch: Callable[[int, str | None], tuple[list[T], str | None]],
    p: Params,
    size: int,
    fields: dict[str, str],
) -> tuple[list[T], str | None]:
    """One page: the store's own pages and order without `order_by`; with it, every match (up to
    _COLLECT_LIMIT) sorted here and paged by offset."""
    order = _order_by(p.strings("order_by"), fields)
    token = p.string("page_token")
    if not order:
        return fetch(min(size, _STORE_PAGE), token)
    found: list[T] = []
    cursor: str | None = None
    while True:
        page, cursor = fetch(_STORE_PAGE, cursor)
        found += page
        if not cursor or len(found) >= _COLLECT_LIMIT:
            break
    for attribute, ascending in reversed(order):  # stable sorts, the last key first
        found.sort(key=operator.attrgetter(attribute), reverse=not ascending)
    start = filters.decode_offset(token)
    more = start + size < len(found)
    return found[start : start + size], filters.encode_offset(start + size) if more else None


def _order_by(items: list[str], fields: dict[str, str]) -> list[tuple[str, bool]]:
    order = []
    for item in items:
        words = item.split()
        field = words[0].removeprefix("attributes.") if words else ""
        direction = words[1].upper() if len(words) == 2 else "ASC"
        if field not in fields or len(words) > 2 or direction not in ("ASC", "DESC"):
            raise InvalidArgument(
                f"Invalid order_by clause {item!r}: use one of {', '.join(fields)}, then ASC or DESC."
            )
        order.append((fields[field], direction == "ASC"))
    return order


__all__ = ["download_uri", "router"]
