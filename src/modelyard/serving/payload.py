"""What a request asks the model to predict on: inputs checked against the signature, and their row count.

Every protocol decodes its body into a `Payload` before the request is queued, so a bad request is refused
(400, naming the column or tensor) without ever reaching a batch. Payloads with the same `key` (same kind,
columns or tensor names, dtypes and trailing dimensions) are concatenated along their first axis into one
batch; the model's output for the batch is split back by row counts.
"""

from __future__ import annotations

import itertools
import sys
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from modelyard.errors import InvalidArgument
from modelyard.models.signature import enforce, to_numpy
from modelyard.schemas.models import Schema


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
            return _fit(schema, pandas().DataFrame.from_records(instances))
        names = list(instances[0])
        if any(list(row) != names for row in instances):
            raise InvalidArgument(f'Every entry of "{where}" must have the same names: {", ".join(names)}.')
        return _fit(schema, {name: _array([row[name] for row in instances], name) for name in names})
    if any(isinstance(row, Mapping) for row in instances):
        raise InvalidArgument(f'"{where}" mixes objects and lists; give every row in the same form.')
    return _fit(schema, _array(instances, where))


def from_frame(schema: Schema | None, frame: Any) -> Payload:
    """A pandas DataFrame (MLflow `dataframe_split`, `dataframe_records`, CSV)."""
    return _fit(schema, frame)


def from_inputs(schema: Schema | None, inputs: Any) -> Payload:
    """MLflow `inputs`: a dict of named tensors (nested lists), or one tensor."""
    if isinstance(inputs, Mapping):
        if not inputs:
            raise InvalidArgument('"inputs" is empty; give one entry per input tensor.')
        return _fit(schema, {str(k): _array(v, str(k)) for k, v in inputs.items()})
    if isinstance(inputs, list):
        return from_instances(schema, inputs, where="inputs")
    raise InvalidArgument('"inputs" must be an object of named tensors or a list of rows.')


def concat(payloads: Sequence[Payload]) -> Any:
    """The inputs of `payloads` (all with the same key) as one batch."""
    first = payloads[0].inputs
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
    return _payload(enforce(schema, inputs) if schema is not None else inputs)


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
