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
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urlsplit

import botocore.exceptions
import s3fs
from fsspec.callbacks import Callback
from fsspec.exceptions import FSTimeoutError

from modelyard import config
from modelyard.artifacts.base import ArtifactStore, check_length, normalize_artifact_path
from modelyard.artifacts.local import staged_file
from modelyard.artifacts.progress import TransferProgress
from modelyard.errors import (
    InvalidArgument,
    ModelyardError,
    NotFound,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from modelyard.schemas.artifacts import FileInfo

PART_SIZE = 8 * 2**20  # S3 allows 5 MiB..5 GiB per part; files under 2 parts go up in one request
CONCURRENCY = 2
_MAX_PARTS = 10_000  # S3's limit: parts grow for files over PART_SIZE x 10,000 (80 GiB)
_UNREACHABLE = (
    botocore.exceptions.ConnectionError,
    botocore.exceptions.HTTPClientError,
    TimeoutError,
    FSTimeoutError,
)


def _depth(rel: str) -> int:
    return rel.count("/") + 1 if rel else 0


class _ProgressCallback(Callback):
    """Feeds s3fs's transfer callbacks into a `TransferProgress`."""

    def __init__(self, progress: TransferProgress) -> None:
        super().__init__()
        self._progress = progress

    def set_size(self, size: int | None) -> None:
        super().set_size(size)
        self._progress.set_total(size)

    def relative_update(self, inc: int = 1) -> None:
        super().relative_update(inc)
        self._progress.advance(inc)


class S3ArtifactStore(ArtifactStore):
    """Artifacts as objects under `s3://bucket/prefix`."""

    def __init__(self, root_uri: str) -> None:
        super().__init__(root_uri)
        parts = urlsplit(root_uri)
        if parts.scheme.lower() != "s3" or not parts.netloc:
            raise InvalidArgument(f"Not an S3 URI: {root_uri!r}; expected s3://bucket/prefix.")
        self.bucket = parts.netloc
        self.prefix = normalize_artifact_path(parts.path.lstrip("/"))
        self.endpoint_url: str | None = config.get("s3_endpoint_url")
        # s3fs caches file systems by these arguments, so stores on one endpoint share a connection pool.
        self._fs = s3fs.S3FileSystem(
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

    def _object_key(self, rel: str) -> str:
        """The S3 key ("prefix/rel") of artifact `rel`; with the prefix, it must still fit S3's limit."""
        key = "/".join(p for p in (self.prefix, rel) if p)
        if rel and self.prefix:
            check_length(key)
        return key

    def _key(self, rel: str) -> str:
        """The s3fs path ("bucket/prefix/rel") of artifact `rel`."""
        return "/".join(p for p in (self.bucket, self._object_key(rel)) if p)

    @contextmanager
    def _errors(self, rel: str) -> Iterator[None]:
        """Turn s3fs/botocore errors into Modelyard errors that say which endpoint, bucket and path."""
        where = f"{self.root_uri}/{rel}".rstrip("/")
        try:
            yield
        except FileNotFoundError as e:
            raise NotFound(f"No artifact {where} ({e}).") from e
        except PermissionError as e:
            raise PermissionDenied(
                f"Access denied to {where}: {e}. Check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY."
            ) from e
        except botocore.exceptions.NoCredentialsError as e:
            raise Unauthenticated(
                f"No S3 credentials for {where}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY."
            ) from e
        except _UNREACHABLE as e:
            endpoint = self.endpoint_url or "the default AWS endpoint"
            raise Unavailable(f"Cannot reach S3 at {endpoint} (bucket {self.bucket!r}): {e}") from e

    def _put_file(self, local_path: Path, rel: str) -> None:
        size = local_path.stat().st_size
        part = max(PART_SIZE, math.ceil(size / _MAX_PARTS))
        with self._errors(rel), TransferProgress(local_path.name, total=size) as progress:
            self._fs.put_file(
                str(local_path), self._key(rel), callback=_ProgressCallback(progress), chunksize=part
            )

    def _get_file(self, rel: str, local_path: Path) -> None:
        try:
            with (
                self._errors(rel),
                staged_file(local_path) as tmp,
                TransferProgress(rel.rsplit("/", 1)[-1]) as progress,
            ):
                self._fs.get_file(self._key(rel), str(tmp), callback=_ProgressCallback(progress))
        except NotFound:
            self._require_file(rel)  # a folder answers NoSuchKey too: say so (a HEAD on errors only)
            raise

    def _list(self, rel: str) -> list[FileInfo]:
        key = self._key(rel)
        with self._errors(rel):
            try:
                entries: list[dict[str, Any]] = self._fs.ls(key, detail=True)
            except FileNotFoundError:
                return []
        cut = len(self._key("")) + 1
        infos = [
            FileInfo(
                path=e["name"][cut:],
                is_dir=e["type"] == "directory",
                file_size=None if e["type"] == "directory" else int(e["size"]),
            )
            for e in entries
            # `ls` of a file lists the file itself, and folder markers ("a/") are not files.
            if e["name"].startswith(key + "/") and not e["name"].endswith("/")
        ]
        return sorted(infos, key=lambda f: f.path)

    def _delete(self, rel: str) -> None:
        files: list[str] = []
        folders: list[str] = []
        pending = [rel]
        with self._errors(rel):
            # Walk folder by folder, not one flat listing: only that shows SeaweedFS's empty folders.
            while pending:
                for info in self._list(pending.pop()):
                    (folders if info.is_dir else files).append(info.path)
                    if info.is_dir:
                        pending.append(info.path)
            if rel and not files and not folders:
                files.append(rel)  # a file, or nothing (deleting a missing key is a no-op)
            if self._key(rel) != self.bucket:
                folders.append(rel)  # never the bucket itself: a root at the bucket top only empties it
            # Some servers keep an empty folder as a "folder/" entry (SeaweedFS; S3 consoles make such
            # markers too): delete those after the files, deepest first. On plain S3 they do not exist.
            markers = [self._object_key(f) + "/" for f in sorted(folders, key=_depth, reverse=True)]
            self._delete_keys([self._object_key(f) for f in files] + markers)

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

    def _exists(self, rel: str) -> bool:
        with self._errors(rel):
            return bool(self._fs.exists(self._key(rel)))

    def _require_file(self, rel: str) -> dict[str, Any]:
        with self._errors(rel):
            info: dict[str, Any] = self._fs.info(self._key(rel))
        if info["type"] == "directory":
            raise InvalidArgument(f"Artifact {rel!r} is a folder, not a file; use download() for folders.")
        return info

    def _open_read(self, rel: str) -> BinaryIO:
        size = self._require_file(rel)["size"]
        with self._errors(rel):
            # Readahead of one part at a time: sequential reads stream with bounded memory.
            f: BinaryIO = self._fs.open(
                self._key(rel), "rb", block_size=PART_SIZE, cache_type="readahead", size=size
            )
        return f
