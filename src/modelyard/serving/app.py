"""The model server's ASGI app, built by `create_serving_app(deployment)` (no import-time side effects).

Bare Starlette: a dozen routes need no dependency injection, and every endpoint decodes its own body with
the stdlib json module. Every error is `{"error": message}` with the status its `ModelyardError` carries.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.errors import ModelyardError
from modelyard.serving import protocol
from modelyard.serving.deployment import Deployment, ServedModel
from modelyard.serving.errors import Overloaded
from modelyard.serving.payload import from_tensors

JSON = "application/json"
Endpoint = Callable[[Request], Awaitable[Response]]


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return Response(protocol.dumps(value), status_code=status, media_type=JSON, headers=headers)


def error_response(exc: ModelyardError) -> Response:
    headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, Overloaded) else None
    return json_response({"error": exc.message}, exc.http_status, headers)


def _endpoint(handler: Endpoint) -> Endpoint:
    async def endpoint(request: Request) -> Response:
        try:
            return await handler(request)
        except ModelyardError as exc:
            return error_response(exc)

    return endpoint


def create_serving_app(deployment: Deployment) -> Starlette:
    """The ASGI app serving `deployment` over OIP v2, KServe v1 and MLflow-style /invocations."""
    from modelyard import __version__

    def model_of(request: Request) -> ServedModel:
        params = request.path_params
        return deployment.get(params["model"], params.get("version"))

    async def server_metadata(request: Request) -> Response:
        return json_response({"name": "modelyard", "version": __version__, "extensions": []})

    async def live(request: Request) -> Response:
        return json_response({"live": True})

    async def ready(request: Request) -> Response:
        if not deployment.ready:
            return json_response({"ready": False, "error": "The server is shutting down."}, 503)
        return json_response({"ready": True})

    async def model_metadata(request: Request) -> Response:
        model = model_of(request)
        signature = model.signature
        versions = [model.version] if "version" in request.path_params else deployment.versions(model.name)
        return json_response(
            {
                "name": model.name,
                "versions": versions,
                "platform": model.platform,
                "inputs": protocol.tensor_metadata(signature.inputs if signature else None, "input"),
                "outputs": protocol.tensor_metadata(signature.outputs if signature else None, "output"),
            }
        )

    async def model_ready(request: Request) -> Response:
        model = model_of(request)
        if not model.ready:
            return json_response({"name": model.name, "ready": False, "error": "The model is draining."}, 503)
        return json_response({"name": model.name, "ready": True})

    async def infer(request: Request) -> Response:
        model = model_of(request)
        body = await request.body()
        decoded = protocol.decode_v2(body, request.headers.get("inference-header-content-length"))
        signature = model.signature
        payload = from_tensors(signature.inputs if signature else None, decoded.tensors)
        output = await model.batcher.submit(payload)
        return json_response(protocol.encode_v2(model.name, model.version, decoded, output, signature))

    async def v1_metadata(request: Request) -> Response:
        model = model_of(request)
        return json_response({"name": model.name, "ready": model.ready})

    async def v1_predict(request: Request) -> Response:
        model = model_of(request)
        signature = model.signature
        payload = protocol.decode_v1(await request.body(), signature.inputs if signature else None)
        return json_response(protocol.predictions(await model.batcher.submit(payload)))

    async def invocations(request: Request) -> Response:
        models = deployment.models
        model = deployment.get(models[0].name)  # the default version of the first model
        signature = model.signature
        payload = protocol.decode_invocations(
            await request.body(), request.headers.get("content-type"), signature.inputs if signature else None
        )
        return json_response(protocol.predictions(await model.batcher.submit(payload)))

    async def ping(request: Request) -> Response:
        return json_response({"status": "ok"} if deployment.ready else {"status": "draining"},
                             200 if deployment.ready else 503)  # fmt: skip

    def route(path: str, handler: Endpoint, method: str = "GET") -> Route:
        return Route(path, _endpoint(handler), methods=[method])

    routes = [
        route("/v2", server_metadata),
        route("/v2/health/live", live),
        route("/v2/health/ready", ready),
        *(
            r
            for prefix in ("/v2/models/{model}", "/v2/models/{model}/versions/{version}")
            for r in (
                route(prefix, model_metadata),
                route(prefix + "/ready", model_ready),
                route(prefix + "/infer", infer, "POST"),
            )
        ),
        route("/v1/models/{model}", v1_metadata),
        route("/v1/models/{model}:predict", v1_predict, "POST"),
        route("/invocations", invocations, "POST"),
        route("/ping", ping),
        route("/health", ping),
    ]

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await deployment.close()  # after the server stopped taking requests: answer what is queued

    async def http_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        if exc.status_code == 404:
            message = f"No endpoint {request.url.path}; see GET /v2 and the OIP v2, KServe v1 and /invocations paths."
        elif exc.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}."
        else:
            message = str(exc.detail)
        return json_response({"error": message}, exc.status_code, dict(exc.headers or {}))

    app = Starlette(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.state.deployment = deployment
    return app
