"""Authentication and the audit log, as one ASGI middleware (installed only with `--auth`).

Every request but the health checks and the API docs must carry an API token, either as
`Authorization: Bearer <token>` (Modelyard clients with MODELYARD_TOKEN, MLflow clients with
MLFLOW_TRACKING_TOKEN) or as HTTP Basic with the token as password (MLflow clients with
MLFLOW_TRACKING_USERNAME/PASSWORD). The request's principal goes into the ASGI scope's state, where the
routes' store (`routes.store`) picks it up. Every write request, refused ones included, leaves one audit
entry after its response: who, method, path, the resources it touched, status, client address, when. The
one exception is an accepted deployment heartbeat: it changes nothing but a liveness time, and each model
server sends one every 30 s (as Kubernetes audit policies leave out node lease renewals).
"""

from __future__ import annotations

import base64
import binascii
import logging
import time

from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from modelyard.errors import Unauthenticated
from modelyard.server.authz import Authorizer, Principal

PUBLIC_PATHS = frozenset({"/", "/health", "/ready", "/api/v1/openapi.json", "/api/v1/docs"})
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
log = logging.getLogger("modelyard.server.audit")

_MISSING = (
    "Authentication required: send an API token as 'Authorization: Bearer <token>' (set MODELYARD_TOKEN for "
    "Modelyard clients, MLFLOW_TRACKING_TOKEN for MLflow's). Create one with: modelyard tokens create"
)


def token_from(header: str | None) -> tuple[str, str | None]:
    """(token, username given with it) from an Authorization header value."""
    if not header:
        raise Unauthenticated(_MISSING)
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() == "bearer" and value:
        return value, None
    if scheme.lower() == "basic" and value:
        try:
            username, sep, password = base64.b64decode(value, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            raise Unauthenticated(
                "Malformed Basic credentials: expected base64 of 'username:token'."
            ) from None
        if sep and password:
            return password, username
    # Never quote the header: without a scheme (or with a typo in it) its first word is the token itself.
    raise Unauthenticated(
        "Unsupported Authorization header (not shown: it may hold a credential). Send the API token as "
        "'Authorization: Bearer <token>' (set MODELYARD_TOKEN for Modelyard clients, MLFLOW_TRACKING_TOKEN for "
        "MLflow's), or as the password of HTTP Basic credentials. Create one with: modelyard tokens create"
    )


class AuthMiddleware:
    def __init__(self, app: ASGIApp, authz: Authorizer) -> None:
        self.app, self.authz = app, authz

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in PUBLIC_PATHS:
            return await self.app(scope, receive, send)
        write = scope["method"] not in READ_METHODS
        principal: Principal | None = None
        targets: list[str] = []
        status = 500

        async def tracked_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            try:
                principal = await self._principal(scope)
            except Unauthenticated as exc:
                return await _refuse(exc, tracked_send)
            state = scope.setdefault("state", {})
            state["principal"], state["audit_targets"] = principal, targets
            await self.app(scope, receive, tracked_send)
        finally:
            if write and not (status < 400 and _is_heartbeat(scope["path"])):
                await self._audit(scope, principal, targets, status)

    async def _principal(self, scope: Scope) -> Principal:
        header = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
                break
        token, username = token_from(header)
        principal = self.authz.cached_principal(token)
        if principal is None:
            principal = await run_in_threadpool(self.authz.authenticate, token)
        if username is not None and username != principal.username:
            raise Unauthenticated(  # the username sent is not quoted: it may hold a credential by mistake
                f"This token belongs to {principal.username!r}, not to the username sent with it."
            )
        return principal

    async def _audit(self, scope: Scope, who: Principal | None, targets: list[str], status: int) -> None:
        client = scope.get("client")
        entry = {
            "time": int(time.time() * 1000),
            "username": who.username if who else None,
            "method": scope["method"],
            "path": scope["path"][:2000],
            "targets": " ".join(targets)[:2000],
            "status": status,
            "client": client[0][:64] if client else None,
        }
        try:
            await run_in_threadpool(self.authz.accounts.record_audit, [entry])
        except Exception:  # the write itself is done: a failed audit insert is logged, not raised
            log.exception("Could not record audit entry %s", entry)


def _is_heartbeat(path: str) -> bool:
    return path.startswith("/api/v1/deployments/") and path.endswith("/heartbeat")


async def _refuse(exc: Unauthenticated, send: Send) -> None:
    import json

    body = json.dumps(exc.to_dict()).encode()
    await send(
        {
            "type": "http.response.start",
            "status": exc.http_status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(body)).encode()),
                (b"www-authenticate", b'Bearer realm="modelyard", Basic realm="modelyard"'),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})
