"""Signatures: inferred from an input example and the model's predictions, enforced before `predict`.

Inputs come as pandas DataFrames, numpy arrays (or anything `numpy.asarray` takes, torch tensors included)
and dicts of arrays. Enforcement checks names, dtypes and shapes, casts a dtype only when numpy calls the
cast safe (int32 -> int64, int64 -> float64), and raises `InvalidArgument` naming the column or tensor.

Tables of numeric columns given as numpy arrays (a dict of 1-d columns, or one 2-d array) are checked
without pandas (`enforce_columns`), with the same outcome and messages as the DataFrame path: building a
DataFrame costs hundreds of microseconds, too much per request of a model server, which builds one per batch
instead (`columns_frame`).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from modelyard.errors import InvalidArgument
from modelyard.schemas.models import FieldSpec, ModelSignature, Schema

_PYTHON_VALUES = ("str", "bytes", "object")


def infer_signature(model_input: Any = None, model_output: Any = None) -> ModelSignature:
    """The signature of a model that takes `model_input` and returns `model_output` (either may be None)."""
    return ModelSignature(
        inputs=infer_schema(model_input) if model_input is not None else None,
        outputs=infer_schema(model_output) if model_output is not None else None,
    )


def infer_schema(data: Any) -> Schema:
    """Columns and dtypes of a DataFrame; dtype and shape of an array; both for each array of a dict."""
    if _is_dataframe(data):
        return Schema(type="dataframe", fields=tuple(_column_spec(str(c), data[c]) for c in data.columns))
    if _is_series(data):
        return Schema(type="tensor", fields=(_tensor_spec(data.name, to_numpy(data)),))
    if isinstance(data, Mapping):
        return Schema(
            type="tensors", fields=tuple(_tensor_spec(str(k), to_numpy(v)) for k, v in data.items())
        )
    return Schema(type="tensor", fields=(_tensor_spec(None, to_numpy(data)),))


def to_numpy(value: Any) -> np.ndarray:
    """`value` as a numpy array: torch tensors are detached and moved to the CPU first."""
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach") and hasattr(value, "cpu"):  # a torch tensor, without importing torch
        return value.detach().cpu().numpy()  # type: ignore[no-any-return]
    if hasattr(value, "to_numpy"):
        return value.to_numpy()  # type: ignore[no-any-return]
    return np.asarray(value)


def enforce(schema: Schema, inputs: Any) -> Any:
    """`inputs` checked against `schema` and converted to its form: a DataFrame (columns in the signature's
    order, extra columns dropped), one array, or a dict of arrays."""
    if schema.type == "dataframe":
        return _enforce_dataframe(schema, inputs)
    if schema.type == "tensor":
        return _enforce_tensor(schema.fields[0], _single_array(inputs))
    return _enforce_tensors(schema, inputs)


# -- inference ---------------------------------------------------------------------------------------------


def _tensor_spec(name: Any, array: np.ndarray) -> FieldSpec:
    shape = (-1, *array.shape[1:]) if array.ndim else ()
    dtype = _python_kind(array.ravel()) if array.dtype.kind == "O" else array.dtype.name
    return FieldSpec(name=None if name is None else str(name), dtype=dtype, shape=shape)


def _column_spec(name: str, column: Any) -> FieldSpec:
    return FieldSpec(name=name, dtype=_column_dtype(column))


def _column_dtype(column: Any) -> str:
    dtype = column.dtype
    if isinstance(dtype, np.dtype) and dtype.kind != "O":
        return dtype.name
    kind = _pandas().api.types.infer_dtype(column, skipna=True)
    if kind in ("string", "empty") and str(dtype) in ("object", "str", "string"):
        return "str"
    if kind == "bytes":
        return "bytes"
    return str(dtype)


def _python_kind(values: np.ndarray) -> str:
    if all(isinstance(v, str) for v in values):
        return "str"
    if all(isinstance(v, bytes) for v in values):
        return "bytes"
    return "object"


# -- enforcement -------------------------------------------------------------------------------------------


def _enforce_dataframe(schema: Schema, inputs: Any) -> Any:
    pd = _pandas()
    if isinstance(inputs, pd.DataFrame):
        if _conforms(schema, inputs):  # the loop below would rebuild it column by column: copy it at once
            return inputs.copy()
    elif isinstance(inputs, (Mapping, np.ndarray)):
        enforced = enforce_columns(schema, inputs)
        if enforced is not None:
            return columns_frame(enforced)
    frame = _to_frame(pd, schema, inputs)
    present = {str(c): c for c in frame.columns}
    columns: dict[str, Any] = {}
    for field in schema.fields:
        name = str(field.name)
        if name not in present:
            if field.optional:
                continue
            expected = ", ".join(schema.names)
            raise InvalidArgument(
                f"Input is missing column {name!r} (the model's signature expects: {expected})."
            )
        columns[name] = _enforce_column(pd, name, frame[present[name]], field.dtype)
    return pd.DataFrame(columns, index=frame.index)


def _to_frame(pd: Any, schema: Schema, inputs: Any) -> Any:
    if isinstance(inputs, pd.DataFrame):
        return inputs
    if isinstance(inputs, Mapping):
        values = {str(k): v for k, v in inputs.items()}
        if all(np.ndim(v) == 0 for v in values.values()):
            return pd.DataFrame({k: [v] for k, v in values.items()})  # one row given as a dict of scalars
        columns = {k: to_numpy(v) if np.ndim(v) else v for k, v in values.items()}
        rows = {k: len(v) for k, v in columns.items() if np.ndim(v)}
        if len(set(rows.values())) > 1:
            counts = ", ".join(f"{k!r} has {n}" for k, n in rows.items())
            raise InvalidArgument(
                f"The input's columns have different numbers of rows ({counts}); give every column the same."
            )
        return pd.DataFrame(columns)
    if isinstance(inputs, list) and inputs and all(isinstance(r, Mapping) for r in inputs):
        return pd.DataFrame.from_records(inputs)
    array = to_numpy(inputs)
    names = schema.names
    if array.ndim == 1 and len(names) == 1:
        array = array.reshape(-1, 1)
    if array.ndim != 2 or array.shape[1] != len(names):
        raise InvalidArgument(
            f"The model takes a table with columns {', '.join(names)}; got an array of shape {array.shape}. "
            "Pass a DataFrame, a dict of columns, or a 2-d array with one column per signature column."
        )
    return pd.DataFrame(array, columns=names)


def _enforce_column(pd: Any, name: str, column: Any, expected: str) -> Any:
    what = f"Column {name!r}"
    if expected in _PYTHON_VALUES:
        if expected != "object" and _column_dtype(column) != expected:
            kind = pd.api.types.infer_dtype(column, skipna=True)
            raise InvalidArgument(
                f"{what} holds {kind} values, but the model's signature expects {expected}."
            )
        return column
    actual = column.dtype
    if str(actual) == expected:
        return column
    numpy_actual = getattr(actual, "numpy_dtype", actual)  # nullable pandas dtypes (Int64, boolean, Float64)
    target = _numpy_dtype(expected)
    if target is None or not isinstance(numpy_actual, np.dtype) or numpy_actual.kind == "O":
        raise InvalidArgument(f"{what} has dtype {actual}, but the model's signature expects {expected}.")
    _check_cast(what, numpy_actual, target)
    if column.isna().any() and target.kind in "iub":
        raise InvalidArgument(f"{what} has missing values, but the model's signature expects {expected}.")
    return column.astype(target)


# -- tables as numpy columns: the same checks without pandas -------------------------------------------------

_NUMERIC = "biuf"  # numpy kinds whose columns pandas keeps as they are (bool, integers, floats)


class _Table:
    """A dataframe schema prepared for checking numpy columns (made once per schema object)."""

    __slots__ = ("dtype", "fields", "given", "names", "numeric", "targets")

    def __init__(self, schema: Schema) -> None:
        self.fields = schema.fields
        self.given = tuple(schema.names)
        self.names = tuple(str(f.name) for f in schema.fields)
        self.targets = tuple(
            None if f.dtype in _PYTHON_VALUES else _numpy_dtype(f.dtype) for f in schema.fields
        )
        # numpy can check every column the way pandas would: numeric dtypes, one column per name
        self.numeric = len(set(self.names)) == len(self.names) and all(
            t is not None and t.kind in _NUMERIC for t in self.targets
        )
        self.dtype = self.targets[0] if self.numeric and len(set(self.targets)) == 1 else None


_TABLES: dict[int, tuple[Schema, _Table]] = {}
_INDEXES: dict[tuple[str, ...], Any] = {}
_CACHE_SIZE = 256


def _table(schema: Schema) -> _Table:
    entry = _TABLES.get(id(schema))
    if entry is not None and entry[0] is schema:
        return entry[1]
    if len(_TABLES) >= _CACHE_SIZE:
        _TABLES.clear()
    table = _Table(schema)
    _TABLES[id(schema)] = (schema, table)  # holding the schema keeps its id from being reused
    return table


def column_names(schema: Schema) -> tuple[str, ...]:
    """`schema.names` of a dataframe schema, kept from one call to the next (`schema.names` builds a list)."""
    return _table(schema).given


def enforce_columns(
    schema: Schema, inputs: Any, names: list[str] | None = None
) -> dict[str, np.ndarray] | None:
    """A table for a dataframe `schema` as its enforced numpy columns, in the signature's order (extra
    columns dropped): what `enforce` would return as a DataFrame, with the same errors. `inputs` is a dict
    of 1-d numpy columns, or a 2-d array with one column per name in `names` (default: the signature's
    column names). None when only the DataFrame path can tell (non-numeric columns or signature dtypes,
    columns of different lengths, other inputs)."""
    table = _table(schema)
    if not table.numeric:
        return None
    if isinstance(inputs, np.ndarray):
        given: Sequence[str] = names if names is not None else table.given
        array = inputs.reshape(-1, 1) if inputs.ndim == 1 and len(given) == 1 else inputs
        if array.ndim != 2 or array.shape[1] != len(given) or array.dtype.kind not in _NUMERIC:
            return None
        if table.dtype is not None and array.dtype == table.dtype and tuple(given) == table.names:
            return dict(zip(table.names, array.T))  # every column there, in order, of its dtype: as it is
        if len(set(given)) != len(given):
            return None
        present = dict(zip(map(str, given), array.T))
    elif isinstance(inputs, Mapping):
        present = {}
        rows = -1
        for key, value in inputs.items():
            if not isinstance(value, np.ndarray) or value.ndim != 1 or value.dtype.kind not in _NUMERIC:
                return None
            if rows != len(value) and rows != -1:
                return None
            rows = len(value)
            present[str(key)] = value
        if len(present) != len(inputs):
            return None  # two keys with the same name as text
    else:
        return None
    columns: dict[str, np.ndarray] = {}
    for name, field, target in zip(table.names, table.fields, table.targets):
        column = present.get(name)
        if column is None:
            if field.optional:
                continue
            expected = ", ".join(table.given)
            raise InvalidArgument(
                f"Input is missing column {name!r} (the model's signature expects: {expected})."
            )
        assert target is not None
        if column.dtype != target:
            _check_cast(f"Column {name!r}", column.dtype, target)
            column = column.astype(target)
        columns[name] = column
    return columns or None


def columns_frame(columns: Mapping[str, np.ndarray]) -> Any:
    """A DataFrame of equally long 1-d numpy columns, built the cheap way: one 2-d block when they share a
    dtype (a few tens of microseconds, where a DataFrame from a dict costs hundreds)."""
    pd = _pandas()
    names = tuple(columns)
    index = _INDEXES.get(names)
    if index is None:
        if len(_INDEXES) >= _CACHE_SIZE:
            _INDEXES.clear()
        index = _INDEXES[names] = pd.Index(list(names))
    arrays = list(columns.values())
    dtype = arrays[0].dtype
    if all(a.dtype == dtype for a in arrays):
        return pd.DataFrame(np.column_stack(arrays), columns=index, copy=False)
    return pd.DataFrame(dict(columns), copy=False)


def _conforms(schema: Schema, frame: Any) -> bool:
    """Whether `frame` has exactly the schema's numeric columns, in order, with their dtypes."""
    table = _table(schema)
    if not table.numeric or len(frame.columns) != len(table.names):
        return False
    if frame.columns is not _INDEXES.get(table.names) and frame.columns.tolist() != list(table.names):
        return False
    return all(isinstance(d, np.dtype) and d == t for d, t in zip(frame.dtypes.tolist(), table.targets))


