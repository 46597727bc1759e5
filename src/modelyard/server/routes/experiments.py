"""/api/v1/experiments: create, read, search, rename, tag, delete, restore, purge."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from modelyard.errors import NotFound
from modelyard.schemas import Experiment, ViewType
from modelyard.schemas.api import CreateExperiment, ExperimentId, ExperimentList, RenameExperiment, TagValue
from modelyard.server.routes import ok, reply, store
from modelyard.store.base import TrackingStore

router = APIRouter(prefix="/experiments", tags=["experiments"])
Store = Annotated[TrackingStore, Depends(store)]


@router.post("", response_model=ExperimentId, status_code=201)
def create_experiment(body: CreateExperiment, s: Store) -> Response:
    return reply(
        ExperimentId(experiment_id=s.create_experiment(body.name, body.artifact_location, body.tags)), 201
    )


@router.get("", response_model=ExperimentList)
def search_experiments(
    s: Store,
    view_type: ViewType = ViewType.ACTIVE_ONLY,
    name_like: str | None = None,
    max_results: Annotated[int, Query(ge=1, le=50_000)] = 1000,
) -> Response:
    return reply(ExperimentList(experiments=s.search_experiments(view_type, name_like, max_results)))


@router.get("/by-name/{name:path}", response_model=Experiment)
def get_experiment_by_name(name: str, s: Store) -> Response:
    exp = s.get_experiment_by_name(name)
    if exp is None:
        raise NotFound(f"No experiment named {name!r}.")
    return reply(exp)


@router.get("/{experiment_id}", response_model=Experiment)
def get_experiment(experiment_id: str, s: Store) -> Response:
    return reply(s.get_experiment(experiment_id))


@router.patch("/{experiment_id}")
def rename_experiment(experiment_id: str, body: RenameExperiment, s: Store) -> dict[str, Any]:
    s.rename_experiment(experiment_id, body.name)
    return ok()


@router.put("/{experiment_id}/tags/{key:path}")
def set_experiment_tag(experiment_id: str, key: str, body: TagValue, s: Store) -> dict[str, Any]:
    s.set_experiment_tag(experiment_id, key, body.value)
    return ok()


@router.delete("/{experiment_id}/tags/{key:path}")
def delete_experiment_tag(experiment_id: str, key: str, s: Store) -> dict[str, Any]:
    """404 if the experiment has no such tag."""
    s.delete_experiment_tag(experiment_id, key)
    return ok()


@router.post("/{experiment_id}/delete")
def delete_experiment(experiment_id: str, s: Store) -> dict[str, Any]:
    s.delete_experiment(experiment_id)
    return ok()


@router.post("/{experiment_id}/restore")
def restore_experiment(experiment_id: str, s: Store) -> dict[str, Any]:
    s.restore_experiment(experiment_id)
    return ok()


@router.post("/{experiment_id}/purge")
def purge_experiment(experiment_id: str, s: Store) -> dict[str, Any]:
    s.purge_experiment(experiment_id)
    return ok()
