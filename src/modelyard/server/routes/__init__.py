"""REST API v1 routes, one module per resource."""

from __future__ import annotations

from typing import Any

from fastapi import Request, Response
from pydantic import BaseModel

from modelyard.store.base import TrackingStore


def store(request: Request) -> TrackingStore:
    return request.app.state.store  # type: ignore[no-any-return]


def reply(model: BaseModel, status_code: int = 200) -> Response:
    """Serialise with pydantic directly: fast, and NaN/inf become strings instead of a 500."""
    return Response(
        model.model_dump_json(by_alias=True), status_code=status_code, media_type="application/json"
    )


def ok() -> dict[str, Any]:
    return {}
