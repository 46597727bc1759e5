"""Artifacts in Google Cloud Storage (or a GCS emulator such as fake-gcs-server) through gcsfs.

Credentials: the `gcs_token` setting (MODELYARD_GCS_TOKEN); by default Application Default Credentials
(`google_default`: GOOGLE_APPLICATION_CREDENTIALS, `gcloud auth application-default login`, or the
metadata server on Google Cloud), and anonymous access when an endpoint is set (`gcs_endpoint_url`,
MODELYARD_GCS_ENDPOINT_URL, falling back to STORAGE_EMULATOR_HOST), as emulators take no credentials.

Uploads over one part go up as resumable uploads in parts of `PART_SIZE`; downloads stream in one
request; reads stream with a readahead of one part. So a transfer holds about one part in memory
whatever the file size (gcsfs's defaults: 50 MiB parts, and concurrent ranged downloads of big files).

The store uses gcsfs's JSON-API file system (`gcsfs.core.GCSFileSystem`), not the experimental
`ExtendedGcsFileSystem` that `gcsfs.GCSFileSystem` names by default: that one first asks a gRPC control
API for each bucket's layout (zonal/hierarchical), which an emulator cannot answer (a minute's timeout
per bucket), and which plain object reads and writes do not need.
"""

from __future__ import annotations

import asyncio
import os
from functools import lru_cache
from typing import Any

import aiohttp
import google.auth.exceptions
from fsspec.asyn import _run_coros_in_chunks, sync
from fsspec.exceptions import FSTimeoutError
from gcsfs.core import GCSFileSystem
from gcsfs.retry import HttpError

from modelyard import config
from modelyard.artifacts.bucket import BucketArtifactStore
from modelyard.errors import ModelyardError, PermissionDenied, Unauthenticated, Unavailable

PART_SIZE = 8 * 2**20  # resumable-upload parts must be multiples of 256 KiB
_DELETE_BATCH = 32  # object deletes in flight at once
_UNREACHABLE = (aiohttp.ClientConnectionError, TimeoutError, asyncio.TimeoutError, FSTimeoutError)


def endpoint_url() -> str | None:
    """The configured endpoint as a URL (STORAGE_EMULATOR_HOST is often a bare host:port)."""
    endpoint: str | None = config.get("gcs_endpoint_url")
    if not endpoint:
        return None
    endpoint = endpoint.rstrip("/")
    return endpoint if endpoint.startswith(("http://", "https://")) else f"http://{endpoint}"


@lru_cache(maxsize=16)
def _filesystem(endpoint: str | None, token: str, credentials_file: str | None) -> GCSFileSystem:
    """One file system (one connection pool) per endpoint and credentials.

    `credentials_file` (GOOGLE_APPLICATION_CREDENTIALS) is part of the key only: Application Default
    Credentials read it themselves, and a changed variable must not reuse the old credentials.
    """
    del credentials_file
    return GCSFileSystem(
        endpoint_url=endpoint,
        token=token,
        default_block_size=PART_SIZE,
        use_listings_cache=False,  # other processes write the same prefixes; never trust a stale listing
        requests_timeout=120,
        skip_instance_cache=True,  # cached here, by the key above
    )


class GCSArtifactStore(BucketArtifactStore):
    """Artifacts as objects under `gs://bucket/prefix`."""

    scheme = "gs"
    service = "GCS"
    credentials_hint = (
        "Check the credentials in GOOGLE_APPLICATION_CREDENTIALS (or MODELYARD_GCS_TOKEN) and their role "
        "on the bucket (roles/storage.objectAdmin)."
    )
    part_size = PART_SIZE

    def __init__(self, root_uri: str) -> None:
        super().__init__(root_uri)
        self.endpoint_url = endpoint_url()
        token: str | None = config.get("gcs_token")
        self.token = token or ("anon" if self.endpoint_url else "google_default")

    def _make_fs(self) -> GCSFileSystem:
        return _filesystem(self.endpoint_url, self.token, os.environ.get("GOOGLE_APPLICATION_CREDENTIALS"))

    def _backend_error(self, error: Exception, where: str) -> ModelyardError | None:
        if isinstance(error, google.auth.exceptions.DefaultCredentialsError):
            return Unauthenticated(
                f"No GCS credentials for {where}: set GOOGLE_APPLICATION_CREDENTIALS to a service-account "
                f"key file, run `gcloud auth application-default login`, or set MODELYARD_GCS_TOKEN ({error})."
            )
        if isinstance(error, google.auth.exceptions.GoogleAuthError) or (
            isinstance(error, HttpError) and error.code == 401
        ):
            return Unauthenticated(f"GCS did not accept the credentials for {where}: {error}")
        if type(error) is OSError and str(error).startswith("Forbidden"):  # gcsfs's 403
            return PermissionDenied(f"Access denied to {where}: {error}. {self.credentials_hint}")
        if isinstance(error, _UNREACHABLE) or (isinstance(error, HttpError) and (error.code or 0) >= 500):
            endpoint = self.endpoint_url or "the default GCS endpoint"
            return Unavailable(f"Cannot reach GCS at {endpoint} for {where}: {error}")
        return None

    def _put_options(self, size: int) -> dict[str, Any]:
        return {"chunksize": PART_SIZE}

    def _get_options(self) -> dict[str, Any]:
        return {"concurrency": 1}  # one streaming request: bounded memory (concurrent: whole parts held)

    def _delete_keys(self, keys: list[str]) -> None:
        """Object deletes, `_DELETE_BATCH` at a time (emulators take no batch requests); missing is fine."""
        fs = self._fs
        coros = [fs._rm_file(f"{self.bucket}/{key}") for key in keys]
        results = sync(fs.loop, _run_coros_in_chunks, coros, batch_size=_DELETE_BATCH, return_exceptions=True)
        for result in results:
            if isinstance(result, BaseException) and not isinstance(result, FileNotFoundError):
                raise result
