"""Protocol conformance of every endpoint, in-process through the real app (httpx ASGITransport)."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from modelyard.serving.tensors import DATATYPES
from tests.serving.conftest import app_client, oip, served, serving
from tests.serving.models import Identity, TextLength
from tests.serving.test_metrics import scrape, value
from tests.serving.test_tensors import SAMPLES

pytestmark = pytest.mark.anyio

INFER = "/v2/models/iris/infer"


def iris_tensor(iris, rows=slice(0, 3), datatype="FP32"):
    return {"inputs": [oip("x", iris.rows[rows].astype(np.float64), datatype)]}


async def test_server_endpoints(iris):
    async with serving(served("iris", iris.predictor)) as client:
        meta = (await client.get("/v2")).json()
        assert meta["name"] == "modelyard" and isinstance(meta["version"], str) and meta["extensions"] == []
        assert (await client.get("/v2/health/live")).json() == {"live": True}
        assert (await client.get("/v2/health/ready")).status_code == 200
        for path in ("/ping", "/health"):
            assert (await client.get(path)).json() == {"status": "ok"}
        client.deployment.get("iris").batcher._closing = True  # as while draining at shutdown
        assert (await client.get("/v2/health/ready")).status_code == 503
        assert (await client.get("/v2/models/iris/ready")).status_code == 503
        assert (await client.get("/ping")).status_code == 503
        assert (await client.post(INFER, json=iris_tensor(iris))).status_code == 503


async def test_model_metadata_and_readiness(iris):
    async with serving(served("iris", iris.predictor)) as client:
        for path in ("/v2/models/iris", "/v2/models/iris/versions/1"):
            response = await client.get(path)
            assert response.status_code == 200
            assert response.json() == {
                "name": "iris",
                "versions": ["1"],
                "platform": "modelyard_sklearn",
                "inputs": [{"name": c, "datatype": "FP64", "shape": [-1]} for c in iris.columns],
                "outputs": [{"name": "output-0", "datatype": "INT64", "shape": [-1]}],
            }
            ready = await client.get(path + "/ready")
            assert ready.status_code == 200 and ready.json() == {"name": "iris", "ready": True}
        assert (await client.get("/v1/models/iris")).json() == {"name": "iris", "ready": True}


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/v2/models/nope"),
        ("GET", "/v2/models/nope/ready"),
        ("POST", "/v2/models/nope/infer"),
        ("GET", "/v2/models/iris/versions/7"),
        ("GET", "/v2/models/iris/versions/7/ready"),
        ("POST", "/v2/models/iris/versions/7/infer"),
        ("GET", "/v1/models/nope"),
        ("POST", "/v1/models/nope:predict"),
        ("GET", "/v3/whatever"),
        ("POST", "/v2/models//infer"),  # not an inference path: the router's 404
        ("POST", "/v2/models/iris/extra/infer"),
        ("POST", "/v1/models/a/b:predict"),
    ],
)
async def test_unknown_model_version_or_path_is_404_with_error(iris, method, path):
    async with serving(served("iris", iris.predictor)) as client:
        response = await client.request(method, path, json=iris_tensor(iris))
        assert response.status_code == 404
        assert response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert (
            ("'nope'" in error and "serves: iris" in error)
            or "version '7'" in error
            or "No endpoint" in error
        )


async def test_an_unexpected_error_is_a_json_500(iris, monkeypatch):
    async with serving(served("iris", iris.predictor)) as client:

        def broken(*args, **kwargs):
            raise RuntimeError("bug")

        monkeypatch.setattr("modelyard.serving.protocol.decode_v2", broken)
        response = await client.post(INFER, json=iris_tensor(iris))
        assert response.status_code == 500 and "Internal server error" in response.json()["error"]
        metrics = (await client.get("/metrics")).text
        assert 'code="500"' in metrics  # counted like any answer


async def test_wrong_method_is_405_with_error(iris):
    async with serving(served("iris", iris.predictor)) as client:
        response = await client.get(INFER)
        assert response.status_code == 405 and "GET is not allowed" in response.json()["error"]


async def test_oip_infer_flat_nested_and_versioned(iris):
    async with serving(served("iris", iris.predictor)) as client:
        flat = await client.post(INFER, json={"id": "req-1", "inputs": [oip("x", iris.rows[:3], "FP32")]})
        assert flat.status_code == 200, flat.text
        body = flat.json()
        assert body == {
            "model_name": "iris",
            "model_version": "1",
            "id": "req-1",
            "outputs": [
                {"name": "output-0", "datatype": "INT64", "shape": [3], "data": iris.expected[:3].tolist()}
            ],
        }
        nested = {
            "inputs": [{"name": "x", "shape": [3, 4], "datatype": "FP64", "data": iris.rows[:3].tolist()}]
        }
        response = await client.post("/v2/models/iris/versions/1/infer", json=nested)
        assert response.json()["outputs"] == body["outputs"]
        assert len(response.json()["id"]) == 32  # generated when the request has none


async def test_oip_infer_one_tensor_per_column_and_requested_outputs(iris):
    async with serving(served("iris", iris.predictor)) as client:
        inputs = [oip(c, iris.rows[50:52, i], "FP64") for i, c in enumerate(iris.columns)]
        request = {"inputs": inputs, "outputs": [{"name": "output-0"}], "parameters": {"note": "x"}}
        response = await client.post(INFER, json=request)
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][0]["data"] == iris.expected[50:52].tolist()
        inputs[0]["data"] = [[1.0], [2.0]]  # [rows, 1] columns are fine too
        inputs[0]["shape"] = [2, 1]
        assert (await client.post(INFER, json={"inputs": inputs})).status_code == 200
        wrong = await client.post(INFER, json={"inputs": inputs, "outputs": [{"name": "proba"}]})
        assert wrong.status_code == 400
        assert wrong.json() == {"error": "Unknown output 'proba': the model returns output-0."}


RAGGED_ROWS = {"sepal length (cm)": 2, "sepal width (cm)": 3, "petal length (cm)": 2, "petal width (cm)": 2}
RAGGED = json.dumps({"inputs": [oip(c, [1.0] * rows, "FP64") for c, rows in RAGGED_ROWS.items()]}).encode()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{not json", 400, "not valid JSON"),
        (b"", 400, "no body"),
        (b"[1, 2]", 400, "must be a JSON object"),
        (b'{"inputs": []}', 400, '"inputs" must be a non-empty list'),
        (b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP32", "data": [1, 2, 3]}]}', 400,
         r"shape [1, 4] (4 elements), but its data holds 3"),
        (b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "FP99", "data": [1, 2, 3, 4]}]}', 400,
         "datatype 'FP99'"),
        (b'{"inputs": [{"name": "x", "shape": [1, 4], "datatype": "BYTES", "data": ["a", "b", "c", "d"]}]}',
         400, "Column 'sepal length (cm)' has dtype str, but the model's signature expects float64"),
        (b'{"inputs": [{"name": "x", "shape": [1, 3], "datatype": "FP32", "data": [1, 2, 3]}]}', 400,
         "got an array of shape (1, 3)"),
        (b'{"inputs": [{"name": "sepal length (cm)", "shape": [1], "datatype": "FP64", "data": [1]}]}', 400,
         "missing column 'sepal width (cm)'"),
        (b'{"inputs": [{"name": "colour", "shape": [1], "datatype": "FP64", "data": [1]}, '
         b'{"name": "size", "shape": [1], "datatype": "FP64", "data": [1]}]}', 400, "Unknown input 'colour'"),
        (b'{"id": 5, "inputs": [{"name": "x", "shape": [1], "datatype": "FP64", "data": [1]}]}', 400,
         '"id" must be a string'),
        (RAGGED, 400, "columns have different numbers of rows ('sepal length (cm)' has 2, 'sepal width (cm)' "
                      "has 3, 'petal length (cm)' has 2, 'petal width (cm)' has 2)"),
    ],
)  # fmt: skip
async def test_oip_bad_requests_are_400_with_the_reason(iris, body, status, message):
    async with serving(served("iris", iris.predictor)) as client:
        response = await client.post(INFER, content=body, headers={"content-type": "application/json"})
        assert response.status_code == status
        error = response.json()["error"]
        assert message in error, error


@pytest.mark.parametrize("datatype", list(DATATYPES))
async def test_every_oip_datatype_through_a_model(pyfunc, datatype):
    identity = pyfunc("identity", Identity(), signature=False)
    async with serving(served("echo", identity)) as client:
        data = SAMPLES[datatype]
        request = {"inputs": [{"name": "x", "shape": [2, 2], "datatype": datatype, "data": data}]}
        response = await client.post("/v2/models/echo/infer", json=request)
        assert response.status_code == 200, response.text
        assert response.json()["outputs"] == [
            {"name": "output-0", "datatype": datatype, "shape": [2, 2], "data": data}
        ]


async def test_bytes_tensors_json_and_binary(pyfunc):
    text = pyfunc("text", TextLength(), input_example=np.array(["ab", "c"], dtype=object))
    async with serving(served("text", text)) as client:
        meta = (await client.get("/v2/models/text")).json()
        assert meta["inputs"] == [{"name": "input-0", "datatype": "BYTES", "shape": [-1]}]
        response = await client.post(
            "/v2/models/text/infer", json={"inputs": [oip("t", ["héllo", "ok", ""], "BYTES")]}
        )
        assert response.status_code == 200, response.text
        assert response.json()["outputs"] == [
            {"name": "length", "datatype": "INT64", "shape": [3], "data": [5, 2, 0]},
            {"name": "upper", "datatype": "BYTES", "shape": [3], "data": ["HÉLLO", "OK", ""]},
        ]
        raw = b"".join(struct.pack("<I", len(s)) + s for s in ("héllo".encode(), b"ok"))
        header = json.dumps(
            {
                "inputs": [
                    {
                        "name": "t",
                        "shape": [2],
                        "datatype": "BYTES",
                        "parameters": {"binary_data_size": len(raw)},
                    }
                ]
            }
        ).encode()
        response = await client.post(
            "/v2/models/text/infer",
            content=header + raw,
            headers={
                "Inference-Header-Content-Length": str(len(header)),
                "content-type": "application/octet-stream",
            },
        )
        assert response.status_code == 200, response.text
        assert response.json()["outputs"][1]["data"] == ["HÉLLO", "OK"]
        bad = await client.post(
            "/v2/models/text/infer", content=header + raw, headers={"Inference-Header-Content-Length": "9999"}
        )
        assert bad.status_code == 400 and "Inference-Header-Content-Length" in bad.json()["error"]


async def test_kserve_v1_predict(iris):
    async with serving(served("iris", iris.predictor)) as client:
        rows = iris.rows[98:102].tolist()
        for key in ("instances", "inputs"):
            response = await client.post("/v1/models/iris:predict", json={key: rows})
            assert response.status_code == 200
            assert response.json() == {"predictions": iris.expected[98:102].tolist()}
        records = iris.X.iloc[98:100].to_dict(orient="records")
        response = await client.post("/v1/models/iris:predict", json={"instances": records})
        assert response.json() == {"predictions": iris.expected[98:100].tolist()}
        for body, message in (
            ({"rows": rows}, 'Give the rows as "instances"'),
            ({"instances": []}, '"instances" must be a non-empty list'),
            ({"instances": [[1, 2, 3, 4], [1, 2]]}, "ragged"),
            ({"instances": [[1, 2, 3]]}, "got an array of shape (1, 3)"),
            ({"instances": [{"sepal length (cm)": 1.0}]}, "missing column 'sepal width (cm)'"),
        ):
            response = await client.post("/v1/models/iris:predict", json=body)
            assert response.status_code == 400 and message in response.json()["error"], response.text


async def test_mlflow_invocations(iris):
    expected = {"predictions": iris.expected[:3].tolist()}
    frame = iris.X.head(3)
    async with serving(served("iris", iris.predictor)) as client:
        split = frame.to_dict(orient="split")
        for body in (
            {"dataframe_split": split},
            {"dataframe_split": {"columns": split["columns"], "data": split["data"]}},
            {"dataframe_records": frame.to_dict(orient="records")},
            {"instances": iris.rows[:3].tolist()},
            {"inputs": {c: frame[c].tolist() for c in frame.columns}},
            {"inputs": iris.rows[:3].tolist()},
        ):
            response = await client.post("/invocations", json=body)
            assert response.status_code == 200, (body, response.text)
            assert response.json() == expected
        csv = await client.post(
            "/invocations", content=frame.to_csv(index=False), headers={"content-type": "text/csv"}
        )
        assert csv.json() == expected
        for body, status, message in (
            ({"dataframe_split": split, "instances": []}, 400, "exactly one of"),
            ({"records": []}, 400, "unknown field 'records'"),
            ({"dataframe_records": [{"petal width (cm)": 1.0}]}, 400, "missing column 'sepal length (cm)'"),
            ({"dataframe_records": [{c: "x" for c in iris.columns}]}, 400, "has dtype str"),
            ({"dataframe_split": {"columns": ["a"]}}, 400, '"dataframe_split" must be'),
            ({"instances": iris.rows[:1].tolist(), "params": {"k": 1}}, 400, '"params" are not supported'),
        ):
            response = await client.post("/invocations", json=body)
            assert response.status_code == status and message in response.json()["error"], response.text
        xml = await client.post("/invocations", content=b"<x/>", headers={"content-type": "application/xml"})
        assert xml.status_code == 415 and "application/json or text/csv" in xml.json()["error"]


async def test_request_bodies_over_the_limit_are_413_and_leave_the_model_serving(iris):
    body = json.dumps(iris_tensor(iris, slice(0, 50))).encode()
    async with app_client(served("iris", iris.predictor), max_request_bytes=len(body) - 1) as client:
        told = await client.post(INFER, content=body, headers={"Content-Type": "application/json"})
        assert told.status_code == 413, told.text
        assert f"{len(body):,} bytes" in told.json()["error"] and "--max-request-mb" in told.json()["error"]

        async def chunks():  # no Content-Length: refused once the chunks read add up to more than the limit
            yield body[:100]
            yield body[100:]

        streamed = await client.post(
            "/invocations", content=chunks(), headers={"Content-Type": "application/json"}
        )
        assert streamed.status_code == 413 and "or more" in streamed.json()["error"]
        small = await client.post(INFER, json=iris_tensor(iris, slice(0, 2)))
        assert small.status_code == 200 and small.json()["outputs"][0]["data"] == iris.expected[:2].tolist()
        samples = await scrape(client)  # the refusals count for the model they were sent to
        labels = {"model": "iris", "version": "1"}
        assert value(samples, "modelyard_serving_requests_total", **labels, protocol="v2", code="413") == 1
        assert (
            value(samples, "modelyard_serving_requests_total", **labels, protocol="invocations", code="413")
            == 1
        )
        assert value(samples, "modelyard_serving_errors_total", **labels, protocol="v2", code="413",
                     error="PAYLOAD_TOO_LARGE") == 1  # fmt: skip


async def test_generated_request_ids_are_distinct(iris):
    async with serving(served("iris", iris.predictor)) as client:
        ids = {(await client.post(INFER, json=iris_tensor(iris))).json()["id"] for _ in range(5)}
        assert len(ids) == 5 and all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


def test_responses_encode_numpy_values_and_any_bytes():
    from modelyard.serving.protocol import dumps, loads

    value = {"a": [np.float32(1.5), np.int64(3)], "b": np.arange(3), "c": float("nan"), "d": [b"ok"]}
    assert dumps(value) == b'{"a":[1.5,3],"b":[0,1,2],"c":NaN,"d":["ok"]}'
    assert json.loads(dumps({"x": [b"\xff", b"ok"]})) == {"x": ["\ufffd", "ok"]}  # not UTF-8: replaced
    assert loads(b'{"x": [1e400, NaN]}')["x"][0] == float("inf")
