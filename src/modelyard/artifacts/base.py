"""The artifact store interface, artifact path rules, and the choice of backend by URI scheme.

An `ArtifactStore` holds the artifacts of ONE run or experiment under `root_uri`. The public methods
validate every artifact path here, once, with `normalize_artifact_path`; backends implement the
underscore methods and only ever see clean relative posix paths, so no backend can be tricked into
writing outside its root.
"""

from __future__ import annotations

import abc
import builtins  # the `list` method shadows the builtin inside the class
import os
import re
import tempfile
from importlib import import_module
from importlib.metadata import entry_points
from pathlib import Path
from typing import BinaryIO, Union
from urllib.parse import quote, urlsplit

from modelyard.errors import InvalidArgument, NotFound
from modelyard.schemas.artifacts import FileInfo

StrPath = Union[str, "os.PathLike[str]"]

_ALLOWED = (
    "Use a relative path with '/' between folders, inside the artifact root (e.g. 'model/weights.bin')."
)
_DRIVE = re.compile(r"^[A-Za-z]:")
MAX_NAME_BYTES = 255  # one file or folder name (NAME_MAX of Linux and macOS file systems)
MAX_PATH_BYTES = 1024  # a whole artifact path (S3's limit on a key; local roots keep well under PATH_MAX)


def normalize_artifact_path(path: str | None) -> str:
    """`path` as a clean relative posix path ("" for the root); refuse anything that could leave the root.

    Backslashes count as separators (a path built on Windows means the same thing everywhere), so
    `..\\x` and `\\\\server\\x` are refused like `../x` and `/x`.
    """
    if path is None:
        return ""
    if not isinstance(path, str):
        raise InvalidArgument(f"Artifact path must be a string, not {type(path).__name__}. {_ALLOWED}")
    if "\0" in path:
        raise InvalidArgument(f"Artifact path {path!r} contains a NUL byte. {_ALLOWED}")
    unified = path.replace("\\", "/")
    if unified.startswith("/"):
        raise InvalidArgument(f"Artifact path {path!r} is absolute. {_ALLOWED}")
    if _DRIVE.match(unified):
        raise InvalidArgument(f"Artifact path {path!r} starts with a drive letter. {_ALLOWED}")
    segments = [s for s in unified.split("/") if s not in ("", ".")]
    if ".." in segments:
        raise InvalidArgument(f"Artifact path {path!r} contains '..', which could leave the root. {_ALLOWED}")
    rel = "/".join(segments)
    check_length(rel)
    return rel


def check_length(rel: str) -> None:
    """Paths every backend can hold: file systems refuse a name over 255 bytes, S3 a key over 1,024."""
    size = _bytes(rel)
    if size > MAX_PATH_BYTES:
        raise InvalidArgument(
            f"Artifact path {rel[:60]!r}... is {size} bytes long (UTF-8); the limit is {MAX_PATH_BYTES}. "
            "Use a shorter path."
        )
    if size > MAX_NAME_BYTES:  # else no name in it can be too long
        for name in rel.split("/"):
            if (length := _bytes(name)) > MAX_NAME_BYTES:
                raise InvalidArgument(
                    f"Artifact name {name[:60]!r}... is {length} bytes long (UTF-8); file systems allow "
                    f"{MAX_NAME_BYTES} per file or folder name. Use a shorter name."
                )


