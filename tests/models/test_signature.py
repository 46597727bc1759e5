"""Signature inference from examples and enforcement errors that name the column or tensor."""

from __future__ import annotations

import json

import numpy as np
import pytest

from modelyard.errors import InvalidArgument
from modelyard.models import ModelSignature, infer_signature
from modelyard.models.signature import enforce, infer_schema
from modelyard.schemas.models import FieldSpec, Schema

pd = pytest.importorskip("pandas")


def test_dataframe_columns_and_dtypes():
    frame = pd.DataFrame(
        {
            "age": np.array([1, 2], dtype=np.int32),
            "score": [0.5, 1.5],
            "name": ["a", "b"],
            "ok": [True, False],
            "when": pd.to_datetime(["2024-01-01", "2024-01-02"]),
        }
    )
    schema = infer_schema(frame)
    assert schema.type == "dataframe"
    assert [(f.name, f.dtype) for f in schema.fields] == [
        ("age", "int32"),
        ("score", "float64"),
        ("name", "str"),
        ("ok", "bool"),
        ("when", str(frame["when"].dtype)),
    ]
    assert all(f.shape is None for f in schema.fields)


def test_arrays_and_dicts_of_arrays():
    schema = infer_schema(np.zeros((5, 3, 2), dtype=np.float32))
    assert schema.type == "tensor"
    assert schema.fields == (FieldSpec(dtype="float32", shape=(-1, 3, 2)),)
    named = infer_schema({"ids": np.array([[1, 2]]), "mask": np.array([[True, False]])})
    assert named.type == "tensors"
    assert [(f.name, f.dtype, f.shape) for f in named.fields] == [
        ("ids", "int64", (-1, 2)),
        ("mask", "bool", (-1, 2)),
    ]
    assert infer_schema([[1.0, 2.0]]).fields[0].shape == (-1, 2)  # lists become arrays


def test_torch_tensors_are_inferred_like_arrays():
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'modelyard[torch]')")
    schema = infer_schema(torch.zeros(4, 8))
    assert schema.fields == (FieldSpec(dtype="float32", shape=(-1, 8)),)


def test_signature_is_json_serializable():
    signature = infer_signature(pd.DataFrame({"x": [1.0]}), np.array([1]))
    text = signature.model_dump_json()
    assert json.loads(text)["inputs"]["fields"][0]["name"] == "x"
    assert ModelSignature.model_validate_json(text) == signature


def _columns(**dtypes: str) -> Schema:
    return Schema(type="dataframe", fields=tuple(FieldSpec(name=n, dtype=d) for n, d in dtypes.items()))


def test_missing_column_is_named():
    with pytest.raises(InvalidArgument, match=r"missing column 'b' \(the model's signature expects: a, b\)"):
        enforce(_columns(a="float64", b="float64"), pd.DataFrame({"a": [1.0]}))


def test_optional_column_may_be_missing():
    schema = Schema(
        type="dataframe",
        fields=(FieldSpec(name="a", dtype="float64"), FieldSpec(name="b", dtype="float64", optional=True)),
    )
    assert list(enforce(schema, pd.DataFrame({"a": [1.0]})).columns) == ["a"]


def test_safe_casts_are_applied():
    out = enforce(
        _columns(a="float64", b="int64"), pd.DataFrame({"a": [1, 2], "b": np.array([3, 4], np.int8)})
    )
    assert out["a"].dtype == np.float64
    assert out["b"].dtype == np.int64


def test_unsafe_cast_is_refused_with_the_column_and_dtypes():
    with pytest.raises(InvalidArgument, match=r"Column 'n' has dtype float64.*expects int64.*cannot be cast"):
        enforce(_columns(n="int64"), pd.DataFrame({"n": [1.5]}))
    with pytest.raises(InvalidArgument, match=r"Column 'x' has dtype .*str.*expects float32"):
        enforce(_columns(x="float32"), pd.DataFrame({"x": ["1.0"]}))


def test_string_columns():
    schema = _columns(name="str")
    assert enforce(schema, pd.DataFrame({"name": ["a", "b"]}))["name"].tolist() == ["a", "b"]
    with pytest.raises(InvalidArgument, match=r"Column 'name' holds integer values.*expects str"):
        enforce(schema, pd.DataFrame({"name": [1, 2]}))


def test_missing_values_cannot_become_integers():
    frame = pd.DataFrame({"n": pd.array([1, None], dtype="Int64")})
    with pytest.raises(InvalidArgument, match="Column 'n' has missing values"):
        enforce(_columns(n="int64"), frame)
    assert (
        enforce(_columns(n="int64"), pd.DataFrame({"n": pd.array([1, 2], dtype="Int64")}))["n"].dtype
        == np.int64
    )


def test_array_with_the_wrong_number_of_columns():
    with pytest.raises(InvalidArgument, match=r"columns a, b; got an array of shape \(2, 3\)"):
        enforce(_columns(a="float64", b="float64"), np.zeros((2, 3)))


def test_tensor_shape_and_dtype_errors():
    schema = Schema(type="tensor", fields=(FieldSpec(name="pixels", dtype="float32", shape=(-1, 4)),))
    assert enforce(schema, np.zeros((7, 4), np.float32)).shape == (7, 4)  # any batch size
    assert enforce(schema, np.zeros((2, 4), np.float16)).dtype == np.float32  # safe widening
    with pytest.raises(
        InvalidArgument, match=r"Tensor 'pixels' has shape \(3, 5\).*\(any, 4\): dimension 1 is 5, expected 4"
    ):
        enforce(schema, np.zeros((3, 5), np.float32))
    with pytest.raises(
        InvalidArgument, match=r"Tensor 'pixels' has shape \(4,\) \(1 dimensions\).*expects 2 dimensions"
    ):
        enforce(schema, np.zeros(4, np.float32))
    with pytest.raises(InvalidArgument, match=r"Tensor 'pixels' has dtype float64.*expects float32"):
        enforce(schema, np.zeros((2, 4)))


def test_named_tensors():
    schema = Schema(
        type="tensors",
        fields=(
            FieldSpec(name="ids", dtype="int64", shape=(-1, 3)),
            FieldSpec(name="mask", dtype="bool", shape=(-1, 3)),
        ),
    )
    out = enforce(schema, {"ids": np.ones((2, 3), np.int32), "mask": np.ones((2, 3), bool), "extra": 1})
    assert set(out) == {"ids", "mask"} and out["ids"].dtype == np.int64
    with pytest.raises(InvalidArgument, match="missing tensor 'mask'"):
        enforce(schema, {"ids": np.ones((2, 3), np.int64)})
    with pytest.raises(InvalidArgument, match="pass a dict of arrays"):
        enforce(schema, np.ones((2, 3)))


def test_unnamed_tensor_accepts_lists_and_single_entry_dicts():
    schema = Schema(type="tensor", fields=(FieldSpec(dtype="float64", shape=(-1, 2)),))
    assert enforce(schema, [[1.0, 2.0]]).shape == (1, 2)
    assert enforce(schema, {"x": [[1.0, 2.0]]}).shape == (1, 2)
    with pytest.raises(InvalidArgument, match="The input tensor has shape"):
        enforce(schema, [1.0, 2.0])
