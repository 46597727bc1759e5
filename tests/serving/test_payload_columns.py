"""Tables decoded as numpy columns (the model server's fast path) give what the pandas path gives: the same
batch DataFrame (columns, dtypes, values), or the same error."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from modelyard.errors import InvalidArgument
from modelyard.models.signature import enforce, enforce_columns
from modelyard.schemas.models import FieldSpec, Schema
from modelyard.serving import payload as payloads
from modelyard.serving import protocol

pd = pytest.importorskip("pandas")

NAMES = ["a", "b", "c"]
DTYPES = ["float64", "int64", "int32", "bool", "float32", "str"]
VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=False, width=64),
    st.integers(-(2**40), 2**40),
    st.sampled_from([0, 1, -1, 2**63 - 1, 2**63, 2**64, -(2**63), 0.0, 1.0, -0.0]),
    st.booleans(),
    st.none(),
    st.sampled_from(["x", ""]),
)


@st.composite
def schemas(draw: Any) -> Schema:
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=3, unique=True))
    fields = tuple(
        FieldSpec(
            name=n,
            dtype=draw(st.sampled_from(DTYPES[:5] if draw(st.booleans()) else DTYPES)),
            optional=draw(st.booleans()) and draw(st.booleans()),
        )
        for n in names
    )
    return Schema(type="dataframe", fields=fields)


@st.composite
def tables(draw: Any) -> tuple[list[str], list[list[Any]]]:
    columns = draw(st.lists(st.sampled_from([*NAMES, "extra"]), min_size=1, max_size=4, unique=True))
    rows = draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["float", "int", "bool", "any"]))  # mostly columns of one kind
    column_values = []
    for _ in columns:
        strategy = {
            "float": st.floats(allow_nan=False, allow_infinity=False, width=64),
            "int": st.integers(-(2**31), 2**31),
            "bool": st.booleans(),
            "any": VALUES,
        }[draw(st.sampled_from([kind, kind, "any"]))]
        column_values.append(draw(st.lists(strategy, min_size=rows, max_size=rows)))
    return columns, [list(row) for row in zip(*column_values)]


def reference(schema: Schema, frame_of: Any) -> Any:
    """The pandas path: a DataFrame, then `enforce` (the outcome: a frame, or the error's message)."""
    try:
        return enforce(schema, frame_of())
    except InvalidArgument as exc:
        return exc.message
    except (ValueError, TypeError) as exc:  # pandas refused to build the frame
        return f"pandas: {type(exc).__name__}"


def outcome(decode: Any) -> Any:
    try:
        payload = decode()
    except InvalidArgument as exc:
        return exc.message
    except (ValueError, TypeError) as exc:
        return f"pandas: {type(exc).__name__}"
    return payloads.concat([payload])


def assert_same(got: Any, want: Any) -> None:
    if isinstance(want, str) or isinstance(got, str):
        assert got == want
        return
    assert list(got.columns) == list(want.columns)
    assert [str(d) for d in got.dtypes] == [str(d) for d in want.dtypes]
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True), want.reset_index(drop=True), check_column_type=False
    )


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(schema=schemas(), table=tables())
def test_dataframe_split_and_records_match_the_pandas_path(schema: Schema, table: Any) -> None:
    columns, data = table
    body = json.dumps({"dataframe_split": {"columns": columns, "data": data}}).encode()
    want = reference(
        schema, lambda: pd.DataFrame(json.loads(body)["dataframe_split"]["data"], columns=columns)
    )
    assert_same(outcome(lambda: protocol.decode_invocations(body, "application/json", schema)), want)

    records = [dict(zip(columns, row)) for row in json.loads(body)["dataframe_split"]["data"]]
    want = reference(schema, lambda: pd.DataFrame.from_records(records))
    body = json.dumps({"dataframe_records": records}).encode()
    assert_same(outcome(lambda: protocol.decode_invocations(body, "application/json", schema)), want)


