"""Artifacts in S3 or an S3-compatible server (MinIO, SeaweedFS) through s3fs.

Credentials come from the usual AWS sources (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY, profiles, roles);
the endpoint from the `s3_endpoint_url` setting. Big files move as multipart uploads and ranged
downloads of `PART_SIZE` bytes, `CONCURRENCY` parts at a time. aiohttp holds each part in flight twice,
so a transfer needs about 2 x PART_SIZE x CONCURRENCY (~32-40 MiB measured) whatever the file size;
s3fs's defaults (50 MiB x 10) would hold about 1 GB.
"""

from __future__ import annotations

import math
import os
from typing import Any

import botocore.exceptions
import s3fs
from fsspec.exceptions import FSTimeoutError

from modelyard import config
from modelyard.artifacts.bucket import BucketArtifactStore
from modelyard.errors import ModelyardError, Unauthenticated, Unavailable

PART_SIZE = 8 * 2**20  # S3 allows 5 MiB..5 GiB per part; files under 2 parts go up in one request
CONCURRENCY = 2
_MAX_PARTS = 10_000  # S3's limit: parts grow for files over PART_SIZE x 10,000 (80 GiB)
_UNREACHABLE = (
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
    TimeoutError,
    FSTimeoutError,
)


class S3ArtifactStore(BucketArtifactStore):
    """Artifacts as objects under `s3://bucket/prefix`."""

    scheme = "s3"
    service = "S3"
    credentials_hint = "Check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY."
    part_size = PART_SIZE

    def __init__(self, root_uri: str) -> None:
        super().__init__(root_uri)
        self.endpoint_url: str | None = config.get("s3_endpoint_url")

    def _make_fs(self) -> s3fs.S3FileSystem:
        # s3fs caches file systems by these arguments, so stores on one endpoint share a connection pool.
        return s3fs.S3FileSystem(
            endpoint_url=self.endpoint_url,
            # Passed explicitly so the cached file system changes when these env vars do; when unset,
            # botocore's own chain (profiles, instance roles) applies.
            key=os.environ.get("AWS_ACCESS_KEY_ID") or None,
            secret=os.environ.get("AWS_SECRET_ACCESS_KEY") or None,
            token=os.environ.get("AWS_SESSION_TOKEN") or None,
            default_block_size=PART_SIZE,
            max_concurrency=CONCURRENCY,
            use_listings_cache=False,  # other processes write the same prefixes; never trust a stale listing
            config_kwargs={
                "connect_timeout": 10,
                "read_timeout": 120,
                "retries": {"max_attempts": 3, "mode": "standard"},
            },
        )

    def _backend_error(self, error: Exception, where: str) -> ModelyardError | None:
        if isinstance(error, botocore.exceptions.NoCredentialsError):
            return Unauthenticated(
                f"No S3 credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."
            )
        if isinstance(error, _UNREACHABLE):
            endpoint = self.endpoint_url or "the default AWS endpoint"
            return Unavailable(f"Cannot reach S3 at {endpoint} (bucket {self.bucket!r}): {error}")
        return None

    def _put_options(self, size: int) -> dict[str, Any]:
        return {"chunksize": max(PART_SIZE, math.ceil(size / _MAX_PARTS))}

    def _delete_keys(self, keys: list[str]) -> None:
        """DeleteObjects, in order, 1000 keys per request (the S3 limit)."""
        for start in range(0, len(keys), 1000):
            batch = [{"Key": k} for k in keys[start : start + 1000]]
            out = self._fs.call_s3(
                "delete_objects", Bucket=self.bucket, Delete={"Objects": batch, "Quiet": True}
            )
            if out.get("Errors"):
                raise ModelyardError(
                    f"S3 refused to delete {len(out['Errors'])} keys under {self.root_uri}: {out['Errors'][0]}"
                )
