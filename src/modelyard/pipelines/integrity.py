"""Stored step outputs checked against the SHA-256 recorded when their step wrote them.

Every output's manifest entry carries the SHA-256 of its bytes (for a folder: of its files' paths and
hashes, see `serialize.folder_digest`). Whatever reads an output back checks it in the same pass over the
bytes: `fetch` hashes while it copies the output out of the artifact store (the format's loader then reads
the local copy), `stored_digest` hashes in the store without keeping a copy (a cache hit's check). So a
large output costs one read, and an output overwritten or truncated after it was written is never used:

- a cache hit, or a step that `resume` would reuse, whose outputs do not match is a miss: the step runs
  again, with a `CorruptOutputWarning` naming the file and both digests (`cache.outputs_intact`);
- a step whose input no longer matches (it changed during the run, after the check above) fails with
  `CorruptOutput` naming the file, and is not retried; `resume` then recomputes the input's producer.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

from modelyard.errors import InvalidState, NotFound
from modelyard.pipelines.serialize import folder_digest

FOLDER_FORMATS = ("model", "file", "dir")  # stored as a folder (a "file" output: a folder holding the file)
_CHUNK = 1 << 20


class CorruptOutputWarning(UserWarning):
    """A cached step output no longer matched the SHA-256 recorded for it: it was not used."""


class CorruptOutput(InvalidState):
    """A stored step output whose bytes no longer match the SHA-256 recorded when its step wrote it."""

    def __init__(self, location: str, expected: str, actual: str, detail: str = "") -> None:
        self.location, self.expected, self.actual, self.detail = location, expected, actual, detail
        super().__init__(
            f"{location}{detail} has SHA-256 {actual}, not the {expected} recorded when its step wrote it: "
            "it was changed or damaged since. A new run or `modelyard pipelines resume` computes it again."
        )

    def __reduce__(self) -> tuple[Any, ...]:  # pickled (another process) with the same fields
        return type(self), (self.location, self.expected, self.actual, self.detail)


def location(store: Any, path: str) -> str:
    """Where an artifact lives, as a user can find it: a local path, else the store's URI."""
    from modelyard.artifacts.base import join_uri

    root = getattr(store, "root", None)  # a local store's folder
    if isinstance(root, Path):
        return str(root.joinpath(*path.split("/")))
    return join_uri(str(store.root_uri), path)


def stored_digest(store: Any, path: str, fmt: str) -> str:
    """The SHA-256 of output `path` (format `fmt`) as stored, in one streamed pass, nothing kept.
    NotFound when it is gone."""

    def hash_one(file: str) -> str:
        with store.open_read(file) as source:
            return _copy(source, None)

    return _digest(store, path, fmt, hash_one)


def fetch(store: Any, entry: dict[str, Any], dest_dir: Path) -> Path:
    """Copy output `entry` ({"path", "format", "sha256"}) to `dest_dir/<path>`, hashing it on the way; the
    local copy. CorruptOutput (and no copy left) when it does not match the recorded SHA-256."""
    path, fmt = str(entry["path"]), str(entry["format"])
    target = dest_dir.joinpath(*path.split("/"))
    actual = _digest(
        store, path, fmt, lambda file: _download(store, file, dest_dir.joinpath(*file.split("/")))
    )
    expected = entry.get("sha256")
    if expected is not None and actual != expected:
        _remove(target)
        raise CorruptOutput(location(store, path), str(expected), actual)
    return target


def _digest(store: Any, path: str, fmt: str, digest_file: Callable[[str], str]) -> str:
    """The SHA-256 of output `path`: `digest_file`'s of its one file, or of a folder's files combined."""
    if fmt not in FOLDER_FORMATS:
        return digest_file(path)
    files = store.list_recursive(path)
    if not files:
        raise NotFound(f"No artifact folder {path!r} under {store.root_uri}.")
    return folder_digest([(_relative(info.path, path), digest_file(info.path)) for info in files])


def _download(store: Any, path: str, target: Path) -> str:
    from modelyard.artifacts.local import staged_file
    from modelyard.artifacts.progress import TransferProgress

    with (
        store.open_read(path) as source,  # opened first: a missing artifact leaves no temporary file
        staged_file(target) as tmp,  # the copy appears whole under its name, or not at all
        open(tmp, "xb") as out,
        TransferProgress(target.name, total=_size(source)) as progress,
    ):
        return _copy(source, out, progress)


def _copy(source: BinaryIO, out: BinaryIO | None, progress: Any = None) -> str:
    """Read `source` to its end in chunks, writing them to `out` when given; the bytes' SHA-256."""
    sha = hashlib.sha256()
    while chunk := source.read(_CHUNK):
        sha.update(chunk)
        if out is not None:
            out.write(chunk)
        if progress is not None:
            progress.advance(len(chunk))
    return sha.hexdigest()


def _size(source: Any) -> int | None:
    size = getattr(source, "size", None)  # fsspec files
    if isinstance(size, int):
        return size
    try:
        return os.fstat(source.fileno()).st_size
    except (AttributeError, OSError, ValueError):
        return None


def _relative(path: str, folder: str) -> str:
    return path[len(folder) :].lstrip("/")


def _remove(target: Path) -> None:
    import shutil

    if target.is_dir():
        shutil.rmtree(target, ignore_errors=True)
    else:
        target.unlink(missing_ok=True)
