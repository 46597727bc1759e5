"""REST API v1 routes, one module per resource."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from pydantic import BaseModel

from modelyard.store.base import TrackingStore
from modelyard.store.model_registry import ModelRegistryStore


def store(request: Request) -> TrackingStore:
    """The tracking store as this request may use it: with auth on, behind its principal's role checks."""
    state = request.scope.get("state") or {}
    principal = state.get("principal")
    if principal is None:
        return request.app.state.store  # type: ignore[no-any-return]
    from modelyard.server.authz import AuthorizedStore

    return AuthorizedStore(
        request.app.state.store, principal, request.app.state.authorizer, state["audit_targets"]
    )


def model_registry(request: Request) -> ModelRegistryStore:
    """The model registry as this request may use it."""
    registry = request.app.state.registry
    if registry is None:
        from modelyard.errors import InvalidArgument

        raise InvalidArgument("This server's store has no model registry (it needs a SQL backend store).")
    state = request.scope.get("state") or {}
    principal = state.get("principal")
    if principal is None:
        return registry  # type: ignore[no-any-return]
    from modelyard.server.authz import AuthorizedRegistry

    return AuthorizedRegistry(registry, principal, request.app.state.authorizer, state["audit_targets"])


def reply(model: BaseModel, status_code: int = 200) -> Response:
    """Serialise with pydantic directly: fast, and NaN/inf become strings instead of a 500."""
    return Response(
        model.model_dump_json(by_alias=True), status_code=status_code, media_type="application/json"
    )


def ok() -> dict[str, Any]:
    return {}
