"""Dataset fingerprints: the same content always gives the same digest, whatever object holds it."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidArgument
from modelyard.schemas import Dataset

_CHUNK = 1 << 20


def _hash_file(path: Path, h: Any) -> None:
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)


def _from_path(path: Path, name: str | None, source: str | None) -> Dataset:
    if not path.exists():
        raise InvalidArgument(f"Dataset path {str(path)!r} does not exist.")
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:  # names and contents, so renaming a file inside a folder changes the digest
        h.update(f.relative_to(path).as_posix().encode() if path.is_dir() else b"")
        _hash_file(f, h)
    return Dataset(
        name=name or path.name,
        digest=h.hexdigest()[:16],
        source=source or path.resolve().as_uri(),
        source_type="directory" if path.is_dir() else "file",
    )


def _from_pandas(df: Any, name: str | None, source: str | None) -> Dataset:
    import pandas as pd

    h = hashlib.sha256()
    h.update(repr([(str(c), str(t)) for c, t in df.dtypes.items()]).encode())
    h.update(pd.util.hash_pandas_object(df, index=True).to_numpy().tobytes())
    return Dataset(
        name=name or "dataframe",
        digest=h.hexdigest()[:16],
        source=source,
        source_type="pandas",
        schema={str(c): str(t) for c, t in df.dtypes.items()},
        num_rows=len(df),
    )


def _from_numpy(arr: Any, name: str | None, source: str | None) -> Dataset:
    import numpy as np

    arr = np.ascontiguousarray(arr)
    h = hashlib.sha256()
    h.update(f"{arr.dtype.str}{arr.shape}".encode())
    if arr.dtype == object:
        h.update(repr(arr.tolist()).encode())
    else:
        h.update(arr.tobytes())
    return Dataset(
        name=name or "array",
        digest=h.hexdigest()[:16],
        source=source,
        source_type="numpy",
        schema={"dtype": str(arr.dtype), "shape": str(list(arr.shape))},
        num_rows=int(arr.shape[0]) if arr.ndim else 1,
    )


def dataset_from(data: Any, name: str | None = None, source: str | None = None) -> Dataset:
    """Describe `data` (a path, pandas DataFrame/Series, numpy array or pyarrow Table) as a Dataset."""
    if isinstance(data, (str, Path)):
        return _from_path(Path(data), name, source)
    module = type(data).__module__.split(".")[0]
    if module == "pandas":
        import pandas as pd

        frame = data.to_frame() if isinstance(data, pd.Series) else data
        return _from_pandas(frame, name, source).model_copy(update={"name": name or "dataframe"})
    if module == "pyarrow":
        ds = _from_pandas(data.to_pandas(), name, source)  # same content as a DataFrame: same digest
        return ds.model_copy(update={"source_type": "pyarrow", "name": name or "table"})
    if module == "numpy":
        return _from_numpy(data, name, source)
    raise InvalidArgument(
        f"Cannot log a dataset from {type(data).__name__}: pass a file or folder path, a pandas DataFrame, "
        "a numpy array or a pyarrow Table."
    )
