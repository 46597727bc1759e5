"""/api/v1/models and /api/v1/model-versions: the model registry (versions, stages, aliases, gates, events)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from modelyard.errors import InvalidArgument
from modelyard.schemas.api import TagValue
from modelyard.schemas.registry import (
    CheckGates,
    CreateModelVersion,
    CreateRegisteredModel,
    EventList,
    GateCheckList,
    GatePolicy,
    ModelVersion,
    ModelVersionList,
    ModelVersionsPage,
    RegisteredModel,
    RegisteredModelsPage,
    SetAlias,
    StageHistory,
    TransitionStage,
    UpdateModelVersion,
    UpdateRegisteredModel,
)
from modelyard.server.routes import model_registry, ok, reply
from modelyard.store.model_registry import ModelRegistryStore

router = APIRouter(tags=["models"])
Registry = Annotated[ModelRegistryStore, Depends(model_registry)]
PageSize = Annotated[int, Query(ge=1, le=10_000)]


# registered models -----------------------------------------------------------------------------------------
@router.post("/models", response_model=RegisteredModel, status_code=201)
def create_registered_model(body: CreateRegisteredModel, r: Registry) -> Response:
    return reply(r.create_registered_model(body.name, body.description, body.tags), 201)


@router.get("/models", response_model=RegisteredModelsPage)
def search_registered_models(
    r: Registry, filter: str | None = None, max_results: PageSize = 100, page_token: str | None = None
) -> Response:
    """Filter like `name LIKE 'churn%' AND tags.team = 'growth'`; ordered by name."""
    return reply(r.search_registered_models(filter, max_results, page_token))


@router.get("/models/{name}", response_model=RegisteredModel)
def get_registered_model(name: str, r: Registry) -> Response:
    return reply(r.get_registered_model(name))


@router.patch("/models/{name}", response_model=RegisteredModel)
def update_registered_model(name: str, body: UpdateRegisteredModel, r: Registry) -> Response:
    if body.description is None and body.new_name is None:
        raise InvalidArgument("Nothing to change: give a description, a new_name, or both.")
    model = r.get_registered_model(name)
    if body.description is not None:
        model = r.update_registered_model(name, body.description)
    if body.new_name is not None:
        model = r.rename_registered_model(name, body.new_name)
    return reply(model)


@router.delete("/models/{name}")
def delete_registered_model(name: str, r: Registry) -> dict[str, Any]:
    r.delete_registered_model(name)
    return ok()


@router.put("/models/{name}/tags/{key:path}")
def set_registered_model_tag(name: str, key: str, body: TagValue, r: Registry) -> dict[str, Any]:
    r.set_registered_model_tag(name, key, body.value)
    return ok()


@router.delete("/models/{name}/tags/{key:path}")
def delete_registered_model_tag(name: str, key: str, r: Registry) -> dict[str, Any]:
    r.delete_registered_model_tag(name, key)
    return ok()


@router.get("/models/{name}/latest", response_model=ModelVersionList)
def latest_versions(name: str, r: Registry, stages: Annotated[list[str] | None, Query()] = None) -> Response:
    """The newest version in each stage (or in each of `stages`)."""
    return reply(ModelVersionList(model_versions=r.get_latest_versions(name, stages)))


# versions --------------------------------------------------------------------------------------------------
@router.post("/models/{name}/versions", response_model=ModelVersion, status_code=201)
def create_model_version(name: str, body: CreateModelVersion, r: Registry) -> Response:
    return reply(
        r.create_model_version(name, body.source, body.run_id, body.description, body.tags, body.signature),
        201,
    )


@router.get("/model-versions", response_model=ModelVersionsPage)
def search_model_versions(
    r: Registry, filter: str | None = None, max_results: PageSize = 100, page_token: str | None = None
) -> Response:
    """Filter like `name = 'churn' AND stage = 'Production'` (name, run_id, source, stage, version, tags.<key>)."""
    return reply(r.search_model_versions(filter, max_results, page_token))


@router.get("/models/{name}/versions/{version}", response_model=ModelVersion)
def get_model_version(name: str, version: str, r: Registry) -> Response:
    return reply(r.get_model_version(name, version))


@router.patch("/models/{name}/versions/{version}", response_model=ModelVersion)
def update_model_version(name: str, version: str, body: UpdateModelVersion, r: Registry) -> Response:
    return reply(r.update_model_version(name, version, body.description))


@router.delete("/models/{name}/versions/{version}")
def delete_model_version(name: str, version: str, r: Registry, force: bool = False) -> dict[str, Any]:
    """Refused while an alias or the Staging/Production stage points at it, unless `force`."""
    r.delete_model_version(name, version, force)
    return ok()


@router.put("/models/{name}/versions/{version}/tags/{key:path}")
def set_model_version_tag(name: str, version: str, key: str, body: TagValue, r: Registry) -> dict[str, Any]:
    r.set_model_version_tag(name, version, key, body.value)
    return ok()


@router.delete("/models/{name}/versions/{version}/tags/{key:path}")
def delete_model_version_tag(name: str, version: str, key: str, r: Registry) -> dict[str, Any]:
    r.delete_model_version_tag(name, version, key)
    return ok()


# stages, aliases and gates ---------------------------------------------------------------------------------
@router.post("/models/{name}/versions/{version}/stage", response_model=ModelVersion)
def transition_stage(name: str, version: str, body: TransitionStage, r: Registry) -> Response:
    """Move a version to a stage once the model's gates pass (409 GATE_FAILED names the rule that did not)."""
    return reply(r.transition_stage(name, version, body.stage, body.archive_existing, body.comment))


@router.get("/models/{name}/stage-history", response_model=StageHistory)
def stage_history(name: str, r: Registry, version: str | None = None) -> Response:
    return reply(StageHistory(transitions=r.stage_history(name, version)))


@router.put("/models/{name}/aliases/{alias}", response_model=ModelVersion)
def set_alias(name: str, alias: str, body: SetAlias, r: Registry) -> Response:
    return reply(r.set_alias(name, alias, body.version))


@router.get("/models/{name}/aliases/{alias}", response_model=ModelVersion)
def get_version_by_alias(name: str, alias: str, r: Registry) -> Response:
    return reply(r.get_version_by_alias(name, alias))


@router.delete("/models/{name}/aliases/{alias}")
def delete_alias(name: str, alias: str, r: Registry) -> dict[str, Any]:
    r.delete_alias(name, alias)
    return ok()


@router.put("/models/{name}/gates", response_model=GatePolicy)
def set_gate_policy(name: str, body: GatePolicy, r: Registry) -> Response:
    return reply(r.set_gate_policy(name, body))


@router.get("/models/{name}/gates", response_model=GatePolicy)
def get_gate_policy(name: str, r: Registry) -> Response:
    return reply(r.get_gate_policy(name))


@router.post("/models/{name}/versions/{version}/check-gates", response_model=GateCheckList)
def check_gates(name: str, version: str, body: CheckGates, r: Registry) -> Response:
    """A dry run: how each rule fares if the version moved to `target` (a stage or `@alias`)."""
    return reply(GateCheckList(checks=r.check_gates(name, version, body.target)))


@router.get("/registry-events", response_model=EventList)
def list_events(
    r: Registry,
    name: str | None = None,
    after_id: Annotated[int, Query(ge=0)] = 0,
    max_results: PageSize = 100,
) -> Response:
    """Registry changes, oldest first, after `after_id`."""
    return reply(EventList(events=r.list_events(name, after_id, max_results)))
