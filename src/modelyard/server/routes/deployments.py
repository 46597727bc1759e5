"""/api/v1/deployments: records of model deployments (endpoint, traffic split, state) and their rollout
history, written by model servers and rollouts, read by people, the CLI and lineage.

Rights with auth on: creating or changing a deployment, adding an event or a heartbeat to it, needs EDIT on
every registered model in its traffic split (the split before and after a change); reading one needs READ
on them, and a listing shows only the deployments the caller may read. With auth off every request may do
everything. Events are attributed to the caller."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request, Response

from modelyard.errors import InvalidArgument
from modelyard.schemas.accounts import Role
from modelyard.schemas.deployments import (
    CreateDeployment,
    Deployment,
    DeploymentEvent,
    DeploymentEventList,
    DeploymentList,
    DeploymentState,
    NewDeploymentEvent,
    UpdateDeployment,
)
from modelyard.server.authz import Principal, may_read_models, require_models
from modelyard.server.routes import reply
from modelyard.store.sql.deployments import SqlDeploymentStore

router = APIRouter(tags=["deployments"])
Limit = Annotated[int, Query(ge=1, le=10_000)]


def _deployments(request: Request) -> SqlDeploymentStore:
    """The app's deployment store, made on first use from its SQL tracking store."""
    state = request.app.state
    found = getattr(state, "deployments", None)
    if found is None:
        from modelyard.store.sql.store import SqlTrackingStore

        if not isinstance(state.store, SqlTrackingStore):
            raise InvalidArgument("This server's store keeps no deployments (they need a SQL backend store).")
        found = state.deployments = SqlDeploymentStore(state.store)
    return found  # type: ignore[no-any-return]


def _caller(request: Request) -> Principal | None:
    return (request.scope.get("state") or {}).get("principal")


def _require(request: Request, models: set[str], needed: Role, deployment_id: str | None = None) -> None:
    state = request.scope.get("state") or {}
    targets = state.get("audit_targets")
    if deployment_id is not None and targets is not None:
        targets.append(f"deployment:{deployment_id}")
    require_models(_caller(request), request.app.state.authorizer, models, needed, targets)


def _models(deployment: Deployment) -> set[str]:
    return {t.model_name for t in deployment.traffic}


def _user(request: Request) -> str | None:
    who = _caller(request)
    return who.username if who is not None else None


@router.post("/deployments", response_model=Deployment, status_code=201)
def create_deployment(body: CreateDeployment, request: Request) -> Response:
    """Record a deployment (with its `started` event). Give `deployment_id` to make a retried create
    harmless: the same id again answers 409."""
    _require(request, {t.model_name for t in body.traffic}, Role.EDIT, body.deployment_id)
    created = _deployments(request).create_deployment(
        body.name, body.endpoint, body.traffic, body.target, body.state, body.info, body.message,
        body.deployment_id, _user(request),
    )  # fmt: skip
    if body.deployment_id is None:
        _require(request, set(), Role.EDIT, created.deployment_id)
    return reply(created, 201)


@router.get("/deployments", response_model=DeploymentList)
def list_deployments(
    request: Request,
    model_name: str | None = None,
    version: Annotated[int | None, Query(ge=1)] = None,
    state: DeploymentState | None = None,
    name: str | None = None,
    limit: Limit = 100,
) -> Response:
    """Newest first. `model_name` (and `version`): the deployments whose traffic holds or held that model
    (version); `state`; `name`: the served name."""
    found = _deployments(request).list_deployments(model_name, version, state, name, limit)
    who, authz = _caller(request), request.app.state.authorizer
    return reply(DeploymentList(deployments=[d for d in found if may_read_models(who, authz, _models(d))]))


@router.get("/deployments/{deployment_id}", response_model=Deployment)
def get_deployment(deployment_id: str, request: Request) -> Response:
    found = _deployments(request).get_deployment(deployment_id)
    _require(request, _models(found), Role.READ)
    return reply(found)


@router.patch("/deployments/{deployment_id}", response_model=Deployment)
def update_deployment(deployment_id: str, body: UpdateDeployment, request: Request) -> Response:
    """Change the traffic split, the state and/or the info; the change is recorded as one event with
    `message` (kind: traffic_changed, stopped or failed after what changed, or the `kind` given)."""
    store = _deployments(request)
    current = store.get_deployment(deployment_id)
    after = {t.model_name for t in body.traffic} if body.traffic is not None else set()
    _require(request, _models(current) | after, Role.EDIT, current.deployment_id)
    updated = store.update_deployment(
        deployment_id,
        body.traffic,
        body.state,
        body.message,
        body.kind,
        body.details,
        body.info,
        _user(request),
    )
    return reply(updated)


@router.post("/deployments/{deployment_id}/heartbeat", status_code=204)
def heartbeat(deployment_id: str, request: Request) -> Response:
    """The model server is alive (it sends this every `info.heartbeat_s` seconds): sets `heartbeat_time`,
    records no event. 400 INVALID_STATE once the deployment is STOPPED."""
    store = _deployments(request)
    current = store.get_deployment(deployment_id)
    _require(request, _models(current), Role.EDIT)
    store.heartbeat(deployment_id)
    return Response(status_code=204)


@router.post("/deployments/{deployment_id}/events", response_model=DeploymentEvent, status_code=201)
def add_event(deployment_id: str, body: NewDeploymentEvent, request: Request) -> Response:
    """Append a note (or a promoted / rolled_back event that changed no traffic) to the history."""
    store = _deployments(request)
    current = store.get_deployment(deployment_id)
    _require(request, _models(current), Role.EDIT, current.deployment_id)
    return reply(store.add_event(deployment_id, body.kind, body.message, body.details, _user(request)), 201)


@router.get("/deployments/{deployment_id}/events", response_model=DeploymentEventList)
def list_events(
    deployment_id: str,
    request: Request,
    after_id: Annotated[int, Query(ge=0)] = 0,
    limit: Limit = 1000,
) -> Response:
    """The deployment's history, oldest first: each event's kind, message, state and traffic after it."""
    store = _deployments(request)
    _require(request, _models(store.get_deployment(deployment_id)), Role.READ)
    return reply(DeploymentEventList(events=store.list_events(deployment_id, after_id, limit)))
