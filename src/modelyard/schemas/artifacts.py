"""Wire model for listing artifacts: one entry of a run's or experiment's artifact tree."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class FileInfo(BaseModel):
    """A file or folder under an artifact root; `path` is relative to that root, posix style."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str
    is_dir: bool
    file_size: int | None = None
