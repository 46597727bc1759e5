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

With auth off (no middleware of ours has to see the request but the body limit), `hot_front(app)` puts a
second `HotRoutes` in front of the whole app, which `modelyard server` serves: the hot paths then also skip
FastAPI's own layers (telemetry check, error middleware, body-limit wrapper, exit stack, router): ~50 us of
a one-point request's ~270 us, measured. It does what they would: a body over the limit (or of unknown
length) goes through them; a `ModelyardError` or a validation error becomes the app's JSON error; anything
else a logged 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.routing import get_route_path
from starlette.types import ASGIApp, Receive, Scope, Send

from modelyard.errors import ModelyardError
from modelyard.server.app import error_response
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


logger = logging.getLogger(__name__)


class HotRoutes:
    """`max_body`: in front of the whole app (see `hot_front`): hot requests whose declared body is at most
    this many bytes are answered here, errors included; everything else goes to `app`."""

    def __init__(self, app: ASGIApp, fastapi_app: FastAPI, max_body: int | None = None) -> None:
        from modelyard.server.routes import runs

        self.app, self.fastapi_app, self.max_body = app, fastapi_app, max_body
        self._v1_log_batch = runs.log_batch
        self._mlflow_router: APIRouter | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._may_answer(scope):
            path: str = scope["path"]
            if (run_id := _v1_run_id(path)) is not None:
                return await self._answer(self._v1(run_id, scope, receive, send), scope, receive, send)
            if (name := MLFLOW_PATHS.get(path)) is not None:
                from modelyard.server.mlflow_compat import run_data

                endpoint = run_data.log_metric if name == "log-metric" else run_data.log_batch
                call = self._mlflow_call(endpoint, scope, receive, send)
                return await self._answer(call, scope, receive, send)
        if self.max_body is None and scope["type"] == "http" and get_route_path(scope).startswith(PREFIXES):
            if self._mlflow_router is None:
                self._mlflow_router = build_router(self.fastapi_app)
            return await self._mlflow_router(scope, receive, send)
        await self.app(scope, receive, send)

    def _may_answer(self, scope: Scope) -> bool:
        """Whether a request may be answered here if its path is a hot one (else FastAPI must see it)."""
        return (
            scope["type"] == "http"
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and "fastapi.telemetry" not in scope  # FastAPI names the route in its spans: let it route
            and not self.fastapi_app.dependency_overrides
            and (self.max_body is None or _declared_within(scope, self.max_body))
        )

    # answered inside the HTTP protocol (server/protocol.py) ----------------------------------------------
    def run_to_log_now(self, scope: Scope, max_body: int) -> str | None:
        """The run id of a v1 log-batch that can be stored without the ASGI app: in front of the app, on a
        store that writes in this process, a declared body of at most `max_body` bytes; else None."""
        if (
            self.max_body is None
            or not self._may_answer(scope)
            or not _declared_within(scope, max_body)
            or not self.fastapi_app.state.store.writes_are_local
        ):
            return None
        return _v1_run_id(scope["path"])

    def log_now(self, run_id: str, body: bytes) -> bytes:
        """Store a log-batch request's body (see `run_to_log_now`) and return the response body; raises
        what the route would, for the caller to let the app answer the request instead."""
        from modelyard.server.routes.runs import EMPTY, log_batch_here

        log_batch_here(self.fastapi_app.state.store, run_id, body)
        return EMPTY

    async def _answer(self, call: Awaitable[None], scope: Scope, receive: Receive, send: Send) -> None:
        """Run a hot request; in front of the app, answer its errors as the app's handlers would."""
        if self.max_body is None:
            return await call  # inside the app: its exception middleware answers errors
        scope["app"] = self.fastapi_app
        try:
            await call
        except Exception as exc:
            handler = next(
                (h for kind in type(exc).__mro__ if (h := self.fastapi_app.exception_handlers.get(kind))),
                None,
            )
            if handler is None:
                logger.exception("Request %s %s failed", scope["method"], scope["path"])
                response: Response = error_response("INTERNAL_ERROR", "Internal server error.", 500)
            else:
                response = await handler(Request(scope, receive, send), exc)  # type: ignore[misc]
            await response(scope, receive, send)

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


def _v1_run_id(path: str) -> str | None:
    """The `{run_id}` of a v1 log-batch path (one non-empty segment, as the route's), else None."""
    if path.startswith(V1_PREFIX) and path.endswith(V1_SUFFIX):
        run_id = path[len(V1_PREFIX) : -len(V1_SUFFIX)]
        if run_id and "/" not in run_id:
            return run_id
    return None


def _declared_within(scope: Scope, limit: int) -> bool:
    """The request declares a Content-Length of at most `limit` bytes (no declared length: False)."""
    for key, value in scope["headers"]:
        if key == b"content-length":
            return value.isdigit() and int(value) <= limit
    return False


def install(app: FastAPI) -> None:
    """Put `HotRoutes` in front of the app's router (where `Router(middleware=...)` would put it)."""
    app.router.middleware_stack = HotRoutes(app.router.middleware_stack, app)


def hot_front(app: FastAPI) -> ASGIApp:
    """What `modelyard server` serves: with auth off, `HotRoutes` in front of the whole app as well (see
    above); with auth on, or with FastAPI's OpenTelemetry instrumentation configured, the app itself."""
    settings = app.state.settings
    telemetry = getattr(app, "_native_telemetry", None)
    if settings.auth or (telemetry is not None and telemetry.enabled()):
        return app
    return HotRoutes(app, app, max_body=int(settings.max_body_mb * 2**20))
