"""The model server's ASGI app, built by `create_serving_app(deployment)` (no import-time side effects).

Bare Starlette: a dozen routes need no dependency injection, and every endpoint decodes its own body with
the stdlib json module. Every error is `{"error": message}` with the status its `ModelyardError` carries.

The inference endpoints are wrapped once (`inference`) for Prometheus metrics (`GET /metrics`) and the
payload log (a sample of requests and responses written as Parquet); see `metrics.py` and `payload_log.py`.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from modelyard.errors import ModelyardError
from modelyard.serving import protocol
from modelyard.serving.deployment import Deployment, ServedModel
from modelyard.serving.errors import Overloaded
from modelyard.serving.payload import Payload, from_tensors
from modelyard.serving.payload_log import PayloadLogConfig, PayloadLogger, PayloadRecord

if TYPE_CHECKING:
    from modelyard.serving.metrics import ServingMetrics

JSON = "application/json"
REQUEST_ID_HEADER = "x-request-id"
Endpoint = Callable[[Request], Awaitable[Response]]


class _Call:
    """What an inference handler learned about its request, for the payload log."""

    __slots__ = ("output", "payload", "request_id")

    def __init__(self) -> None:
        self.request_id: str | None = None
        self.payload: Payload | None = None
        self.output: Any = None


InferenceHandler = Callable[[Request, ServedModel, _Call], Awaitable[Response]]


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


def create_serving_app(
    deployment: Deployment,
    *,
    metrics: bool | ServingMetrics = True,
    payload_log: PayloadLogConfig | PayloadLogger | None = None,
) -> Starlette:
    """The ASGI app serving `deployment` over OIP v2, KServe v1 and MLflow-style /invocations.

    `metrics`: serve Prometheus metrics at `GET /metrics` (True: in a registry of this app's own; or the
    `ServingMetrics` to update). `payload_log`: log a sample of requests and responses as Parquet (a
    `PayloadLogConfig`, or a `PayloadLogger` made by the caller); written at shutdown at the latest.
    """
    from modelyard import __version__

    observer: ServingMetrics | None = None
    if metrics is True:
        from modelyard.serving.metrics import ServingMetrics

        observer = ServingMetrics()
    elif metrics is not False:
        observer = metrics
    if observer is not None:
        for served_model in deployment.models:
            observer.model(served_model)  # every series shows from the start, at zero
    payloads: PayloadLogger | None = None
    if isinstance(payload_log, PayloadLogConfig):
        payloads = PayloadLogger(payload_log, observer) if payload_log.sample > 0 else None
    elif payload_log is not None:
        payloads = payload_log
        if payloads.metrics is None:
            payloads.metrics = observer

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

    async def infer(request: Request, model: ServedModel, call: _Call) -> Response:
        body = await request.body()
        decoded = protocol.decode_v2(body, request.headers.get("inference-header-content-length"))
        if decoded.id is None:
            decoded.id = request.headers.get(REQUEST_ID_HEADER) or uuid.uuid4().hex
        call.request_id = decoded.id
        signature = model.signature
        call.payload = payload = from_tensors(signature.inputs if signature else None, decoded.tensors)
        call.output = output = await model.batcher.submit(payload)
        return json_response(protocol.encode_v2(model.name, model.version, decoded, output, signature))

    async def v1_metadata(request: Request) -> Response:
        model = model_of(request)
        return json_response({"name": model.name, "ready": model.ready})

    async def v1_predict(request: Request, model: ServedModel, call: _Call) -> Response:
        signature = model.signature
        call.payload = payload = protocol.decode_v1(
            await request.body(), signature.inputs if signature else None
        )
        call.output = output = await model.batcher.submit(payload)
        return json_response(protocol.predictions(output))

    def default_model(request: Request) -> ServedModel:
        return deployment.get(deployment.models[0].name)  # the default version of the first model

    async def invocations(request: Request, model: ServedModel, call: _Call) -> Response:
        signature = model.signature
        call.payload = payload = protocol.decode_invocations(
            await request.body(), request.headers.get("content-type"), signature.inputs if signature else None
        )
        call.output = output = await model.batcher.submit(payload)
        return json_response(protocol.predictions(output))

    def inference(
        name: str, resolve: Callable[[Request], ServedModel], handler: InferenceHandler
    ) -> Endpoint:
        """`handler` answering for the model `resolve` finds, counted in the metrics and payload log."""

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                model = resolve(request)
            except ModelyardError as exc:
                if observer is not None:
                    observer.unknown(name).observe(exc.http_status, time.perf_counter() - started, exc.code)
                return error_response(exc)
            observed = observer.endpoint(model, name) if observer is not None else None
            logged = payloads is not None and payloads.sampled()
            arrived = time.time() if logged else 0.0
            call = _Call()
            error: ModelyardError | None = None
            if observed is not None:
                observed.start()
            try:
                response = await handler(request, model, call)
            except ModelyardError as exc:
                error, response = exc, error_response(exc)
            except Exception:
                if observed is not None:  # Starlette answers 500
                    observed.observe(500, time.perf_counter() - started, "INTERNAL_ERROR")
                raise
            finally:
                if observed is not None:
                    observed.stop()
            elapsed = time.perf_counter() - started
            if observed is not None:
                observed.observe(response.status_code, elapsed, error.code if error is not None else None)
            if logged:
                assert payloads is not None
                payload, signature = call.payload, model.signature
                payloads.log(
                    PayloadRecord(
                        request_id=call.request_id
                        or request.headers.get(REQUEST_ID_HEADER)
                        or uuid.uuid4().hex,
                        timestamp=arrived,
                        model=model.name,
                        version=model.version,
                        protocol=name,
                        status=response.status_code,
                        latency=elapsed,
                        error=error.message if error is not None else None,
                        inputs=payload.inputs if payload is not None else None,
                        outputs=call.output,
                        rows=payload.rows if payload is not None else 1,
                        input_schema=signature.inputs if signature is not None else None,
                        output_schema=signature.outputs if signature is not None else None,
                    )
                )
            return response

        return endpoint

    async def metrics_endpoint(request: Request) -> Response:
        assert observer is not None
        from modelyard.serving.metrics import CONTENT_TYPE

        return Response(observer.exposition(), media_type=CONTENT_TYPE)

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
                Route(prefix + "/infer", inference("v2", model_of, infer), methods=["POST"]),
            )
        ),
        route("/v1/models/{model}", v1_metadata),
        Route("/v1/models/{model}:predict", inference("v1", model_of, v1_predict), methods=["POST"]),
        Route("/invocations", inference("invocations", default_model, invocations), methods=["POST"]),
        route("/ping", ping),
        route("/health", ping),
    ]
    if observer is not None:
        routes.append(route("/metrics", metrics_endpoint))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        await deployment.close()  # after the server stopped taking requests: answer what is queued
        if payloads is not None:  # then write the payload log's buffer, off the event loop
            await asyncio.get_running_loop().run_in_executor(None, payloads.close)

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
    app.state.metrics = observer
    app.state.payload_log = payloads
    return app
