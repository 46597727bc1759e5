"""What a request asks the model to predict on: inputs checked against the signature, and their row count.

Every protocol decodes its body into a `Payload` before the request is queued, so a bad request is refused
(400, naming the column or tensor) without ever reaching a batch. Payloads with the same `key` (same kind,
columns or tensor names, dtypes and trailing dimensions) are concatenated along their first axis into one
batch; the model's output for the batch is split back by row counts.

A table of numeric columns (a DataFrame model's usual request) is decoded and checked as numpy columns,
without pandas: a request holds a dict of 1-d arrays, and one DataFrame is built per batch (`concat`).
Building a DataFrame per request would cost more than the rest of the request path together.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelyard.errors import InvalidArgument
from modelyard.models.signature import column_names, columns_frame, enforce, enforce_columns, to_numpy
from modelyard.schemas.models import FieldSpec, Schema

COLUMNS = "columns"  # the key kind of a table held as numpy columns


@dataclass(frozen=True)
class Payload:
    """`inputs` in the form the model's `predict` takes (a DataFrame, an array or a dict of arrays)."""

    inputs: Any
    rows: int
    key: Hashable | None  # payloads with equal keys batch together; None: runs alone


def from_tensors(schema: Schema | None, tensors: dict[str, np.ndarray]) -> Payload:
    """Named tensors (Open Inference Protocol v2 inputs) fitted to the model's input schema."""
    if schema is None:
        return _payload(next(iter(tensors.values())) if len(tensors) == 1 else tensors)
    tensors = {name: _strings_for(schema, name, array) for name, array in tensors.items()}
    if schema.type == "tensor":
        if len(tensors) != 1:
            raise InvalidArgument(
                f"The model takes one input tensor; the request has {len(tensors)}: {', '.join(tensors)}."
            )
        return _fit(schema, next(iter(tensors.values())))
    expected = schema.names
    if schema.type == "dataframe" and len(tensors) == 1:
        ((name, array),) = tensors.items()
        if array.ndim == 2 and (name not in expected or len(expected) > 1):
            return _fit(schema, array)  # one [rows, columns] tensor for the whole table
    unknown = [name for name in tensors if name not in expected]
    if unknown:
        raise InvalidArgument(
            f"Unknown input {unknown[0]!r}: the model's signature takes {', '.join(expected)}."
        )
    if schema.type == "dataframe":
        tensors = {name: _column(name, array) for name, array in tensors.items()}
    return _fit(schema, tensors)


def from_instances(schema: Schema | None, instances: Any, where: str = "instances") -> Payload:
    """A list of rows (KServe v1 `instances`): each a list of values, a value, or a dict of named values."""
    if not isinstance(instances, list) or not instances:
        raise InvalidArgument(f'"{where}" must be a non-empty list with one entry per row.')
    if all(isinstance(row, Mapping) for row in instances):
        if schema is not None and schema.type == "dataframe":
            return from_records(schema, instances)
        names = list(instances[0])
        if any(list(row) != names for row in instances):
            raise InvalidArgument(f'Every entry of "{where}" must have the same names: {", ".join(names)}.')
        return _fit(
            schema, {name: _json_array(schema, name, [row[name] for row in instances]) for name in names}
        )
    if any(isinstance(row, Mapping) for row in instances):
        raise InvalidArgument(f'"{where}" mixes objects and lists; give every row in the same form.')
    return _fit(schema, _json_array(schema, None, instances, where))


def from_split(schema: Schema | None, columns: Any, data: list[Any]) -> Payload | None:
    """MLflow `dataframe_split` (no `index`) for a DataFrame model, checked as numpy columns; None when only
    a DataFrame built by pandas can tell (then: `from_frame`)."""
    if schema is None or schema.type != "dataframe" or not data:
        return None
    if not isinstance(columns, list) or not all(type(c) is str for c in columns):
        return None
    width = len(columns)
    if len(set(columns)) != width or not all(type(row) is list and len(row) == width for row in data):
        return None
    if set(map(type, itertools.chain.from_iterable(data))) == {float}:  # the usual table: every value a float
        return _columns_payload(schema, np.array(data, dtype=np.float64), columns)
    wanted = set(column_names(schema))
    parsed: dict[str, np.ndarray] = {}
    for name, values in zip(columns, zip(*data)):
        if name in wanted:
            array = _json_column(values)
            if array is None:
                return None
            parsed[name] = array
    return _columns_payload(schema, parsed)


