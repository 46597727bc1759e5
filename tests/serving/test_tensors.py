"""OIP v2 tensors: every datatype, flat and nested data, shapes, binary data, and the errors' messages."""

from __future__ import annotations

import struct
from typing import Any

import numpy as np
import pytest

from modelyard.errors import InvalidArgument
from modelyard.serving.tensors import DATATYPES, datatype_of, decode_tensor, encode_tensor

SAMPLES: dict[str, list[Any]] = {
    "BOOL": [True, False, True, True],
    "UINT8": [0, 1, 254, 255],
    "UINT16": [0, 1, 65534, 65535],
    "UINT32": [0, 1, 2**32 - 2, 2**32 - 1],
    "UINT64": [0, 1, 2**63, 2**64 - 1],
    "INT8": [-128, -1, 0, 127],
    "INT16": [-(2**15), -1, 0, 2**15 - 1],
    "INT32": [-(2**31), -1, 0, 2**31 - 1],
    "INT64": [-(2**63), -1, 0, 2**63 - 1],
    "FP16": [0.5, -1.0, 2.0, 65504.0],
    "FP32": [0.25, -1.5, 3.0, 2.0**100],
    "FP64": [0.1, -1e300, 3.0, 2.5],
    "BYTES": ["a", "", "héllo", "ωμέγα"],
}


def tensor(datatype: str, data, shape=(2, 2)) -> dict:
    return {"name": "x", "shape": list(shape), "datatype": datatype, "data": data}


@pytest.mark.parametrize("datatype", list(DATATYPES))
def test_every_datatype_round_trips_flat_and_nested(datatype):
    flat = SAMPLES[datatype]
    name, array = decode_tensor(tensor(datatype, flat), "inputs[0]")
    assert name == "x" and array.shape == (2, 2) and array.dtype == DATATYPES[datatype]
    _, nested = decode_tensor(tensor(datatype, [flat[:2], flat[2:]]), "inputs[0]")
    np.testing.assert_array_equal(nested, array)
    encoded = encode_tensor("y", array)
    assert encoded == {"name": "y", "datatype": datatype, "shape": [2, 2], "data": flat}


@pytest.mark.parametrize(
    ("dtype", "datatype"),
    [("float32", "FP32"), ("int64", "INT64"), ("bool", "BOOL"), ("str", "BYTES"), ("object", "BYTES"),
     ("uint16", "UINT16"), ("category", "BYTES")],
)  # fmt: skip
def test_signature_dtypes_map_to_datatypes(dtype, datatype):
    assert datatype_of(dtype) == datatype


def test_outputs_of_python_objects_and_bytes():
    assert encode_tensor("o", np.array([1, 2], dtype=object))["datatype"] == "INT64"
    assert encode_tensor("o", np.array([b"ab", "c"], dtype=object))["data"] == ["ab", "c"]
    assert encode_tensor("o", np.array(["ab", "c"]))["datatype"] == "BYTES"
    assert encode_tensor("o", np.array(1.5, dtype=np.float32))["shape"] == []


def test_scalar_and_empty_tensors():
    _, scalar = decode_tensor({"name": "s", "shape": [], "datatype": "FP32", "data": [2.0]}, "i")
    assert scalar.shape == () and scalar == 2.0
    _, empty = decode_tensor({"name": "e", "shape": [0, 4], "datatype": "INT32", "data": []}, "i")
    assert empty.shape == (0, 4) and empty.dtype == np.int32


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (tensor("FP32", [1, 2, 3]), r"shape \[2, 2\] \(4 elements\), but its data holds 3"),
        (tensor("FP32", [[1, 2], [3]]), "ragged"),
        (tensor("FLOAT", [1, 2, 3, 4]), "datatype 'FLOAT'; use one of BOOL"),
        (tensor("FP32", ["a", "b", "c", "d"]), "datatype FP32, but its data holds strings"),
        (tensor("INT32", [1.5, 2, 3, 4]), "datatype INT32, but its data holds floating-point numbers"),
        (tensor("INT8", [1, 2, 3, 300]), r"integers out of its range \(1 to 300\)"),
        (tensor("UINT8", [-1, 2, 3, 4]), "out of its range"),
        (tensor("BOOL", [1, 0, 1, 0]), "datatype BOOL, but its data holds integers"),
        (tensor("BYTES", ["a", 1, "b", "c"]), "every element of its data must be a string"),
        (tensor("FP64", [1, None, 2, 3]), "mixed values"),
        ({"name": "x", "shape": [2], "datatype": "FP32"}, 'has no "data"'),
        ({"name": "x", "shape": "2", "datatype": "FP32", "data": [1, 2]}, "list of non-negative integers"),
        ({"name": "x", "shape": [-1], "datatype": "FP32", "data": [1]}, "list of non-negative integers"),
        ({"shape": [1], "datatype": "FP32", "data": [1]}, 'inputs\\[0\\] needs a "name"'),
        ([1, 2], "must be an object"),
    ],
)
def test_bad_tensors_say_what_to_fix(spec, message):
    with pytest.raises(InvalidArgument, match=message):
        decode_tensor(spec, "inputs[0]")


def test_binary_tensor_data():
    values = np.array([[1.5, 2.5], [3.5, 4.5]], dtype=np.float32)
    _, array = decode_tensor(tensor("FP32", None), "i", memoryview(values.tobytes()))
    np.testing.assert_array_equal(array, values)
    raw = b"".join(struct.pack("<I", len(s)) + s for s in (b"ab", b"", b"c", b"\xff"))
    _, texts = decode_tensor(tensor("BYTES", None), "i", memoryview(raw))
    assert texts.ravel().tolist() == [b"ab", b"", b"c", b"\xff"]
    with pytest.raises(
        InvalidArgument, match="has 15 bytes of binary data, but its shape and datatype need 16"
    ):
        decode_tensor(tensor("FP32", None), "i", memoryview(values.tobytes()[:15]))
    with pytest.raises(InvalidArgument, match="ends before element 3"):
        decode_tensor(tensor("BYTES", None), "i", memoryview(raw[:-2]))