def _bytes(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def _file_path(path: str) -> str:
    """A normalized path that must name a file, so it cannot be the root."""
    rel = normalize_artifact_path(path)
    if not rel:
        raise InvalidArgument(f"Artifact path {path!r} names the artifact root, not a file. {_ALLOWED}")
    return rel


def _join(*parts: str) -> str:
    return "/".join(p for p in parts if p)


def _local(dest_dir: StrPath, rel: str) -> Path:
    return Path(dest_dir).joinpath(*rel.split("/")) if rel else Path(dest_dir)


class ArtifactStore(abc.ABC):
    """Files under one artifact root. Paths are relative to the root; "" is the root itself."""

    def __init__(self, root_uri: str) -> None:
        self.root_uri = root_uri

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.root_uri!r})"

    # -- the interface: validate here, delegate to the backend ------------------------------------------

    def put_file(self, local_path: StrPath, artifact_path: str) -> None:
        """Upload the local file to `artifact_path` (the destination file's path), replacing any file there."""
        rel = _file_path(artifact_path)
        src = Path(local_path)
        if not src.is_file():
            raise NotFound(f"Local file {str(src)!r} does not exist or is not a file.")
        self._put_file(src, rel)

    def get_file(self, artifact_path: str, local_path: StrPath) -> None:
        """Download one artifact file to `local_path` (created or replaced, parent folders made)."""
        self._get_file(_file_path(artifact_path), Path(local_path))

    def list(self, path: str = "") -> list[FileInfo]:
        """Direct children of folder `path`, sorted by path; [] when `path` is missing or is a file."""
        return self._list(normalize_artifact_path(path))

    def delete(self, path: str = "") -> None:
        """Delete a file or a whole folder (the root itself when `path` is ""); missing paths are ignored."""
        self._delete(normalize_artifact_path(path))

    def exists(self, path: str) -> bool:
        return self._exists(normalize_artifact_path(path))

    def open_read(self, artifact_path: str) -> BinaryIO:
        """A binary file object streaming the artifact; the caller closes it."""
        return self._open_read(_file_path(artifact_path))

    # -- helpers built on the interface ------------------------------------------------------------------

    def put_bytes(self, data: bytes, artifact_path: str) -> None:
        rel = _file_path(artifact_path)
        with tempfile.TemporaryDirectory(prefix="modelyard-") as tmp:
            src = Path(tmp) / rel.rsplit("/", 1)[-1]  # the name a progress bar shows
            src.write_bytes(data)
            self._put_file(src, rel)

    def put_dir(self, local_dir: StrPath, artifact_path: str | None = None) -> None:
        """Upload every file under `local_dir` (recursively) into folder `artifact_path` (default: the root)."""
        prefix = normalize_artifact_path(artifact_path)
        root = Path(local_dir)
        if not root.is_dir():
            raise NotFound(f"Local folder {str(root)!r} does not exist or is not a folder.")
        for dirpath, dirnames, filenames in os.walk(root):
            dirnames.sort()
            for name in sorted(filenames):
                file = Path(dirpath, name)
                self.put_file(file, _join(prefix, file.relative_to(root).as_posix()))

    def list_recursive(self, path: str = "") -> builtins.list[FileInfo]:
        """Every file (not folder) below `path`, sorted by path."""
        files: builtins.list[FileInfo] = []
        pending = [normalize_artifact_path(path)]
        while pending:
            for info in self._list(pending.pop()):
                if info.is_dir:
                    pending.append(info.path)
                else:
                    files.append(info)
        return sorted(files, key=lambda f: f.path)

    def download(self, path: str, dest_dir: StrPath) -> Path:
        """Download a file or a whole folder to `dest_dir/<path>` (the artifact layout is kept); returns it."""
        rel = normalize_artifact_path(path)
        target = _local(dest_dir, rel)
        entry = self._entry(rel)
        if entry is None:
            raise NotFound(f"No artifact {rel!r} under {self.root_uri}.")
        if not entry.is_dir:
            self._get_file(rel, target)
            return target
        target.mkdir(parents=True, exist_ok=True)
        for info in self.list_recursive(rel):
            self._get_file(info.path, _local(dest_dir, info.path))
        return target

    def _entry(self, rel: str) -> FileInfo | None:
        """What `rel` is (file or folder), found by listing its parent: works on every backend."""
        if not rel:
            return FileInfo(path="", is_dir=True)
        parent = rel.rpartition("/")[0]
        return next((info for info in self._list(parent) if info.path == rel), None)

    # -- what a backend implements; paths are already normalized -----------------------------------------

    @abc.abstractmethod
    def _put_file(self, local_path: Path, rel: str) -> None: ...

    @abc.abstractmethod
    def _get_file(self, rel: str, local_path: Path) -> None:
        """NotFound when `rel` is missing, InvalidArgument when it is a folder; never a partial `local_path`."""

    @abc.abstractmethod
    def _list(self, rel: str) -> builtins.list[FileInfo]: ...

    @abc.abstractmethod
    def _delete(self, rel: str) -> None: ...

    @abc.abstractmethod
    def _exists(self, rel: str) -> bool: ...

    @abc.abstractmethod
    def _open_read(self, rel: str) -> BinaryIO:
        """NotFound when `rel` is missing, InvalidArgument when it is a folder."""


# -- choosing a backend ----------------------------------------------------------------------------------

# Built-ins are imported only when used: s3fs or gcsfs alone takes about a second to import.
_BUILTIN = {
    "": "modelyard.artifacts.local:LocalArtifactStore",
    "file": "modelyard.artifacts.local:LocalArtifactStore",
    "s3": "modelyard.artifacts.s3:S3ArtifactStore",
    "gs": "modelyard.artifacts.gcs:GCSArtifactStore",
}
_GROUP = "modelyard.artifact_stores"


def _scheme(uri: str) -> str:
    scheme = urlsplit(uri).scheme.lower()
    return "" if len(scheme) <= 1 else scheme  # "C:\\x" is a Windows path, not scheme "c"


def artifact_store_for(root_uri: str) -> ArtifactStore:
    """The store for `root_uri`: a folder or file:// (local), s3://, gs://, or a scheme added by an entry point."""
    scheme = _scheme(root_uri)
    if scheme in _BUILTIN:
        module, _, attr = _BUILTIN[scheme].partition(":")
        cls: type[ArtifactStore] = getattr(import_module(module), attr)
        return cls(root_uri)
    plugins = {ep.name: ep for ep in entry_points(group=_GROUP)}
    if scheme in plugins:
        return plugins[scheme].load()(root_uri)  # type: ignore[no-any-return]
    supported = ", ".join(f"{s}://" for s in sorted(set(_BUILTIN) - {""} | set(plugins)))
    raise InvalidArgument(
        f"Unsupported artifact URI {root_uri!r} (scheme {scheme!r}). Supported: a local folder path, {supported}."
    )


def join_uri(root_uri: str, *parts: str) -> str:
    """`root_uri` extended by relative `parts` (each validated like an artifact path)."""
    rel = _join(*(normalize_artifact_path(p) for p in parts))
    if not rel:
        return root_uri
    scheme = _scheme(root_uri)
    if scheme == "":
        return os.path.join(root_uri, *rel.split("/"))
    if scheme == "file":
        rel = quote(rel)  # file URIs are percent-encoded; s3 and gs keys are taken literally
    return root_uri + ("" if root_uri.endswith("/") else "/") + rel
