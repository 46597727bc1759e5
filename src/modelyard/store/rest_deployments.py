"""Deployment records over a running server's /api/v1/deployments, with the caller's token (MODELYARD_TOKEN):
the server checks the caller's rights and attributes every change to them."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

import httpx

from modelyard.schemas.deployments import (
    CreateDeployment,
    Deployment,
    DeploymentEvent,
    DeploymentEventList,
    DeploymentList,
    DeploymentState,
    DeploymentTarget,
    EventKind,
    NewDeploymentEvent,
    TrafficEntry,
    UpdateDeployment,
)
from modelyard.store.deployments import (
    DeploymentStore,
    event_kind,
    parse_kind,
    parse_state,
    parse_target,
    validate_endpoint,
    validate_id,
    validate_json,
    validate_limit,
    validate_message,
    validate_name,
    validate_traffic,
)
from modelyard.store.rest_resource import RestResource, segment


class RestDeploymentStore(RestResource, DeploymentStore):
    """`retries`: how often a connection error or a 503 is retried (with backoff) before `Unavailable`."""

    def __init__(self, uri: str, client: httpx.Client | None = None, retries: int | None = None) -> None:
        super().__init__(uri, client)
        if retries is not None:
            self._rest._retries = retries

    def create_deployment(
        self,
        name: str,
        endpoint: str,
        traffic: Iterable[TrafficEntry | Mapping[str, Any]],
        target: DeploymentTarget | str = DeploymentTarget.LOCAL,
        state: DeploymentState | str = DeploymentState.STARTING,
        info: Mapping[str, Any] | None = None,
        message: str = "",
        deployment_id: str | None = None,
        user: str | None = None,  # the server knows who calls
    ) -> Deployment:
        body = CreateDeployment(
            name=validate_name(name),
            endpoint=validate_endpoint(endpoint),
            traffic=validate_traffic(traffic),
            target=parse_target(target),
            state=parse_state(state),
            info=validate_json("info", info),
            message=validate_message(message),
            deployment_id=validate_id(deployment_id) if deployment_id is not None else None,
        )
        return Deployment.model_validate(self._call("POST", "/deployments", body))

    def get_deployment(self, deployment_id: str) -> Deployment:
        return Deployment.model_validate(self._call("GET", f"/deployments/{segment(deployment_id)}"))

    def list_deployments(
        self,
        model_name: str | None = None,
        version: int | None = None,
        state: DeploymentState | str | None = None,
        name: str | None = None,
        limit: int = 100,
    ) -> list[Deployment]:
        params = {
            "model_name": model_name,
            "version": version,
            "state": parse_state(state).value if state is not None else None,
            "name": name,
            "limit": validate_limit(limit),
        }
        return DeploymentList.model_validate(self._call("GET", "/deployments", params=params)).deployments

    def update_deployment(
        self,
        deployment_id: str,
        traffic: Iterable[TrafficEntry | Mapping[str, Any]] | None = None,
        state: DeploymentState | str | None = None,
        message: str = "",
        kind: EventKind | str | None = None,
        details: Mapping[str, Any] | None = None,
        info: Mapping[str, Any] | None = None,
        user: str | None = None,
    ) -> Deployment:
        body = UpdateDeployment(
            traffic=validate_traffic(traffic) if traffic is not None else None,
            state=parse_state(state) if state is not None else None,
            message=validate_message(message),
            kind=parse_kind(kind) if kind is not None else None,
            details=validate_json("details", details),
            info=validate_json("info", info) if info is not None else None,
        )
        return Deployment.model_validate(self._call("PATCH", f"/deployments/{segment(deployment_id)}", body))

    def add_event(
        self,
        deployment_id: str,
        kind: EventKind | str = EventKind.NOTE,
        message: str = "",
        details: Mapping[str, Any] | None = None,
        user: str | None = None,
    ) -> DeploymentEvent:
        body = NewDeploymentEvent(
            kind=event_kind(kind),
            message=validate_message(message),
            details=validate_json("details", details),
        )
        path = f"/deployments/{segment(deployment_id)}/events"
        return DeploymentEvent.model_validate(self._call("POST", path, body))

    def heartbeat(self, deployment_id: str) -> None:
        self._call("POST", f"/deployments/{segment(deployment_id)}/heartbeat")

    def list_events(self, deployment_id: str, after_id: int = 0, limit: int = 1000) -> list[DeploymentEvent]:
        params = {"after_id": after_id, "limit": validate_limit(limit)}
        found = self._call("GET", f"/deployments/{segment(deployment_id)}/events", params=params)
        return DeploymentEventList.model_validate(found).events


__all__ = ["RestDeploymentStore"]
