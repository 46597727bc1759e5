"""The logging routes every training job calls, dispatched without FastAPI's router.

`POST /api/v1/runs/{run_id}/log-batch` and MLflow's `POST /api/2.0/mlflow/runs/log-metric` and `.../log-batch`
(also under `/ajax-api/2.0`) carry almost all of a tracking server's requests. FastAPI finds a route by
testing the app's ~190 routes in order, through nested included routers, then solves the endpoint's
parameters and dependencies: ~60% of the server's time on a one-point request (measured). `HotRoutes` sits
where the router's own middleware would (inside the app's exception handling and every user middleware:
body limit, auth, audit), recognises these paths with string operations, and calls the very same endpoint
code with the arguments FastAPI would have solved. Anything else, and any request whose route FastAPI must
see (native telemetry on, dependency overrides set, a root path), goes to the router as before.

Every other MLflow path goes to the MLflow-compatible router, built on the first such request rather than
at startup (see `mlflow_compat`); its errors reach the app's exception handlers like the router's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from modelyard.errors import ModelyardError
from modelyard.server.mlflow_compat import PREFIXES, build_router

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI
    from starlette.responses import Response

V1_PREFIX, V1_SUFFIX = "/api/v1/runs/", "/log-batch"
MLFLOW_PATHS = {
    f"{root}/mlflow/runs/{name}": name
    for root in ("/api/2.0", "/ajax-api/2.0")
    for name in ("log-metric", "log-batch")
}


class HotRoutes:
    def __init__(self, app: ASGIApp, fastapi_app: FastAPI) -> None:
        from modelyard.server.routes import runs

        self.app, self.fastapi_app = app, fastapi_app
        self._v1_log_batch = runs.log_batch
        self._mlflow_router: APIRouter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and "fastapi.telemetry" not in scope  # FastAPI names the route in its spans: let it route
            and not self.fastapi_app.dependency_overrides
        ):
            path: str = scope["path"]
            if path.startswith(V1_PREFIX) and path.endswith(V1_SUFFIX):
                run_id = path[len(V1_PREFIX) : -len(V1_SUFFIX)]
                if run_id and "/" not in run_id:  # the route's {run_id}: one non-empty segment
                    return await self._v1(run_id, scope, receive, send)
            elif (name := MLFLOW_PATHS.get(path)) is not None:
                from modelyard.server.mlflow_compat import run_data

                endpoint = run_data.log_metric if name == "log-metric" else run_data.log_batch
                return await self._mlflow_call(endpoint, scope, receive, send)
        if scope["type"] == "http" and get_route_path(scope).startswith(PREFIXES):
            if self._mlflow_router is None:
                self._mlflow_router = build_router(self.fastapi_app)
            return await self._mlflow_router(scope, receive, send)
        await self.app(scope, receive, send)

    async def _v1(self, run_id: str, scope: Scope, receive: Receive, send: Send) -> None:
        scope["path_params"] = {"run_id": run_id}
        scope["endpoint"] = self._v1_log_batch
        response = await self._v1_log_batch(run_id, Request(scope, receive, send))
        await response(scope, receive, send)

    async def _mlflow_call(
        self, endpoint: Callable[..., Response], scope: Scope, receive: Receive, send: Send
    ) -> None:
        """What FastAPI does for these routes (`MlflowRoute`): the body read into `Params`, the store for
        this request, the sync endpoint in the threadpool, and `ModelyardError`s as MLflow error bodies."""
        from modelyard.server.mlflow_compat.route import error_reply, read_params
        from modelyard.server.routes import store

        scope["path_params"] = {}
        scope["endpoint"] = endpoint
        request = Request(scope, receive, send)
        response: Response
        try:
            fields = await read_params(request)
            response = await run_in_threadpool(endpoint, fields, store(request))
        except ModelyardError as exc:
            response = error_reply(exc)
        await response(scope, receive, send)


def install(app: FastAPI) -> None:
    """Put `HotRoutes` in front of the app's router (where `Router(middleware=...)` would put it)."""
    app.router.middleware_stack = HotRoutes(app.router.middleware_stack, app)
