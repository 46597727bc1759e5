"""The server app in-process: errors are 4xx with a code and a message that says what to fix, never a 500."""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from modelyard.schemas import MetricHistory
from modelyard.server import ServerSettings, create_app
from modelyard.tracking.history import downsample


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(
        ServerSettings(
            backend_store_uri=f"sqlite:///{tmp_path / 's.db'}", artifacts_uri=str(tmp_path), max_body_mb=1
        )
    )
    with TestClient(app) as client:
        yield client


def _run(api: TestClient) -> str:
    return str(api.post("/api/v1/runs", json={"experiment_id": "0"}).json()["info"]["run_id"])


def test_health_ready_and_openapi(api: TestClient) -> None:
    assert api.get("/health").json() == {"status": "ok"}
    assert api.get("/ready").json() == {"status": "ready"}
    spec = api.get("/api/v1/openapi.json").json()
    assert "/api/v1/runs/search" in spec["paths"] and spec["info"]["title"] == "Modelyard tracking API"


@pytest.mark.parametrize(
    ("method", "path", "kwargs", "status", "code", "fragment"),
    [
        (
            "post",
            "/api/v1/experiments",
            {"content": b"{not json", "headers": {"content-type": "application/json"}},
            400,
            "INVALID_PARAMETER_VALUE",
            "not valid JSON",
        ),
        ("post", "/api/v1/experiments", {"json": {"name": 3}}, 400, "INVALID_PARAMETER_VALUE", "name"),
        ("post", "/api/v1/experiments", {"json": {"name": ""}}, 400, "INVALID_PARAMETER_VALUE", "non-empty"),
        ("post", "/api/v1/experiments", {"json": {}}, 400, "INVALID_PARAMETER_VALUE", "name: Field required"),
        ("get", "/api/v1/experiments/abc", {}, 400, "INVALID_PARAMETER_VALUE", "integers"),
        ("get", "/api/v1/experiments/999", {}, 404, "RESOURCE_DOES_NOT_EXIST", "999"),
        ("get", "/api/v1/runs/" + "f" * 32, {}, 404, "RESOURCE_DOES_NOT_EXIST", "No run"),
        ("get", "/api/v1/runs/bad%20id", {}, 400, "INVALID_PARAMETER_VALUE", "run id"),
        (
            "post",
            "/api/v1/runs/search",
            {"json": {"experiment_ids": ["0"], "max_results": 0}},
            400,
            "INVALID_PARAMETER_VALUE",
            "max_results",
        ),
        (
            "post",
            "/api/v1/runs/search",
            {"json": {"experiment_ids": ["0"], "filter": "metrics.a >"}},
            400,
            "INVALID_PARAMETER_VALUE",
            "position 11",
        ),
        ("get", "/api/v1/nothing-here", {}, 404, "ENDPOINT_NOT_FOUND", "Not Found"),
        ("delete", "/api/v1/experiments", {}, 405, "METHOD_NOT_ALLOWED", "Not Allowed"),
    ],
)
def test_bad_input_is_a_clear_4xx(
    api: TestClient, method: str, path: str, kwargs: dict, status: int, code: str, fragment: str
) -> None:
    response = getattr(api, method)(path, **kwargs)
    assert response.status_code == status
    body = response.json()
    assert body["error_code"] == code and fragment in body["message"]


