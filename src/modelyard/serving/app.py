"""The model server's ASGI app, built by `create_serving_app(deployment)` (no import-time side effects).

Bare Starlette: a dozen routes need no dependency injection, and every endpoint decodes its own body (JSON
through pydantic-core). Every error is `{"error": message}` with the status its `ModelyardError` carries.
Request bodies above `max_request_bytes` are refused with 413 before they are read whole.

The inference endpoints are wrapped once (`inference`) for Prometheus metrics (`GET /metrics`) and the
payload log (a sample of requests and responses written as Parquet); see `metrics.py` and `payload_log.py`.
A request that names no version is routed by the deployment (primary or canary) and mirrored to the
name's shadows (see `router.py`); one naming a version goes to that version only.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route, get_route_path

from modelyard.errors import ModelyardError, PayloadTooLarge
from modelyard.serving import protocol
from modelyard.serving.deployment import Deployment, ServedModel
from modelyard.serving.errors import Overloaded
from modelyard.serving.payload import Payload, from_tensors
from modelyard.serving.payload_log import PayloadLogConfig, PayloadLogger, PayloadRecord

if TYPE_CHECKING:
    from modelyard.serving.metrics import ServingMetrics
    from modelyard.serving.router import Mirror, ShadowResult

logger = logging.getLogger(__name__)

JSON = "application/json"
REQUEST_ID_HEADER = "x-request-id"
DEFAULT_MAX_REQUEST_BYTES = 100 * 1024 * 1024
Endpoint = Callable[[Request], Awaitable[Response]]


class _Call:
    """What an inference handler learned about its request, for the payload log and the shadows."""

    __slots__ = ("arrived", "mirror", "mirrored", "output", "payload", "request_id", "shadow_log")

    def __init__(self, mirrored: bool) -> None:
        self.request_id: str | None = None
        self.payload: Payload | None = None
        self.output: Any = None
        self.mirrored = mirrored  # routed by the split (no version named): shadows get a copy
        self.mirror: Mirror | None = None
        self.arrived = 0.0
        self.shadow_log: Callable[[ShadowResult], None] | None = None  # set when the request is logged


InferenceHandler = Callable[[Request, ServedModel, _Call], Awaitable[Response]]


class JsonResponse(Response):
    """A JSON body already encoded, sent as Starlette's `Response` sends it, less its generic header and
    background-task handling (~5% of the server's time on a one-row request)."""

    media_type = JSON

    def __init__(self, body: bytes, status_code: int = 200, headers: dict[str, str] | None = None) -> None:
        self.status_code, self.body, self.background = status_code, body, None
        self.raw_headers = [
            (b"content-length", str(len(body)).encode()),
            (b"content-type", b"application/json"),
            *((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()),
        ]

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": self.status_code, "headers": self.raw_headers})
        await send({"type": "http.response.body", "body": self.body})


def json_response(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    return JsonResponse(protocol.dumps(value), status, headers)


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


def _report_failure(task: asyncio.Future[Any]) -> None:
    """Log a background task that died (it would otherwise fail silently while the server goes on)."""
    if not task.cancelled() and task.exception() is not None:
        logger.error("A background task of the model server failed", exc_info=task.exception())


REFUSED = "modelyard.refused"  # scope key: the error a request's body was refused with before dispatch


class ServingApp(Starlette):
    """The serving app: the inference routes are recognised with string operations and called directly, the
    rest goes through Starlette's middleware and router (which cost ~20% of the server's time on a one-row
    request, measured). Same endpoints, same answers; an unexpected error is a 500 `{"error": ...}`."""

    hot: dict[str, Endpoint]  # "invocations", "v2", "v1": the endpoints `create_serving_app` made
    max_request_bytes: int

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            found = _inference_route(get_route_path(scope))
            if found is not None:
                name, params = found
                scope["app"], scope["path_params"] = self, params
                try:
                    try:
                        body = await read_body(scope, receive, self.max_request_bytes)
                    except PayloadTooLarge as exc:  # answered by the endpoint: the model's metrics count it
                        scope[REFUSED], body = exc, b""
                    if body is None:
                        return  # the client went away: no one to answer
                    request = Request(scope, receive, send)
                    request._body = body  # what `await request.body()` returns (Starlette caches it there)
                    response = await self.hot[name](request)
                except ModelyardError as exc:
                    response = error_response(exc)
                except Exception:
                    logger.exception("Inference request %s failed", scope["path"])
                    response = json_response({"error": "Internal server error; see the server's log."}, 500)
                await response(scope, receive, send)
                return
        await super().__call__(scope, receive, send)


async def read_body(scope: Any, receive: Any, limit: int) -> bytes | None:
    """The request's body, or None if the client disconnected; `PayloadTooLarge` past `limit` bytes, told
    by Content-Length before anything is read, else as soon as the chunks read add up to more."""
    for key, value in scope["headers"]:
        if key == b"content-length" and value.isdigit() and int(value) > limit:
            raise _too_large(int(value), limit)
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit)
        chunks.append(chunk)
        if not message.get("more_body", False):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


def _too_large(size: int, limit: int) -> PayloadTooLarge:
    return PayloadTooLarge(
        f"The request body has {size:,} bytes (or more); this server takes at most {limit:,} "
        "(modelyard serve --max-request-mb). Split the rows over several requests."
    )


def _inference_route(path: str) -> tuple[str, dict[str, str]] | None:
    """(endpoint, path parameters) of an inference path: /invocations, /v2/models/M[/versions/V]/infer,
    /v1/models/M:predict (each parameter one non-empty segment, as the router's `{model}`)."""
    if path == "/invocations":
        return "invocations", {}
    if path.startswith("/v2/models/") and path.endswith("/infer"):
        parts = path[len("/v2/models/") : -len("/infer")].split("/")
        if len(parts) == 1 and parts[0]:
            return "v2", {"model": parts[0]}
        if len(parts) == 3 and parts[1] == "versions" and parts[0] and parts[2]:
            return "v2", {"model": parts[0], "version": parts[2]}
    elif path.startswith("/v1/models/") and path.endswith(":predict"):
        model = path[len("/v1/models/") : -len(":predict")]
        if model and "/" not in model:
            return "v1", {"model": model}
    return None


def create_serving_app(
    deployment: Deployment,
    *,
    metrics: bool | ServingMetrics = True,
    payload_log: PayloadLogConfig | PayloadLogger | None = None,
    background: Sequence[Callable[[], Awaitable[Any]]] = (),
    max_request_bytes: int = DEFAULT_MAX_REQUEST_BYTES,
) -> Starlette:
    """The ASGI app serving `deployment` over OIP v2, KServe v1 and MLflow-style /invocations.

    `metrics`: serve Prometheus metrics at `GET /metrics` (True: in a registry of this app's own; or the
    `ServingMetrics` to update). `payload_log`: log a sample of requests and responses as Parquet (a
    `PayloadLogConfig`, or a `PayloadLogger` made by the caller); written at shutdown at the latest.
    `background`: coroutine functions run as tasks while the app serves (an `AliasFollower`'s, a
    `Rollout`'s `run`), cancelled at shutdown before the queues drain. `max_request_bytes`: larger inference
    request bodies get 413.
    """
    from modelyard import __version__

    observer: ServingMetrics | None = None
    if metrics is True:
        from modelyard.serving.metrics import ServingMetrics

        observer = ServingMetrics()
    elif metrics is not False:
        observer = metrics
    if observer is not None:
        deployment.attach_metrics(observer)
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

    def routed(request: Request) -> ServedModel:
        params = request.path_params
        return deployment.route(params["model"], params.get("version"))

    async def predict(model: ServedModel, call: _Call, payload: Payload) -> Any:
        """`model`'s output for `payload`; a copy goes to the shadows when the request was routed."""
        call.payload = payload
        if call.mirrored:
            call.mirror = deployment.router.mirror(model, payload, call.shadow_log)
        call.output = await model.batcher.submit(payload)
        return call.output

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
            decoded.id = request.headers.get(REQUEST_ID_HEADER) or protocol.new_request_id()
        call.request_id = decoded.id
        signature = model.signature
        payload = from_tensors(signature.inputs if signature else None, decoded.tensors)
        output = await predict(model, call, payload)
        return json_response(protocol.encode_v2(model.name, model.version, decoded, output, signature))

    async def v1_metadata(request: Request) -> Response:
        model = model_of(request)
        return json_response({"name": model.name, "ready": model.ready})

    async def v1_predict(request: Request, model: ServedModel, call: _Call) -> Response:
        signature = model.signature
        payload = protocol.decode_v1(await request.body(), signature.inputs if signature else None)
        output = await predict(model, call, payload)
        return json_response(protocol.predictions(output))

    def default_model(request: Request) -> ServedModel:
        return deployment.route(deployment.models[0].name)  # the first model's primary or canary

    async def invocations(request: Request, model: ServedModel, call: _Call) -> Response:
        signature = model.signature
        payload = protocol.decode_invocations(
            await request.body(), request.headers.get("content-type"), signature.inputs if signature else None
        )
        output = await predict(model, call, payload)
        return json_response(protocol.predictions(output))

    def record(
        call: _Call, model: ServedModel, protocol_name: str, status: int, latency: float, error: str | None,
        outputs: Any, role: str,
    ) -> PayloadRecord:  # fmt: skip
        payload, signature = call.payload, model.signature
        return PayloadRecord(
            request_id=call.request_id or protocol.new_request_id(),
            timestamp=call.arrived,
            model=model.name,
            version=model.version,
            protocol=protocol_name,
            status=status,
            latency=latency,
            error=error,
            inputs=payload.inputs if payload is not None else None,
            outputs=outputs,
            rows=payload.rows if payload is not None else 1,
            input_schema=signature.inputs if signature is not None else None,
            output_schema=signature.outputs if signature is not None else None,
            role=role,
        )

    def inference(
        name: str, resolve: Callable[[Request], ServedModel], handler: InferenceHandler
    ) -> Endpoint:
        """`handler` answering for the model `resolve` finds, counted in the metrics and payload log."""

        def log_shadow(call: _Call, result: ShadowResult) -> None:
            assert payloads is not None
            error = result.error
            status, message = (200, None) if error is None else (error.http_status, error.message)
            payloads.log(
                record(call, result.shadow, name, status, result.seconds, message, result.output, "shadow")
            )

        async def endpoint(request: Request) -> Response:
            started = time.perf_counter()
            try:
                model = resolve(request)
            except ModelyardError as exc:
                if observer is not None:
                    observer.unknown(name).observe(exc.http_status, time.perf_counter() - started, exc.code)
                return error_response(exc)
            role = model.role
            observed = observer.endpoint(model, name) if observer is not None else None
            logged = payloads is not None and payloads.sampled()
            call = _Call(mirrored="version" not in request.path_params)
            if logged:
                call.arrived = time.time()
                call.shadow_log = lambda result: log_shadow(call, result)
            error: ModelyardError | None = None
            status = 500  # unless the handler answers
            model.in_flight += 1
            if observed is not None:
                observed.start()
            try:
                refused = request.scope.get(REFUSED)
                if refused is not None:
                    raise refused
                response = await handler(request, model, call)
                status = response.status_code
            except ModelyardError as exc:
                error, response, status = exc, error_response(exc), exc.http_status
            except Exception:
                if observed is not None:  # Starlette answers 500
                    observed.observe(500, time.perf_counter() - started, "INTERNAL_ERROR")
                raise
            finally:
                model.in_flight -= 1
                if observed is not None:
                    observed.stop()
                elapsed = time.perf_counter() - started
                deployment.router.observe(model, status, elapsed)
                if logged and call.request_id is None:  # the payload log's (and the shadows') key
                    call.request_id = request.headers.get(REQUEST_ID_HEADER) or protocol.new_request_id()
                if call.mirror is not None:  # the shadows compare with this answer (None: it failed)
                    call.mirror.answered(call.output if error is None else None)
            if observed is not None:
                observed.observe(response.status_code, elapsed, error.code if error is not None else None)
            if logged:
                assert payloads is not None
                message = error.message if error is not None else None
                payloads.log(
                    record(call, model, name, response.status_code, elapsed, message, call.output, role)
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

    v2_endpoint = inference("v2", routed, infer)
    v1_endpoint = inference("v1", routed, v1_predict)
    invocations_endpoint = inference("invocations", default_model, invocations)
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
                Route(prefix + "/infer", v2_endpoint, methods=["POST"]),
            )
        ),
        route("/v1/models/{model}", v1_metadata),
        Route("/v1/models/{model}:predict", v1_endpoint, methods=["POST"]),
        Route("/invocations", invocations_endpoint, methods=["POST"]),
        route("/ping", ping),
        route("/health", ping),
    ]
    if observer is not None:
        routes.append(route("/metrics", metrics_endpoint))

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = [asyncio.ensure_future(work()) for work in background]
        for task in tasks:
            task.add_done_callback(_report_failure)
        app.state.tasks = tasks
        yield
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
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

    app = ServingApp(routes=routes, lifespan=lifespan, exception_handlers={HTTPException: http_error})
    app.hot = {"invocations": invocations_endpoint, "v2": v2_endpoint, "v1": v1_endpoint}
    app.max_request_bytes = max_request_bytes
    app.state.deployment = deployment
    app.state.metrics = observer
    app.state.payload_log = payloads
    return app
