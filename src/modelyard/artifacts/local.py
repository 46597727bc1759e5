"""Artifacts in a local folder, given as a plain path or a file:// URI."""

from __future__ import annotations

import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO
from urllib.parse import urlsplit
from urllib.request import url2pathname

from modelyard.artifacts.base import ArtifactStore
from modelyard.artifacts.progress import TransferProgress
from modelyard.errors import InvalidArgument, NotFound
from modelyard.schemas.artifacts import FileInfo

_CHUNK = 2**20  # copy buffer: memory stays at one chunk whatever the file size
_TMP_PREFIX = ".modelyard-tmp-"


def local_path_from_uri(uri: str) -> Path:
    """The absolute folder named by a plain path or a file:// URI (percent-decoded)."""
    parts = urlsplit(uri)
    if parts.scheme.lower() != "file":
        return Path(uri).expanduser().absolute()
    if parts.netloc not in ("", "localhost"):
        raise InvalidArgument(f"File URI {uri!r} names host {parts.netloc!r}; use file:///absolute/path.")
    return Path(url2pathname(parts.path)).absolute()


@contextmanager
def staged_file(dest: Path) -> Iterator[Path]:
    """A temporary path beside `dest`, renamed onto `dest` in one step on success and removed on error.

    A crash or a failed transfer therefore never leaves a half-written file under the real name.
    """
    dest.parent.mkdir(parents=True, exist_ok=True)
    if dest.is_dir():
        raise InvalidArgument(f"Cannot write file {str(dest)!r}: a folder of that name exists.")
    tmp = dest.parent / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
    try:
        yield tmp
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def copy_file(src: Path, dest: Path) -> None:
    """Copy `src` onto `dest` atomically, chunk by chunk, with a progress bar for big files."""
    buf = bytearray(_CHUNK)
    view = memoryview(buf)
    with (
        staged_file(dest) as tmp,
        open(src, "rb") as fin,
        open(tmp, "xb") as fout,
        TransferProgress(src.name, total=os.fstat(fin.fileno()).st_size) as progress,
    ):
        while n := fin.readinto(buf):
            fout.write(view[:n])
            progress.advance(n)


class LocalArtifactStore(ArtifactStore):
    """Artifacts as plain files under `root` (created on the first write)."""

    def __init__(self, root_uri: str) -> None:
        super().__init__(root_uri)
        self.root = local_path_from_uri(root_uri)

    def _full(self, rel: str) -> Path:
        return self.root.joinpath(*rel.split("/")) if rel else self.root

    def _file(self, rel: str) -> Path:
        path = self._full(rel)
        if path.is_dir():
            raise InvalidArgument(f"Artifact {rel!r} is a folder, not a file; use download() for folders.")
        if not path.is_file():
            raise NotFound(f"No artifact file {rel!r} under {self.root_uri}.")
        return path

    def _put_file(self, local_path: Path, rel: str) -> None:
        copy_file(local_path, self._full(rel))

    def _get_file(self, rel: str, local_path: Path) -> None:
        copy_file(self._file(rel), local_path)

    def _list(self, rel: str) -> list[FileInfo]:
        folder = self._full(rel)
        if not folder.is_dir():
            return []
        infos = []
        with os.scandir(folder) as entries:
            for entry in entries:
                if entry.name.startswith(_TMP_PREFIX):
                    continue  # a transfer in progress (or one a crash left behind)
                is_dir = entry.is_dir()
                size = None if is_dir else entry.stat().st_size
                infos.append(
                    FileInfo(path=f"{rel}/{entry.name}" if rel else entry.name, is_dir=is_dir, file_size=size)
                )
        return sorted(infos, key=lambda f: f.path)

    def _delete(self, rel: str) -> None:
        path = self._full(rel)
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()

    def _exists(self, rel: str) -> bool:
        return self._full(rel).exists()

    def _open_read(self, rel: str) -> BinaryIO:
        return open(self._file(rel), "rb")