def _single_array(inputs: Any) -> np.ndarray:
    if isinstance(inputs, Mapping):
        if len(inputs) != 1:
            raise InvalidArgument(
                f"The model takes one tensor; got a dict of {len(inputs)}: {', '.join(map(str, inputs))}."
            )
        inputs = next(iter(inputs.values()))
    return to_numpy(inputs)


def _enforce_tensors(schema: Schema, inputs: Any) -> dict[str, np.ndarray]:
    if _is_dataframe(inputs):
        inputs = {str(c): inputs[c].to_numpy() for c in inputs.columns}
    if not isinstance(inputs, Mapping):
        raise InvalidArgument(
            f"The model takes named tensors ({', '.join(schema.names)}); pass a dict of arrays, "
            f"not {type(inputs).__name__}."
        )
    given = {str(k): v for k, v in inputs.items()}
    out: dict[str, np.ndarray] = {}
    for field in schema.fields:
        name = str(field.name)
        if name not in given:
            if field.optional:
                continue
            raise InvalidArgument(
                f"Input is missing tensor {name!r} (the model's signature expects: {', '.join(schema.names)})."
            )
        out[name] = _enforce_tensor(field, to_numpy(given[name]))
    return out


def _enforce_tensor(field: FieldSpec, array: np.ndarray) -> np.ndarray:
    what = f"Tensor {field.name!r}" if field.name else "The input tensor"
    expected_shape = field.shape or ()
    if field.shape is not None:
        if array.ndim != len(expected_shape):
            raise InvalidArgument(
                f"{what} has shape {tuple(array.shape)} ({array.ndim} dimensions), but the model's signature "
                f"expects {len(expected_shape)} dimensions: {_shape_text(expected_shape)}."
            )
        for axis, (size, want) in enumerate(zip(array.shape, expected_shape)):
            if want != -1 and size != want:
                raise InvalidArgument(
                    f"{what} has shape {tuple(array.shape)}, but the model's signature expects "
                    f"{_shape_text(expected_shape)}: dimension {axis} is {size}, expected {want}."
                )
    if field.dtype in _PYTHON_VALUES:
        if (
            field.dtype != "object"
            and _python_kind(array.ravel()) != field.dtype
            and array.dtype.kind not in "SU"
        ):
            raise InvalidArgument(
                f"{what} has dtype {array.dtype}, but the model's signature expects {field.dtype}."
            )
        return array
    target = _numpy_dtype(field.dtype)
    if target is None or array.dtype == target:
        return array
    _check_cast(what, array.dtype, target)
    return array.astype(target)


def _check_cast(what: str, actual: np.dtype, target: np.dtype) -> None:
    if not np.can_cast(actual, target, casting="safe"):
        raise InvalidArgument(
            f"{what} has dtype {actual}, but the model's signature expects {target}, and {actual} cannot be "
            f"cast to {target} without losing information. Convert it first (e.g. `.astype('{target}')`)."
        )


def _shape_text(shape: tuple[int, ...]) -> str:
    return (
        "(" + ", ".join("any" if s == -1 else str(s) for s in shape) + ("," if len(shape) == 1 else "") + ")"
    )


def _numpy_dtype(name: str) -> np.dtype | None:
    try:
        return np.dtype(name)
    except TypeError:
        return None  # a pandas extension dtype name (category, Int64, ...): only an exact match passes


def _pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise InvalidArgument(
            "This model's signature describes DataFrame columns, which needs pandas: pip install pandas"
        ) from None
    return pandas


def _is_dataframe(value: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, pd.DataFrame)


def _is_series(value: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, pd.Series)