@settings(max_examples=200, deadline=None)
@given(
    schema=schemas(),
    dtype=st.sampled_from(["float64", "float32", "int64", "int32", "uint8", "bool"]),
    width=st.integers(1, 4),
)
def test_arrays_and_dicts_of_columns_match_the_pandas_path(schema: Schema, dtype: str, width: int) -> None:
    array = (np.arange(3 * width).reshape(3, width) % 2).astype(dtype)
    want = (
        reference(schema, lambda: pd.DataFrame(array, columns=schema.names))
        if width == len(schema.names)
        else None
    )
    if want is not None:
        assert_same(outcome(lambda: payloads._fit(schema, array)), want)
    columns = {name: array[:, i % width] for i, name in enumerate([*NAMES[:width], "extra"])}
    want = reference(schema, lambda: pd.DataFrame(columns))
    assert_same(outcome(lambda: payloads._fit(schema, columns)), want)


def test_a_batch_of_column_payloads_is_one_dataframe_in_the_signature_order() -> None:
    schema = Schema(
        type="dataframe", fields=(FieldSpec(name="b", dtype="float64"), FieldSpec(name="a", dtype="int64"))
    )
    parts = [
        protocol.decode_invocations(
            json.dumps({"dataframe_split": {"columns": ["a", "b"], "data": [[i, i / 2]]}}).encode(),
            None,
            schema,
        )
        for i in range(3)
    ]
    assert all(p.key == parts[0].key and p.rows == 1 for p in parts)
    assert isinstance(parts[0].inputs, dict)  # numpy columns per request: no DataFrame yet
    batch = payloads.concat(parts)
    assert list(batch.columns) == ["b", "a"]
    assert [str(d) for d in batch.dtypes] == ["float64", "int64"]
    assert batch["a"].tolist() == [0, 1, 2] and batch["b"].tolist() == [0.0, 0.5, 1.0]
    checked = enforce(schema, batch)  # a conforming DataFrame: copied as it is
    assert checked is not batch
    pd.testing.assert_frame_equal(checked, batch)


def test_missing_and_uncastable_columns_name_the_column() -> None:
    schema = Schema(
        type="dataframe", fields=(FieldSpec(name="x", dtype="int64"), FieldSpec(name="y", dtype="float64"))
    )
    with pytest.raises(InvalidArgument, match="missing column 'y'"):
        enforce_columns(schema, {"x": np.array([1])})
    with pytest.raises(InvalidArgument, match=r"Column 'x' has dtype float64.*expects int64"):
        enforce_columns(schema, {"x": np.array([1.5]), "y": np.array([1.0])})
    assert enforce_columns(schema, {"x": np.array(["a"]), "y": np.array([1.0])}) is None  # pandas decides


@pytest.mark.parametrize(
    ("dtype", "sent", "expected"),
    [
        ("float32", [[0.1, 2.0]], np.array([[0.1, 2.0]], dtype=np.float32)),
        ("float32", [[1, 2]], np.array([[1, 2]], dtype=np.float32)),
        ("int32", [[1, 2]], np.array([[1, 2]], dtype=np.int32)),
        ("float64", [[1, 2]], np.array([[1.0, 2.0]])),
    ],
)
def test_json_numbers_take_the_tensor_signature_width(dtype: str, sent: Any, expected: np.ndarray) -> None:
    schema = Schema(type="tensor", fields=(FieldSpec(dtype=dtype, shape=(-1, 2)),))
    for body in ({"inputs": sent}, {"instances": sent}):
        payload = protocol.decode_invocations(json.dumps(body).encode(), "application/json", schema)
        assert payload.inputs.dtype == expected.dtype
        np.testing.assert_array_equal(payload.inputs, expected)


@pytest.mark.parametrize(
    ("dtype", "sent", "message"),
    [
        ("int32", [[1.5, 2]], "has dtype float64, but the model's signature expects int32"),
        ("int32", [[2**40, 2]], "has dtype int64, but the model's signature expects int32"),
        ("uint8", [[-1, 2]], "has dtype int64, but the model's signature expects uint8"),
    ],
)
def test_json_numbers_that_do_not_fit_are_still_refused(dtype: str, sent: Any, message: str) -> None:
    schema = Schema(type="tensor", fields=(FieldSpec(dtype=dtype, shape=(-1, 2)),))
    with pytest.raises(InvalidArgument, match=message):
        protocol.decode_invocations(json.dumps({"inputs": sent}).encode(), "application/json", schema)
