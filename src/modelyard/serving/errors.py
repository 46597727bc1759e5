"""Errors only the model server raises; each maps to one HTTP status like every `ModelyardError`.

The server answers every error as `{"error": message}` with the error's `http_status` (503 adds Retry-After).
"""

from __future__ import annotations

from modelyard.errors import ModelyardError, Unavailable


class Overloaded(Unavailable):
    """The model's queue is full: the client should retry after `retry_after` seconds (503 + Retry-After)."""

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DeadlineExceeded(ModelyardError):
    """A request waited and ran longer than the server's per-request timeout."""

    code = "DEADLINE_EXCEEDED"
    http_status = 504


class ModelFailed(ModelyardError):
    """The model raised while predicting on this request's inputs."""

    code = "MODEL_ERROR"
    http_status = 500


class ReplicaCrashed(ModelFailed):
    """A replica's worker process died while predicting this request's batch (and is being replaced).

    The batch fails whole instead of being retried request by request: the request that killed the replica
    (a segfault, the OOM killer) would take the next one down too.
    """


class UnsupportedMediaType(ModelyardError):
    code = "UNSUPPORTED_MEDIA_TYPE"
    http_status = 415
