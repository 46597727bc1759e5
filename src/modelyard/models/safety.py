"""Which model sources are trusted, and the warning for loading code-executing formats from the others.

Unpickling a file (scikit-learn pickle, cloudpickled python functions, `torch.load` without
`weights_only`, a torch.export program) can run any code its author chose. Loading such a file warns with
`UnsafeModelWarning` unless:

- the caller passed `trusted=True`;
- the model's URI starts with one of the comma-separated prefixes in MODELYARD_TRUSTED_MODEL_SOURCES;
- this process wrote exactly these bytes itself (`save_model`/`log_model` remember the SHA-256 of every
  code-executing file they write, in memory only, so nothing on disk can claim it): loading what you just
  logged is no riskier than the object you already had.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import warnings
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

ENV_TRUSTED_SOURCES = "MODELYARD_TRUSTED_MODEL_SOURCES"
SAFE_FORMATS = "ONNX, safetensors weights (PyTorch), skops (scikit-learn), XGBoost JSON, LightGBM text"

_written: set[str] = set()
_lock = threading.Lock()


class UnsafeModelWarning(UserWarning):
    """A model is about to be loaded from a format that can execute code, from a source not marked trusted;
    or a model was just saved in such a format because no safe format could represent it."""


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            sha.update(chunk)
    return sha.hexdigest()


def remember_written(path: Path) -> None:
    """Count the bytes of `path`, just written by this process, as trusted for loads in this process."""
    digest = _digest(path)
    with _lock:
        _written.add(digest)


def forget_written() -> None:
    """Forget every file remembered by `remember_written` (tests use it to act like a fresh process)."""
    with _lock:
        _written.clear()


def trusted_prefixes() -> list[str]:
    raw = os.environ.get(ENV_TRUSTED_SOURCES, "")
    return [p.strip() for p in raw.split(",") if p.strip()]


def _as_local(uri: str) -> str | None:
    """An absolute local path for a folder path or file:// URI, else None."""
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return os.path.abspath(parts.path)
    if len(parts.scheme) <= 1:  # no scheme, or a Windows drive letter
        return os.path.abspath(uri)
    return None


def source_is_trusted(*uris: str) -> bool:
    """Whether any of `uris` (the URI the user gave, the one it resolved to) starts with a trusted prefix.

    Local paths compare as absolute paths, folder by folder: prefix /models trusts /models/a, not /models-x.
    """
    for prefix in trusted_prefixes():
        local_prefix = _as_local(prefix)
        for uri in uris:
            local = _as_local(uri)
            if local is not None and local_prefix is not None:
                if local == local_prefix or local.startswith(local_prefix.rstrip(os.sep) + os.sep):
                    return True
            elif uri.startswith(prefix):
                return True
    return False


@dataclass(frozen=True)
class Trust:
    """The trust decision for one load: made once from the user's flag and URIs, asked per file by flavors."""

    trusted: bool
    source: str

    def check(self, path: Path, what: str) -> None:
        """Warn before loading `path`, a file in a code-executing format, unless its source is trusted."""
        if self.trusted:
            return
        with _lock:
            known = bool(_written)
        if known and _digest(path) in _written:
            return
        warnings.warn(
            f"Loading {what} from {self.source}: this format can run arbitrary code while loading, so a "
            f"crafted model can take over this process. Load models only from sources you trust. "
            f"Safe formats: {SAFE_FORMATS}. To silence this warning for a trusted source, pass "
            f"`trusted=True` or add a URI prefix to {ENV_TRUSTED_SOURCES} (comma-separated).",
            UnsafeModelWarning,
            stacklevel=caller_stacklevel(),
        )


def caller_stacklevel() -> int:
    """The `stacklevel` of the first frame outside modelyard: a warning names the user's own call."""
    frame = sys._getframe(1)
    level = 1
    while frame is not None and frame.f_globals.get("__name__", "").startswith("modelyard."):
        frame = frame.f_back  # type: ignore[assignment]
        level += 1
    return level
