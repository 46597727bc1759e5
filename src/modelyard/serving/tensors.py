"""Open Inference Protocol v2 tensors: datatypes ↔ numpy dtypes, JSON and binary tensor data in and out.

A tensor on the wire is `{"name", "shape", "datatype", "data"}`: `data` is the row-major flattening of the
tensor, or the same values nested by dimension; BYTES elements are strings. With the binary tensor data
extension (what Triton's clients send by default), `parameters.binary_data_size` says the tensor's bytes
follow the JSON header: little-endian values, and for BYTES each element prefixed by its 4-byte length.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np

from modelyard.errors import InvalidArgument

DATATYPES: dict[str, np.dtype[Any]] = {
    "BOOL": np.dtype(np.bool_),
    "UINT8": np.dtype(np.uint8),
    "UINT16": np.dtype(np.uint16),
    "UINT32": np.dtype(np.uint32),
    "UINT64": np.dtype(np.uint64),
    "INT8": np.dtype(np.int8),
    "INT16": np.dtype(np.int16),
    "INT32": np.dtype(np.int32),
    "INT64": np.dtype(np.int64),
    "FP16": np.dtype(np.float16),
    "FP32": np.dtype(np.float32),
    "FP64": np.dtype(np.float64),
    "BYTES": np.dtype(object),
}
_BY_DTYPE = {dtype: name for name, dtype in DATATYPES.items() if name != "BYTES"}
_STRING_DTYPES = ("str", "bytes", "object")


def datatype_of(dtype: np.dtype[Any] | str) -> str:
    """The OIP datatype for a numpy dtype (or a signature's dtype name); strings and objects are BYTES."""
    if isinstance(dtype, str):
        if dtype in _STRING_DTYPES:
            return "BYTES"
        try:
            dtype = np.dtype(dtype)
        except TypeError:
            return "BYTES"  # pandas extension dtypes (category, string, ...)
    return _BY_DTYPE.get(dtype, "BYTES")


def decode_tensor(spec: Any, where: str, binary: memoryview | None = None) -> tuple[str, np.ndarray]:
    """(name, array) of one OIP input tensor; `binary` holds its bytes when it uses binary data."""
    if not isinstance(spec, Mapping):
        raise InvalidArgument(f"{where} must be an object with name, shape, datatype and data.")
    name = spec.get("name")
    if not isinstance(name, str) or not name:
        raise InvalidArgument(f'{where} needs a "name" (a non-empty string).')
    what = f"Input {name!r}"
    shape = _shape(spec.get("shape"), what)
    datatype = spec.get("datatype")
    if datatype not in DATATYPES:
        raise InvalidArgument(
            f'{what} has datatype {datatype!r}; use one of {", ".join(DATATYPES)} (the "datatype" field).'
        )
    count = math.prod(shape)
    if binary is not None:
        array = _from_binary(binary, datatype, count, what)
    else:
        if "data" not in spec:
            raise InvalidArgument(f'{what} has no "data": give its values, flat (row-major) or nested.')
        array = _from_json(spec["data"], datatype, what)
    if array.size != count:
        raise InvalidArgument(
            f"{what} has shape {list(shape)} ({count} elements), but its data holds {array.size}; "
            "make the shape match the data."
        )
    return name, array.reshape(shape)


def encode_tensor(name: str, array: np.ndarray) -> dict[str, Any]:
    """The OIP output tensor `{"name", "datatype", "shape", "data"}` for `array` (data flat, row-major)."""
    if array.dtype.kind in "OUSMm":
        array = _objects_to_numbers(array) if array.dtype.kind == "O" else array
    datatype = datatype_of(array.dtype)
    if datatype == "BYTES":
        data: list[Any] = [_text(v) for v in array.ravel().tolist()]
    else:
        data = array.ravel().tolist()
    return {"name": name, "datatype": datatype, "shape": list(array.shape), "data": data}


def binary_size(spec: Any) -> int | None:
    """`parameters.binary_data_size` of an input (None if its data is in the JSON)."""
    if not isinstance(spec, Mapping):
        return None
    parameters = spec.get("parameters")
    if not isinstance(parameters, Mapping) or "binary_data_size" not in parameters:
        return None
    size = parameters["binary_data_size"]
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise InvalidArgument(f"Input {spec.get('name')!r}: binary_data_size must be a non-negative integer.")
    return size


def _shape(value: Any, what: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in value
    ):
        raise InvalidArgument(f'{what} needs a "shape": a list of non-negative integers, e.g. [1, 4].')
    return tuple(value)


def _from_json(data: Any, datatype: str, what: str) -> np.ndarray:
    if not isinstance(data, list):
        data = [data]  # a scalar tensor's one value
    if datatype == "BYTES":
        flat = _flatten(data, what)
        if not all(isinstance(v, str) for v in flat):
            raise InvalidArgument(
                f"{what} has datatype BYTES, so every element of its data must be a string."
            )
        out = np.empty(len(flat), dtype=object)
        out[:] = flat
        return out
    try:
        array = np.asarray(data)
    except (ValueError, TypeError):
        raise InvalidArgument(
            f"{what}: its nested data is ragged (rows of different lengths); give a flat list or equal rows."
        ) from None
    target = DATATYPES[datatype]
    if array.size == 0:
        return array.astype(target)
    kind = array.dtype.kind
    if datatype == "BOOL":
        ok = kind == "b"
    elif target.kind in "iu":
        if kind in "fO" and _all_ints(data, what):  # beyond int64 (or mixed sizes): numpy made floats
            try:
                return np.array(data, dtype=target)
            except OverflowError:
                raise InvalidArgument(f"{what} has datatype {datatype}, but its data holds integers out of "
                                      "its range.") from None  # fmt: skip
        ok = kind in "iu" and _in_range(array, target)
    else:
        ok = kind in "iuf"
    if not ok:
        raise InvalidArgument(f"{what} has datatype {datatype}, but its data holds {_describe(array)}.")
    return array.astype(target)


def _flatten(data: list[Any], what: str) -> list[Any]:
    if not any(isinstance(v, list) for v in data):
        return data
    flat: list[Any] = []
    for v in data:
        if not isinstance(v, list):
            raise InvalidArgument(f"{what}: its nested data mixes lists and values; nest every row equally.")
        flat.extend(_flatten(v, what))
    return flat


def _all_ints(data: list[Any], what: str) -> bool:
    return all(isinstance(v, int) and not isinstance(v, bool) for v in _flatten(data, what))


def _in_range(array: np.ndarray, target: np.dtype[Any]) -> bool:
    info = np.iinfo(target)
    return bool(array.min() >= info.min and array.max() <= info.max)


def _describe(array: np.ndarray) -> str:
    kind = array.dtype.kind
    if kind in "iu":
        return f"integers out of its range ({array.min()} to {array.max()})"
    return {
        "b": "booleans",
        "f": "floating-point numbers",
        "U": "strings",
        "O": "mixed values (numbers, strings or nulls)",
    }.get(kind, f"{array.dtype} values")


def _from_binary(buffer: memoryview, datatype: str, count: int, what: str) -> np.ndarray:
    if datatype == "BYTES":
        out = np.empty(count, dtype=object)
        offset = 0
        for i in range(count):
            if offset + 4 > len(buffer):
                raise InvalidArgument(f"{what}: its binary BYTES data ends before element {i}.")
            (length,) = struct.unpack_from("<I", buffer, offset)
            offset += 4
            out[i] = bytes(buffer[offset : offset + length])
            offset += length
        if offset != len(buffer):
            raise InvalidArgument(
                f"{what}: its binary BYTES data has {len(buffer) - offset} bytes left over."
            )
        return out
    dtype = DATATYPES[datatype].newbyteorder("<")
    if len(buffer) != count * dtype.itemsize:
        raise InvalidArgument(
            f"{what} has {len(buffer)} bytes of binary data, but its shape and datatype need "
            f"{count * dtype.itemsize}."
        )
    return np.frombuffer(buffer, dtype=dtype).astype(DATATYPES[datatype])


def _objects_to_numbers(array: np.ndarray) -> np.ndarray:
    """An object array of Python numbers or booleans as a numeric array; anything else stays objects."""
    flat = array.ravel()
    if flat.size and not any(isinstance(v, (str, bytes)) for v in flat):
        try:
            converted = np.asarray(flat.tolist())
        except (ValueError, TypeError):
            return array
        if converted.dtype.kind in "biuf":
            return converted.reshape(array.shape)
    return array


def _text(value: Any) -> str:
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return value if isinstance(value, str) else str(value)