def from_records(schema: Schema | None, records: list[Mapping[str, Any]]) -> Payload:
    """MLflow `dataframe_records`: a non-empty list of {column: value} objects."""
    if schema is not None and schema.type == "dataframe":
        first = records[0]
        if all(type(k) is str for k in first) and all(r.keys() == first.keys() for r in records):
            wanted = [name for name in column_names(schema) if name in first]
            parsed: dict[str, np.ndarray] = {}
            for name in wanted:
                array = _json_column(tuple(r[name] for r in records))
                if array is None:
                    break
                parsed[name] = array
            else:
                payload = _columns_payload(schema, parsed)
                if payload is not None:
                    return payload
    return _fit(schema, pandas().DataFrame.from_records(records))


def from_frame(schema: Schema | None, frame: Any) -> Payload:
    """A pandas DataFrame (MLflow `dataframe_split`, `dataframe_records`, CSV)."""
    return _fit(schema, frame)


def from_inputs(schema: Schema | None, inputs: Any) -> Payload:
    """MLflow `inputs`: a dict of named tensors (nested lists), or one tensor."""
    if isinstance(inputs, Mapping):
        if not inputs:
            raise InvalidArgument('"inputs" is empty; give one entry per input tensor.')
        return _fit(schema, {str(k): _json_array(schema, str(k), v) for k, v in inputs.items()})
    if isinstance(inputs, list):
        return from_instances(schema, inputs, where="inputs")
    raise InvalidArgument('"inputs" must be an object of named tensors or a list of rows.')


def concat(payloads: Sequence[Payload]) -> Any:
    """The inputs of `payloads` (all with the same key) as one batch."""
    first, key = payloads[0].inputs, payloads[0].key
    if isinstance(key, tuple) and key[0] == COLUMNS:  # numpy columns: the batch's one DataFrame
        if len(payloads) == 1:
            return columns_frame(first)
        return columns_frame({k: np.concatenate([p.inputs[k] for p in payloads]) for k in first})
    if len(payloads) == 1:
        return first
    if isinstance(first, np.ndarray):
        return np.concatenate([p.inputs for p in payloads])
    if isinstance(first, dict):
        return {k: np.concatenate([p.inputs[k] for p in payloads]) for k in first}
    return pandas().concat([p.inputs for p in payloads], ignore_index=True)


def split(output: Any, rows: Sequence[int]) -> list[Any]:
    """The model's output for a batch, cut back into one part per payload (`rows` each)."""
    total = sum(rows)
    bounds = np.cumsum([0, *rows]).tolist()
    parts = list(itertools.pairwise(bounds))
    if isinstance(output, Mapping):
        values = {k: to_numpy(v) for k, v in output.items()}
        _check_rows(values.values(), total)
        return [{k: v[a:b] for k, v in values.items()} for a, b in parts]
    if hasattr(output, "iloc"):  # a pandas DataFrame or Series
        _check_rows([output], total)
        return [output.iloc[a:b] for a, b in parts]
    if isinstance(output, list):
        _check_rows([output], total)
        return [output[a:b] for a, b in parts]
    array = to_numpy(output)
    _check_rows([array], total)
    return [array[a:b] for a, b in parts]


def _check_rows(values: Any, total: int) -> None:
    for value in values:
        if np.ndim(value) == 0 or len(value) != total:
            raise ValueError(
                f"the model returned {np.shape(value)} for a batch of {total} rows: the output cannot be "
                "split by row"
            )


def _fit(schema: Schema | None, inputs: Any) -> Payload:
    if schema is None:
        return _payload(inputs)
    if schema.type == "dataframe" and isinstance(inputs, (Mapping, np.ndarray)):
        columns = enforce_columns(schema, inputs)
        if columns is not None:
            return _table(columns)
    return _payload(enforce(schema, inputs))


def _columns_payload(
    schema: Schema, columns: dict[str, np.ndarray] | np.ndarray, names: list[str] | None = None
) -> Payload | None:
    if not len(columns):
        return None
    enforced = enforce_columns(schema, columns, names)
    return _table(enforced) if enforced is not None else None


def _table(columns: dict[str, np.ndarray]) -> Payload:
    """A table as enforced numpy columns (`enforce_columns`); `concat` makes the batch's DataFrame."""
    arrays = list(columns.values())
    return Payload(columns, len(arrays[0]), (COLUMNS, tuple(columns), tuple([a.dtype for a in arrays])))


