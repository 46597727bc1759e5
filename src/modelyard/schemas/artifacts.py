"""Wire models for artifacts: an entry of a run's artifact tree, and the artifact proxy's upload sessions
(shared by the server routes and `modelyard.artifacts.http`, the client)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

PART_SIZE = 16 * 2**20  # default part size, and the largest file sent in one request
MAX_PARTS = 10_000  # parts grow for files over PART_SIZE x MAX_PARTS (160 GiB)
SHA256_HEADER = "X-Content-SHA256"  # hex sha256 of a request body, checked by the server


class FileInfo(BaseModel):
    """A file or folder under an artifact root; `path` is relative to that root, posix style."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    is_dir: bool
    file_size: int | None = None


class _Wire(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ArtifactList(_Wire):
    files: list[FileInfo]


class StartUpload(_Wire):
    """Open an upload session for a file of `size` bytes (`part_size` is a wish; the server may lower it)."""

    path: str
    size: int = Field(ge=0)
    part_size: int | None = Field(default=None, ge=1)


class UploadPart(_Wire):
    number: int
    size: int
    sha256: str


class UploadSession(_Wire):
    """An upload in progress: parts 1..part_count, each `part_size` bytes but the last."""

    upload_id: str
    path: str
    size: int
    part_size: int
    max_part_size: int = 0  # the most bytes the server takes in one request (parts and single PUTs)
    parts: list[UploadPart] = Field(default_factory=list)
    completed: bool = False

    @property
    def part_count(self) -> int:
        return max(1, -(-self.size // self.part_size))


class UploadList(_Wire):
    uploads: list[UploadSession]


class CompleteUpload(_Wire):
    sha256: str | None = None  # of the whole file: the server refuses to store anything else


class StoredArtifact(_Wire):
    path: str
    size: int
    sha256: str
