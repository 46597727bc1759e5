"""`create_app(settings)`: the tracking server's ASGI app. Every route calls the store behind one interface;
every error leaves as `{"error_code", "message"}` with the status its `ModelyardError` class names."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard import __version__, config
from modelyard.errors import ModelyardError, PayloadTooLarge
from modelyard.schemas.accounts import Role


@dataclass(frozen=True)
class ServerSettings:
    backend_store_uri: str | None = None  # default: MODELYARD_TRACKING_URI / the embedded store
    artifacts_uri: str | None = None  # default root for new experiments' artifacts
    max_body_mb: float = 64.0
    auth: bool = False  # require API tokens, enforce roles, keep the audit log
    default_role: Role | None = Role.READ  # with auth: the role users hold where nobody granted them one
    # with auth: where users other than admins may name an experiment's artifact location (server/locations.py)
    artifact_location_prefixes: tuple[str, ...] = ()


def error_response(code: str, message: str, status: int) -> JSONResponse:
    return JSONResponse({"error_code": code, "message": message}, status_code=status)


class BodyLimit:
    """Refuse request bodies over the limit with 413 before reading them (declared or streamed size)."""

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app, self.max_bytes = app, max_bytes

    # MLflow clients upload a whole artifact in one PUT; that route streams it to disk, so no cap there.
    STREAMED_UPLOADS = ("/api/2.0/mlflow-artifacts/", "/ajax-api/2.0/mlflow-artifacts/")

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(self.STREAMED_UPLOADS):
            return await self.app(scope, receive, send)
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(send)
        seen = 0

        async def counted() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise PayloadTooLarge(self._message())
            return message

        try:
            await self.app(scope, counted, send)
        except PayloadTooLarge:
            await self._refuse(send)

    def _message(self) -> str:
        return (
            f"Request body over the server's limit of {self.max_bytes / 2**20:g} MB; send smaller batches "
            "(or start the server with a larger --max-body-mb)."
        )

    async def _refuse(self, send: Send) -> None:
        response = error_response(PayloadTooLarge.code, self._message(), PayloadTooLarge.http_status)
        await response({"type": "http"}, _no_receive, send)


async def _no_receive() -> Message:  # pragma: no cover - a response never reads the request
    return {"type": "http.disconnect"}


def _describe(errors: list[Any]) -> str:
    """Pydantic/FastAPI validation errors as one readable sentence per problem."""
    parts = []
    for e in errors[:5]:
        where = ".".join(str(p) for p in e.get("loc", ()) if p != "body") or "body"
        if e.get("type") == "json_invalid":
            parts.append(f"the body is not valid JSON ({e.get('ctx', {}).get('error', 'parse error')})")
        else:
            parts.append(f"{where}: {e.get('msg', 'invalid')}")
    more = f" (and {len(errors) - 5} more)" if len(errors) > 5 else ""
    return "Invalid request: " + "; ".join(parts) + more + "."


ERROR_STATUSES = {
    400: "Invalid input: the message says what to fix",
    401: "Authentication required",
    403: "Permission denied",
    404: "No such resource (or endpoint)",
    405: "Method not allowed on this endpoint",
    409: "Conflicts with stored state (name taken, param already set to another value)",
    413: "Request body over the server's limit",
    503: "The store is unavailable; retry later",
}


def _document_errors(app: FastAPI) -> None:
    """The spec lists the error responses every route can give (one body shape) instead of FastAPI's 422,
    which this server never sends: validation errors are 400s like every other bad input."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema:
            return app.openapi_schema
        from fastapi.openapi.utils import get_openapi

        spec = get_openapi(title=app.title, version=app.version, routes=app.routes)
        schemas = spec.setdefault("components", {}).setdefault("schemas", {})
        schemas["Error"] = {
            "type": "object",
            "required": ["error_code", "message"],
            "properties": {"error_code": {"type": "string"}, "message": {"type": "string"}},
        }
        schemas.pop("HTTPValidationError", None)
        schemas.pop("ValidationError", None)
        error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
        for operations in spec["paths"].values():
            for operation in operations.values():
                responses = operation.setdefault("responses", {})
                responses.pop("422", None)
                for status, description in ERROR_STATUSES.items():
                    responses.setdefault(str(status), {"description": description, **error})
        app.openapi_schema = spec
        return spec

    app.openapi = openapi  # type: ignore[method-assign]