def _json_column(values: tuple[Any, ...]) -> np.ndarray | None:
    """A column of JSON values as the numpy array pandas would make of it, for columns of numbers or of
    booleans only (None otherwise: strings, nulls, mixes, integers beyond int64 are left to pandas)."""
    types = set(map(type, values))
    if types == {float}:
        return np.array(values, dtype=np.float64)
    if types == {int} or types == {int, float}:
        try:
            ints = np.array([v for v in values if type(v) is int]) if float in types else np.array(values)
        except OverflowError:
            return None
        if ints.dtype != np.int64:
            return None  # beyond int64: pandas makes uint64 or objects
        return np.array(values, dtype=np.float64) if float in types else ints
    if types == {bool}:
        return np.array(values, dtype=np.bool_)
    return None


def _json_array(schema: Schema | None, name: str | None, values: Any, what: str | None = None) -> np.ndarray:
    """JSON values for tensor `name` (None: the one tensor) as an array. JSON numbers have no width, so
    numbers for a float32 (int32, ...) tensor take the signature's dtype, as a typed client would send them;
    integers only when they fit. Anything else is left for the signature check to judge."""
    array = _array(values, what or str(name))
    field = _tensor_field(schema, name)
    if field is None or field.dtype in ("str", "bytes", "object"):
        return array
    try:
        target = np.dtype(field.dtype)
    except TypeError:
        return array
    kind = array.dtype.kind
    if target == array.dtype or kind not in "iuf":
        return array
    if target.kind == "f":
        return array.astype(target)
    if target.kind in "iu" and kind in "iu" and array.size:
        info = np.iinfo(target)
        if array.min() >= info.min and array.max() <= info.max:
            return array.astype(target)
    return array


def _tensor_field(schema: Schema | None, name: str | None) -> FieldSpec | None:
    if schema is None or schema.type == "dataframe":
        return None
    if schema.type == "tensor":
        return schema.fields[0]
    return next((f for f in schema.fields if f.name == name), None)


def _payload(inputs: Any) -> Payload:
    if isinstance(inputs, np.ndarray):
        if inputs.ndim == 0:
            return Payload(inputs, 1, None)
        return Payload(inputs, inputs.shape[0], ("array", inputs.dtype.str, inputs.shape[1:]))
    if isinstance(inputs, dict):
        arrays = {k: to_numpy(v) for k, v in inputs.items()}
        lengths = {a.shape[0] if a.ndim else -1 for a in arrays.values()}
        if len(lengths) != 1 or -1 in lengths:
            return Payload(arrays, 1, None)  # tensors without a shared batch dimension run alone
        key = ("dict", tuple((k, a.dtype.str, a.shape[1:]) for k, a in arrays.items()))
        return Payload(arrays, lengths.pop(), key)
    if _is_frame(inputs):
        columns = tuple((str(c), str(t)) for c, t in inputs.dtypes.items())
        return Payload(inputs, len(inputs), ("frame", columns))
    return Payload(inputs, 1, None)


def _array(values: Any, what: str) -> np.ndarray:
    try:
        array = np.asarray(values)
    except (ValueError, TypeError):
        raise InvalidArgument(f"{what!r} is ragged: its rows have different lengths.") from None
    if array.dtype.kind == "O" and array.ndim > 1:
        raise InvalidArgument(f"{what!r} is ragged: its rows have different lengths.")
    return array


def _column(name: str, array: np.ndarray) -> np.ndarray:
    if array.ndim == 2 and array.shape[1] == 1:
        return array[:, 0]
    if array.ndim != 1:
        raise InvalidArgument(
            f"Input {name!r} is a table column, so its shape must be [rows] or [rows, 1], not {list(array.shape)}."
        )
    return array


def _strings_for(schema: Schema, name: str, array: np.ndarray) -> np.ndarray:
    """BYTES tensors as the signature's kind of strings: binary data arrives as bytes, JSON data as str."""
    if array.dtype.kind != "O" or not array.size:
        return array
    field = next((f for f in schema.fields if f.name == name), schema.fields[0])
    if field.dtype == "str" and isinstance(array.flat[0], bytes):
        try:
            return np.vectorize(lambda b: b.decode("utf-8"), otypes=[object])(array)  # type: ignore[no-any-return]
        except UnicodeDecodeError:
            raise InvalidArgument(f"Input {name!r} holds bytes that are not UTF-8 text.") from None
    if field.dtype == "bytes" and isinstance(array.flat[0], str):
        return np.vectorize(lambda s: s.encode("utf-8"), otypes=[object])(array)  # type: ignore[no-any-return]
    return array


def _is_frame(value: Any) -> bool:
    pd = sys.modules.get("pandas")
    return pd is not None and isinstance(value, pd.DataFrame)


def pandas() -> Any:
    try:
        import pandas
    except ImportError:
        raise InvalidArgument("Tabular requests need pandas on the server: pip install pandas") from None
    return pandas
