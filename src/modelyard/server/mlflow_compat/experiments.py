"""MLflow's /experiments/* endpoints over the tracking store."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response

from modelyard import config
from modelyard.errors import InvalidArgument, NotFound
from modelyard.schemas import ViewType
from modelyard.server.mlflow_compat import filters
from modelyard.server.mlflow_compat.convert import ARTIFACT_SCHEME, VIEW_TYPES, experiment_json, key_values
from modelyard.server.mlflow_compat.route import Fields, MlflowRoute, Store, reply

router = APIRouter(prefix="/experiments", route_class=MlflowRoute)

_SEARCH_LIMIT = 50_000  # MLflow's own cap on one page, and the most experiments the store lists at once


def _default_root(request: Request) -> str:
    """The root under which the store puts an experiment's artifacts when no location is given."""
    settings = getattr(request.app.state, "settings", None)
    return str(getattr(settings, "artifacts_uri", None) or config.artifact_uri())


DefaultRoot = Annotated[str, Depends(_default_root)]


@router.post("/create")
def create_experiment(p: Fields, s: Store) -> Response:
    location = p.string("artifact_location")
    if location and location.startswith(ARTIFACT_SCHEME):
        location = None  # the proxy's own URIs: the store's default location is exactly what they mean
    tags = dict(key_values(p.messages("tags"))) or None
    return reply({"experiment_id": s.create_experiment(p.required("name"), location, tags)})


@router.get("/get")
def get_experiment(p: Fields, s: Store, root: DefaultRoot) -> Response:
    return reply({"experiment": experiment_json(s.get_experiment(p.experiment_id()), root)})


@router.get("/get-by-name")
def get_experiment_by_name(p: Fields, s: Store, root: DefaultRoot) -> Response:
    name = p.required("experiment_name")
    exp = s.get_experiment_by_name(name)
    if exp is None:  # 404 + RESOURCE_DOES_NOT_EXIST: mlflow.get_experiment_by_name returns None on it
        raise NotFound(f"Could not find experiment with name '{name}'.")
    return reply({"experiment": experiment_json(exp, root)})


@router.post("/search")
@router.get("/search")
def search_experiments(p: Fields, s: Store, root: DefaultRoot) -> Response:
    max_results = p.integer("max_results", 1000)
    assert max_results is not None
    if not 1 <= max_results <= _SEARCH_LIMIT:
        raise InvalidArgument(f"max_results must be between 1 and {_SEARCH_LIMIT}, got {max_results}.")
    view = ViewType(p.enum("view_type", VIEW_TYPES, "ACTIVE_ONLY"))
    found = filters.search_experiments(
        s.search_experiments(view, max_results=_SEARCH_LIMIT), p.string("filter"), p.strings("order_by")
    )
    start = filters.decode_offset(p.string("page_token"))
    page = found[start : start + max_results]
    body: dict[str, object] = {"experiments": [experiment_json(e, root) for e in page]}
    if start + max_results < len(found):
        body["next_page_token"] = filters.encode_offset(start + max_results)
    return reply(body)


@router.post("/update")
def update_experiment(p: Fields, s: Store) -> Response:
    experiment_id = p.experiment_id()
    new_name = p.string("new_name")
    if new_name is not None:
        s.rename_experiment(experiment_id, new_name)
    else:
        s.get_experiment(experiment_id)  # nothing to change, but an unknown id is still an error
    return reply({})


@router.post("/delete")
def delete_experiment(p: Fields, s: Store) -> Response:
    s.delete_experiment(p.experiment_id())
    return reply({})


@router.post("/restore")
def restore_experiment(p: Fields, s: Store) -> Response:
    s.restore_experiment(p.experiment_id())
    return reply({})


@router.post("/set-experiment-tag")
def set_experiment_tag(p: Fields, s: Store) -> Response:
    s.set_experiment_tag(p.experiment_id(), p.required("key"), p.string("value", "") or "")
    return reply({})


@router.post("/delete-experiment-tag")
def delete_experiment_tag(p: Fields, s: Store) -> Response:
    s.delete_experiment_tag(p.experiment_id(), p.required("key"))
    return reply({})