def create_app(settings: ServerSettings | None = None) -> FastAPI:
    from modelyard.server import hot_routes
    from modelyard.server.mlflow_compat import links as mlflow_links
    from modelyard.server.routes import access, artifacts, experiments, models, pipelines, runs, webhooks
    from modelyard.server.routes import deployments as deployment_routes
    from modelyard.store.registry import store_class_for

    settings = settings or ServerSettings()
    uri = settings.backend_store_uri or config.tracking_uri()
    if uri.startswith(("http://", "https://")):
        from modelyard.errors import InvalidArgument

        raise InvalidArgument(
            "The server's --backend-store-uri must be a database (sqlite:/// or postgresql://)."
        )
    store = store_class_for(uri)(uri, default_artifact_root=settings.artifacts_uri)  # type: ignore[call-arg]

    app = FastAPI(
        title="Modelyard tracking API",
        version=__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.store = store
    app.state.settings = settings
    app.state.accounts = _accounts(store)
    app.state.registry = _model_registry(store)
    app.state.authorizer = None

    @app.exception_handler(ModelyardError)
    async def _modelyard_error(_: Request, exc: ModelyardError) -> JSONResponse:
        return error_response(exc.code, exc.message, exc.http_status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response("INVALID_PARAMETER_VALUE", _describe(list(exc.errors())), 400)

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "ENDPOINT_NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}.get(exc.status_code, "BAD_REQUEST")
        return error_response(code, str(exc.detail), exc.status_code)

    @app.get("/health", tags=["ops"])
    def health() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/ready", tags=["ops"])
    def ready() -> dict[str, str]:
        """The process is up and its store answers."""
        store.search_experiments(max_results=1)
        return {"status": "ready"}

    _document_errors(app)
    app.include_router(experiments.router, prefix="/api/v1")
    app.include_router(runs.router, prefix="/api/v1")
    app.include_router(artifacts.router, prefix="/api/v1")
    app.include_router(models.router, prefix="/api/v1")
    app.include_router(access.router, prefix="/api/v1")
    app.include_router(webhooks.router, prefix="/api/v1")
    app.include_router(pipelines.router, prefix="/api/v1")
    app.include_router(deployment_routes.router, prefix="/api/v1")
    app.include_router(mlflow_links.router)  # `/`: where the MLflow client's "View run at" links lead
    hot_routes.install(app)  # and the MLflow REST API and artifact proxy, for unmodified MLflow clients
    if settings.auth:
        _enable_auth(app, store, settings)
    app.add_middleware(BodyLimit, max_bytes=int(settings.max_body_mb * 2**20))
    if app.state.accounts is not None:  # a SQL store: keep webhooks, run their dispatcher while serving
        webhooks.install(app)
        pipelines.install(app)  # pipeline schedules, and the scheduler that runs them
    if hasattr(store, "checkpoint_in_background"):  # SQLite: no checkpoint stalls in the event loop
        app.router.on_startup.append(store.checkpoint_in_background)
    app.router.on_shutdown.append(store.close)
    return app


def _accounts(store: Any) -> Any:
    from modelyard.store.sql.accounts import SqlAccountStore
    from modelyard.store.sql.store import SqlTrackingStore

    return SqlAccountStore(store) if isinstance(store, SqlTrackingStore) else None


def _model_registry(store: Any) -> Any:
    from modelyard.store.sql.model_registry import SqlModelRegistryStore
    from modelyard.store.sql.store import SqlTrackingStore

    return SqlModelRegistryStore(store) if isinstance(store, SqlTrackingStore) else None


def _enable_auth(app: FastAPI, store: Any, settings: ServerSettings) -> None:
    from modelyard.errors import InvalidArgument
    from modelyard.server.auth import AuthMiddleware
    from modelyard.server.authz import Authorizer
    from modelyard.server.locations import LocationPolicy

    if app.state.accounts is None:
        raise InvalidArgument(
            "--auth needs a SQL backend store (sqlite:/// or postgresql://) to keep accounts in."
        )
    root = settings.artifacts_uri or config.artifact_uri()  # the store's default root for new experiments
    locations = LocationPolicy(root, settings.artifact_location_prefixes)
    app.state.authorizer = Authorizer(app.state.accounts, store, settings.default_role, locations)
    app.add_middleware(AuthMiddleware, authz=app.state.authorizer)


def app_from_env() -> FastAPI:
    """The app for `modelyard server`: settings come from MODELYARD_SERVER_* variables (one per worker).

    `modelyard server` builds the app once to check the store before it starts uvicorn, whose factory call
    then builds it again in the same process (one worker): that second call takes over the first app,
    unstarted, instead of opening the store and building every route a second time (~70 ms of startup)."""
    global _built
    env = os.environ
    settings = ServerSettings(
        backend_store_uri=env.get("MODELYARD_SERVER_BACKEND_STORE_URI") or None,
        artifacts_uri=env.get("MODELYARD_SERVER_ARTIFACTS_URI") or None,
        max_body_mb=float(env.get("MODELYARD_SERVER_MAX_BODY_MB") or 64),
        auth=env.get("MODELYARD_SERVER_AUTH") == "1",
        default_role=_role(env.get("MODELYARD_SERVER_DEFAULT_ROLE") or "READ"),
        artifact_location_prefixes=tuple(
            p for p in (env.get("MODELYARD_SERVER_ARTIFACT_LOCATION_PREFIXES") or "").split("\n") if p
        ),
    )
    built, _built = _built, None
    if built is not None and built[0] == settings:
        return built[1]  # each app is handed over once: a third call builds a fresh one
    app = create_app(settings)
    _built = (settings, app)
    return app


_built: tuple[ServerSettings, FastAPI] | None = None  # the last app_from_env app, not yet handed over


def asgi_from_env() -> ASGIApp:
    """uvicorn's factory in `modelyard server`: `app_from_env()`, behind `hot_routes.hot_front` (with auth
    off, the logging hot paths are answered before FastAPI's own layers)."""
    from modelyard.server.hot_routes import hot_front

    return hot_front(app_from_env())


def _role(name: str) -> Role | None:
    return None if name.upper() == "NONE" else Role(name.upper())
