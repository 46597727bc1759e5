"""Step outputs on disk: each value written in the format its type calls for, and hashed by content.

numpy arrays → .npy, pandas DataFrames and Arrow tables → Parquet, models → Modelyard's model format,
JSON-able values → JSON, paths → the file or folder itself, anything else → pickle (with a warning: pickles
are Python-version bound and can run code when loaded).
"""

from __future__ import annotations

import hashlib
import json
import math
import pickle
import shutil
import warnings
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

INLINE_LIMIT = 1024  # JSON values up to this size also travel inline (conditions, loop items, params)


class PickledOutputWarning(UserWarning):
    """A step output had no portable format and was pickled."""


@dataclass(frozen=True)
class Written:
    path: Path  # a file, or a folder for models and folder outputs
    format: str  # json, npy, parquet-pandas, parquet-arrow, model, file, dir, pickle
    sha256: str
    value: Any = None  # the JSON value, when small enough to travel inline
    inline: bool = False


def write(value: Any, kind: str, folder: Path, name: str, where: str) -> Written:
    """Write output `name` of kind `kind` under `folder`; `where` names the step for warnings."""
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "file" or isinstance(value, Path):
        return _write_path(Path(value), folder, name, where)
    if kind != "model":
        text = _json_text(value)
        if text is not None:
            path = folder / f"{name}.json"
            path.write_text(text)
            small = len(text) <= INLINE_LIMIT
            return Written(path, "json", _sha_bytes(text.encode()), value if small else None, small)
    module = type(value).__module__.split(".")[0]
    if module == "numpy" and type(value).__name__ == "ndarray" and value.dtype != object:
        import numpy as np

        path = folder / f"{name}.npy"
        np.save(path, value, allow_pickle=False)
        return Written(path, "npy", sha256_path(path))
    if module == "pandas" and type(value).__name__ in ("DataFrame", "Series"):
        frame = value.to_frame() if type(value).__name__ == "Series" else value
        path = folder / f"{name}.parquet"
        frame.to_parquet(path)
        return Written(path, "parquet-pandas", sha256_path(path))
    if module == "pyarrow" and type(value).__name__ == "Table":
        import pyarrow.parquet as pq

        path = folder / f"{name}.parquet"
        pq.write_table(value, path)
        return Written(path, "parquet-arrow", sha256_path(path))
    if kind == "model" or _has_flavor(value):
        from modelyard.models.save import save_model

        path = folder / name
        save_model(value, path, signature=False)
        return Written(path, "model", sha256_path(path))
    warnings.warn(
        f"{where}: output {name!r} is a {type(value).__name__}, which has no portable format; it is pickled "
        "(readable only by compatible Python and library versions). Return a DataFrame, array, model or "
        "JSON value to avoid this.",
        PickledOutputWarning,
        stacklevel=2,
    )
    path = folder / f"{name}.pkl"
    try:
        import cloudpickle

        data = cloudpickle.dumps(value)
    except ImportError:
        data = pickle.dumps(value)
    path.write_bytes(data)
    return Written(path, "pickle", _sha_bytes(data))


def read(path: Path, fmt: str) -> Any:
    """Load an output written by `write` from its local copy."""
    if fmt == "json":
        return json.loads(path.read_text())
    if fmt == "npy":
        import numpy as np

        return np.load(path, allow_pickle=False)
    if fmt == "parquet-pandas":
        import pandas as pd

        return pd.read_parquet(path)
    if fmt == "parquet-arrow":
        import pyarrow.parquet as pq

        return pq.read_table(path)
    if fmt == "model":
        from modelyard.models import load_model

        return load_model(path, trusted=True)  # written by a step of this pipeline system
    if fmt in ("file", "dir"):
        return path
    if fmt == "pickle":
        with open(path, "rb") as f:
            return pickle.load(f)
    raise ValueError(f"unknown output format {fmt!r}")


def _write_path(source: Path, folder: Path, name: str, where: str) -> Written:
    if not source.exists():
        raise FileNotFoundError(
            f"{where}: output {name!r} is the path {str(source)!r}, which does not exist."
        )
    target = folder / name / source.name
    target.parent.mkdir(parents=True, exist_ok=True)
    if source.is_dir():
        shutil.copytree(source, target)
        return Written(folder / name, "dir", sha256_path(folder / name))
    shutil.copyfile(source, target)
    return Written(folder / name, "file", sha256_path(folder / name))


def _json_text(value: Any) -> str | None:
    """Canonical JSON (sorted keys) for JSON-able values, so equal values hash equal; None otherwise."""
    if not _jsonable(value):
        return None
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _jsonable(value: Any, depth: int = 0) -> bool:
    if depth > 50:
        return False
    if value is None or isinstance(value, (bool, int, str)):
        return True
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, list):
        return all(_jsonable(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _jsonable(v, depth + 1) for k, v in value.items())
    return False


def _has_flavor(value: Any) -> bool:
    module = type(value).__module__.split(".")[0]
    if module not in ("sklearn", "torch", "xgboost", "lightgbm", "onnx"):
        return False
    from modelyard.models.flavors.base import flavor_for

    try:
        flavor_for(value)
    except Exception:
        return False
    return True


def _sha_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_path(path: Path) -> str:
    """A file's SHA-256, or for a folder the SHA-256 of its files' relative paths and hashes."""
    if path.is_file():
        sha = hashlib.sha256()
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                sha.update(chunk)
        return sha.hexdigest()
    files = (p for p in path.rglob("*") if p.is_file() and p.name != "model.yaml")
    return folder_digest((p.relative_to(path).as_posix(), sha256_path(p)) for p in files)


def folder_digest(files: Iterable[tuple[str, str]]) -> str:
    """The SHA-256 of a folder from its files' (relative posix path, SHA-256) pairs, in any order.

    Files named model.yaml are left out: one records when a model was saved, which is not its content."""
    sha = hashlib.sha256()
    for rel, digest in sorted(files, key=lambda f: f[0].split("/")):
        if rel.rsplit("/", 1)[-1] != "model.yaml":
            sha.update(f"{rel}\0{digest}\n".encode())
    return sha.hexdigest()


def value_hash(value: Any) -> str:
    """Hash of a literal (JSON) input value."""
    return _sha_bytes(json.dumps(value, sort_keys=True, separators=(",", ":"), default=str).encode())
