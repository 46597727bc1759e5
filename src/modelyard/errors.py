"""One exception root for Modelyard; every error carries a stable code and the HTTP status it maps to.

The server turns any `ModelyardError` into `{"error_code": code, "message": ...}` with `http_status`;
the CLI prints `message` without a traceback. Nothing else decides how an error is presented.
"""

from __future__ import annotations

from typing import ClassVar


class ModelyardError(Exception):
    """Root of every error Modelyard raises on purpose."""

    code: ClassVar[str] = "INTERNAL_ERROR"
    http_status: ClassVar[int] = 500

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def to_dict(self) -> dict[str, str]:
        return {"error_code": self.code, "message": self.message}


class InvalidArgument(ModelyardError):
    """The caller passed something malformed: a bad name, value, filter or path."""

    code = "INVALID_PARAMETER_VALUE"
    http_status = 400


class NotFound(ModelyardError):
    code = "RESOURCE_DOES_NOT_EXIST"
    http_status = 404


class AlreadyExists(ModelyardError):
    code = "RESOURCE_ALREADY_EXISTS"
    http_status = 409


class Conflict(ModelyardError):
    """The request contradicts stored state (e.g. changing an immutable param)."""

    code = "CONFLICT"
    http_status = 409


class InvalidState(ModelyardError):
    """The resource exists but is in a state that forbids the operation (e.g. a deleted experiment)."""

    code = "INVALID_STATE"
    http_status = 400


class Unauthenticated(ModelyardError):
    code = "UNAUTHENTICATED"
    http_status = 401


class PermissionDenied(ModelyardError):
    code = "PERMISSION_DENIED"
    http_status = 403


class GateFailed(ModelyardError):
    """A promotion (stage transition or alias move) that the model's gate policy refuses."""

    code = "GATE_FAILED"
    http_status = 409


class PayloadTooLarge(ModelyardError):
    code = "PAYLOAD_TOO_LARGE"
    http_status = 413


class SchemaOutdated(ModelyardError):
    """The database was written by an older Modelyard; `modelyard db upgrade` migrates it."""

    code = "SCHEMA_OUTDATED"
    http_status = 503


class Unavailable(ModelyardError):
    """A backing service (database, object store, server) cannot be reached right now; retrying may work."""

    code = "TEMPORARILY_UNAVAILABLE"
    http_status = 503


ALL_ERRORS: tuple[type[ModelyardError], ...] = (
    ModelyardError,
    InvalidArgument,
    NotFound,
    AlreadyExists,
    Conflict,
    InvalidState,
    Unauthenticated,
    PermissionDenied,
    GateFailed,
    PayloadTooLarge,
    SchemaOutdated,
    Unavailable,
)


def error_for_code(code: str) -> type[ModelyardError]:
    """The error class for a wire `error_code`, so a remote client re-raises what the server raised."""
    for cls in ALL_ERRORS:
        if cls.code == code:
            return cls
    return ModelyardError
