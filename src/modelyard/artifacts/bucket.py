"""What the object-storage backends (S3, GCS) share: artifacts as objects under `<scheme>://bucket/prefix`,
reached through an fsspec file system (s3fs, gcsfs).

A backend says how to build its file system, how to delete a batch of keys, and how to turn its
library's errors into Modelyard errors; listing, transfers with progress bars, staging downloads and
the folder/file rules live here once.
"""

from __future__ import annotations

import abc
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property
from pathlib import Path
from typing import Any, BinaryIO, ClassVar
from urllib.parse import urlsplit

from fsspec.asyn import AsyncFileSystem
from fsspec.callbacks import Callback

from modelyard.artifacts.base import ArtifactStore, check_length, normalize_artifact_path
from modelyard.artifacts.local import staged_file
from modelyard.artifacts.progress import TransferProgress
from modelyard.errors import InvalidArgument, ModelyardError, NotFound, PermissionDenied
from modelyard.schemas.artifacts import FileInfo


def _depth(rel: str) -> int:
    return rel.count("/") + 1 if rel else 0


class ProgressCallback(Callback):
    """Feeds fsspec's transfer callbacks into a `TransferProgress`."""

    def __init__(self, progress: TransferProgress) -> None:
        super().__init__()
        self._progress = progress

    def set_size(self, size: int | None) -> None:
        super().set_size(size)
        self._progress.set_total(size)

    def relative_update(self, inc: int = 1) -> None:
        super().relative_update(inc)
        self._progress.advance(inc)

    def absolute_update(self, value: int) -> None:  # gcsfs reports uploads as bytes done so far
        self.relative_update(value - (self.value or 0))


class BucketArtifactStore(ArtifactStore):
    """Artifacts as objects under `<scheme>://bucket/prefix`; the file system is made on first use."""

    scheme: ClassVar[str]  # "s3", "gs"
    service: ClassVar[str]  # for messages: "S3", "GCS"
    credentials_hint: ClassVar[str]  # what to check when access is denied
    part_size: ClassVar[int]  # readahead of `open_read`; backends also upload in parts of this size

    def __init__(self, root_uri: str) -> None:
        super().__init__(root_uri)
        parts = urlsplit(root_uri)
        if parts.scheme.lower() != self.scheme or not parts.netloc:
            raise InvalidArgument(
                f"Not a {self.service} URI: {root_uri!r}; expected {self.scheme}://bucket/prefix."
            )
        self.bucket = parts.netloc
        self.prefix = normalize_artifact_path(parts.path.lstrip("/"))

    # -- what a backend implements ---------------------------------------------------------------------------

    @abc.abstractmethod
    def _make_fs(self) -> AsyncFileSystem:
        """The file system, from the current settings (called once per store, inside `_errors`)."""

    @abc.abstractmethod
    def _delete_keys(self, keys: list[str]) -> None:
        """Delete these object keys (not fs paths), in order; keys that do not exist are no error."""

    @abc.abstractmethod
    def _backend_error(self, error: Exception, where: str) -> ModelyardError | None:
        """The Modelyard error for a library error (None: not ours to translate, re-raised as is)."""

    def _put_options(self, size: int) -> dict[str, Any]:
        """Extra arguments for the file system's `put_file` of a file of `size` bytes."""
        return {}

    def _get_options(self) -> dict[str, Any]:
        """Extra arguments for the file system's `get_file`."""
        return {}

    # -- shared ----------------------------------------------------------------------------------------------

    @cached_property
    def _fs(self) -> AsyncFileSystem:
        return self._make_fs()

    def _object_key(self, rel: str) -> str:
        """The object key ("prefix/rel") of artifact `rel`; with the prefix, it must still fit the limit."""
        key = "/".join(p for p in (self.prefix, rel) if p)
        if rel and self.prefix:
            check_length(key)
        return key

    def _key(self, rel: str) -> str:
        """The fsspec path ("bucket/prefix/rel") of artifact `rel`."""
        return "/".join(p for p in (self.bucket, self._object_key(rel)) if p)

    @contextmanager
    def _errors(self, rel: str) -> Iterator[None]:
        """Turn library errors into Modelyard errors that say which bucket and path."""
        where = f"{self.root_uri}/{rel}".rstrip("/")
        try:
            yield
        except ModelyardError:
            raise
        except FileNotFoundError as e:
            raise NotFound(f"No artifact {where} ({e}).") from e
        except PermissionError as e:
            raise PermissionDenied(f"Access denied to {where}: {e}. {self.credentials_hint}") from e
        except Exception as e:
            mapped = self._backend_error(e, where)
            if mapped is None:
                raise
            raise mapped from e

    def _put_file(self, local_path: Path, rel: str) -> None:
        size, key = local_path.stat().st_size, self._key(rel)  # the key first: it may be too long
        with self._errors(rel), TransferProgress(local_path.name, total=size) as progress:
            self._fs.put_file(
                str(local_path), key, callback=ProgressCallback(progress), **self._put_options(size)
            )

    def _get_file(self, rel: str, local_path: Path) -> None:
        key = self._key(rel)
        try:
            with (
                self._errors(rel),
                staged_file(local_path) as tmp,
                TransferProgress(rel.rsplit("/", 1)[-1]) as progress,
            ):
                self._fs.get_file(key, str(tmp), callback=ProgressCallback(progress), **self._get_options())
        except NotFound:
            self._require_file(rel)  # a folder answers "no such object" too: say so (a HEAD on errors only)
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
            # Some servers keep an empty folder as a "folder/" object (SeaweedFS; S3 and GCS consoles make
            # such markers too): delete those after the files, deepest first. Usually they do not exist.
            markers = [self._object_key(f) + "/" for f in sorted(folders, key=_depth, reverse=True)]
            self._delete_keys([self._object_key(f) for f in files] + markers)

    def _exists(self, rel: str) -> bool:
        key = self._key(rel)
        with self._errors(rel):
            return bool(self._fs.exists(key))

    def _require_file(self, rel: str) -> dict[str, Any]:
        key = self._key(rel)
        with self._errors(rel):
            info: dict[str, Any] = self._fs.info(key)
        if info["type"] == "directory":
            raise InvalidArgument(f"Artifact {rel!r} is a folder, not a file; use download() for folders.")
        return info

    def _open_read(self, rel: str) -> BinaryIO:
        size, key = self._require_file(rel)["size"], self._key(rel)
        with self._errors(rel):
            # Readahead of one part at a time: sequential reads stream with bounded memory.
            f: BinaryIO = self._fs.open(
                key, "rb", block_size=self.part_size, cache_type="readahead", size=size
            )
        return f