def test_conflicts_and_wrong_metric_types(api: TestClient) -> None:
    run_id = _run(api)
    assert (
        api.post(
            f"/api/v1/runs/{run_id}/log-batch", json={"params": [{"key": "a", "value": "1"}]}
        ).status_code
        == 200
    )
    conflict = api.post(f"/api/v1/runs/{run_id}/log-batch", json={"params": [{"key": "a", "value": "2"}]})
    assert conflict.status_code == 409 and "'1'" in conflict.json()["message"]
    wrong = api.post(
        f"/api/v1/runs/{run_id}/log-batch", json={"metrics": [{"key": "m", "value": "x", "timestamp": 1}]}
    )
    assert wrong.status_code == 400 and "metrics.0.value" in wrong.json()["message"]


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        (b"{not json", "not valid JSON"),
        (b"", "not valid JSON"),
        (b'{"metrics": [{"key": "m", "value": 1, "timestamp": 1, "bogus": 2}]}', "metrics.0.bogus"),
        (b'{"metrics": [{"key": "m", "value": 1}]}', "metrics.0.timestamp: Field required"),
        (b'{"params": "nope"}', "params"),
        (b"[]", "body"),
        (b'{"sequence": {"writer_id": "nothex", "first_seq": 1}}', "sequence.writer_id"),
        (b'{"sequence": {"writer_id": "' + b"a" * 32 + b'", "first_seq": 0}}', "sequence.first_seq"),
    ],
)
def test_log_batch_parses_its_own_body_with_clear_400s(api: TestClient, body: bytes, fragment: str) -> None:
    # The route validates the raw bytes itself (no FastAPI body parameter): same 400s, naming the field.
    response = api.post(
        f"/api/v1/runs/{_run(api)}/log-batch", content=body, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert (
        response.json()["error_code"] == "INVALID_PARAMETER_VALUE" and fragment in response.json()["message"]
    )


def test_log_batch_body_is_in_the_openapi_spec(api: TestClient) -> None:
    operation = api.get("/api/v1/openapi.json").json()["paths"]["/api/v1/runs/{run_id}/log-batch"]["post"]
    schema = operation["requestBody"]["content"]["application/json"]["schema"]
    assert schema["additionalProperties"] is False and set(schema["properties"]) == {
        "metrics",
        "params",
        "tags",
        "sequence",
    }
    metric = schema["properties"]["metrics"]["items"]
    assert set(metric["required"]) == {"key", "value", "timestamp"} and "$ref" not in str(schema)


def test_oversized_body_is_refused_before_reading(api: TestClient) -> None:
    run_id = _run(api)
    big = {"metrics": [{"key": "m", "value": 1.0, "timestamp": 1, "step": i} for i in range(40_000)]}
    response = api.post(f"/api/v1/runs/{run_id}/log-batch", json=big)
    assert response.status_code == 413 and "1 MB" in response.json()["message"]
    assert api.get(f"/api/v1/runs/{run_id}/metrics").json() == {"metrics": []}  # nothing half-written


def test_special_floats_travel_as_strings(api: TestClient) -> None:
    run_id = _run(api)
    metrics = [
        {"key": "v", "value": v, "timestamp": 1, "step": i} for i, v in enumerate(["NaN", "Infinity", -1.5])
    ]
    assert api.post(f"/api/v1/runs/{run_id}/log-batch", json={"metrics": metrics}).status_code == 200
    history = MetricHistory.model_validate(api.get(f"/api/v1/runs/{run_id}/metrics/v/history").json())
    assert math.isnan(history.values[0]) and history.values[1:] == [math.inf, -1.5]


def test_history_downsampling_keeps_extremes(api: TestClient) -> None:
    run_id = _run(api)
    values = [math.sin(i / 50) for i in range(10_000)]
    values[4321] = 99.0  # a spike that must survive
    metrics = [{"key": "s", "value": v, "timestamp": i, "step": i} for i, v in enumerate(values)]
    for start in range(0, len(metrics), 5000):
        api.post(f"/api/v1/runs/{run_id}/log-batch", json={"metrics": metrics[start : start + 5000]})
    small = api.get(f"/api/v1/runs/{run_id}/metrics/s/history", params={"max_points": 100}).json()
    assert len(small["steps"]) <= 100 and 99.0 in small["values"] and min(small["values"]) == min(values)
    assert small["steps"] == sorted(small["steps"])
    bad = api.get(f"/api/v1/runs/{run_id}/metrics/s/history", params={"max_points": 1})
    assert bad.status_code == 400


def test_downsample_function() -> None:
    h = MetricHistory(
        key="k", steps=list(range(10)), values=[float(v) for v in range(10)], timestamps=[0] * 10
    )
    assert downsample(h, 20) == h
    d = downsample(h, 4)
    assert d.values == [0.0, 4.0, 5.0, 9.0] and d.steps == [0, 4, 5, 9]
    with_nan = MetricHistory(
        key="k", steps=[0, 1, 2, 3], values=[math.nan, 1.0, 2.0, math.nan], timestamps=[0] * 4
    )
    assert downsample(with_nan, 2).values == [1.0, 2.0]


def test_keys_with_slashes_route(api: TestClient) -> None:
    run_id = _run(api)
    api.post(
        f"/api/v1/runs/{run_id}/log-batch",
        json={
            "metrics": [{"key": "val/loss", "value": 1, "timestamp": 1}],
            "tags": [{"key": "a/b", "value": "x"}],
        },
    )
    assert api.get(f"/api/v1/runs/{run_id}/metrics/val/loss/history").json()["values"] == [1.0]
    assert api.delete(f"/api/v1/runs/{run_id}/tags/a/b").status_code == 200
