"""Signatures: inferred from an input example and the model's predictions, enforced before `predict`.

Inputs come as pandas DataFrames, numpy arrays (or anything `numpy.asarray` takes, torch tensors included)
and dicts of arrays. Enforcement checks names, dtypes and shapes, casts a dtype only when numpy calls the
cast safe (int32 -> int64, int64 -> float64), and raises `InvalidArgument` naming the column or tensor.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
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
        return pd.DataFrame({k: to_numpy(v) if np.ndim(v) else v for k, v in values.items()})
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
