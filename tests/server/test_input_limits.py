"""Input past what the stores can hold, through the real app: a clear 400 in the API's JSON error format on
/api/v1 and on the MLflow REST API alike (never a 5xx), and nothing stored."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.testclient import TestClient

from modelyard.server import ServerSettings, create_app
from modelyard.server.mlflow_compat import experiments, logged_models, registry, run_data, runs

MLFLOW = "/api/2.0/mlflow"


@pytest.fixture
def api(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(
        ServerSettings(backend_store_uri=f"sqlite:///{tmp_path / 's.db'}", artifacts_uri=str(tmp_path / "a"))
    )
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def _run(api: TestClient) -> str:
    return str(api.post("/api/v1/runs", json={"experiment_id": "0"}).json()["info"]["run_id"])


def _post(api: TestClient, path: str, body: bytes | str) -> tuple[int, dict[str, str]]:
    raw = body.encode() if isinstance(body, str) else body
    response = api.post(path, content=raw, headers={"content-type": "application/json"})
    return response.status_code, response.json()


# artifact names and paths ----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("rel", "fragment"),
    [
        ("a" * 256 + ".txt", "file systems allow 255"),
        ("dir/" + "é" * 128 + "/f.txt", "256 bytes long"),  # 128 characters, 256 bytes in UTF-8
        ("/".join(["d" * 200] * 6), "the limit is 1024"),  # every name fits, the whole path does not
    ],
)
def test_artifact_paths_past_file_system_and_s3_limits_are_400(
    api: TestClient, tmp_path: Path, rel: str, fragment: str
) -> None:
    run_id = _run(api)
    answers = [
        api.put(f"/api/v1/runs/{run_id}/artifacts/{rel}", content=b"x"),
        api.post(f"/api/v1/runs/{run_id}/artifact-uploads", json={"path": rel, "size": 1}),
        api.put(f"/api/2.0/mlflow-artifacts/artifacts/0/{run_id}/artifacts/{rel}", content=b"x"),
    ]
    for response in answers:
        assert response.status_code == 400, response.text
        error = response.json()
        assert error["error_code"] == "INVALID_PARAMETER_VALUE" and fragment in error["message"], error
    assert api.get(f"/api/v1/runs/{run_id}/artifacts").json()["files"] == []
    fine = "a" * 255 + "/" + "é" * 126 + ".t"  # at the limits: stored
    assert api.put(f"/api/v1/runs/{run_id}/artifacts/{fine}", content=b"x").status_code == 200


# deeply nested JSON --------------------------------------------------------------------------------------
DEEP = b'{"name": ' + b"[" * 5000 + b"]" * 5000 + b"}"


def test_deeply_nested_json_is_400_on_every_mlflow_route(api: TestClient) -> None:
    """The MLflow routes parse bodies as /api/v1's log-batch does (pydantic's parser and its nesting limit)."""
    v1_status, v1_error = _post(api, f"/api/v1/runs/{_run(api)}/log-batch", DEEP)
    assert v1_status == 400 and "recursion limit exceeded" in v1_error["message"]
    answered = 0
    parts = (
        experiments.router,
        runs.router,
        run_data.router,
        logged_models.router,
        logged_models.outputs_router,
    )
    for part in (*parts, registry.router):
        for route in part.routes:
            path = MLFLOW + route.path.replace("{model_id}", "m-" + "0" * 32 + "-0").replace(
                "{key:path}", "k"
            )
            for method in sorted(route.methods - {"GET", "HEAD"}):
                response = api.request(
                    method, path, content=DEEP, headers={"content-type": "application/json"}
                )
                error = response.json()
                assert response.status_code in (400, 404), (method, path, response.text)  # 404: reads no body
                if response.status_code == 400:
                    assert error["error_code"] == "INVALID_PARAMETER_VALUE", (method, path)
                    assert "not valid JSON: recursion limit exceeded" in error["message"], (method, path)
                    answered += 1
    assert answered >= 35


# metric values past the float range ------------------------------------------------------------------------
HUGE = ["1" + "0" * 400, "-1" + "0" * 400, "1e400", "-1e400"]  # each would parse as ±infinity


@pytest.mark.parametrize("value", HUGE)
def test_metric_values_past_the_float_range_are_400_and_not_stored(api: TestClient, value: str) -> None:
    run_id = _run(api)
    point = {"key": "m", "value": "VALUE", "timestamp": 1, "step": 0}
    for path, body in [
        (f"/api/v1/runs/{run_id}/log-batch", {"metrics": [point]}),
        (f"/api/v1/runs/{run_id}/end", {"status": "FINISHED", "metrics": [point]}),
        (f"{MLFLOW}/runs/log-metric", {"run_id": run_id, **point}),
        (f"{MLFLOW}/runs/log-batch", {"run_id": run_id, "metrics": [point]}),
    ]:
        status, error = _post(api, path, json.dumps(body).replace('"VALUE"', value))
        assert status == 400, (path, error)
        assert error["error_code"] == "INVALID_PARAMETER_VALUE" and "float range" in error["message"], error
    run = api.get(f"/api/v1/runs/{run_id}").json()
    assert run["info"]["status"] == "RUNNING" and run["data"]["metrics"] == {}


def test_infinity_and_nan_as_strings_are_still_stored(api: TestClient) -> None:
    run_id = _run(api)
    points = [{"key": "m", "value": v, "timestamp": 1, "step": i} for i, v in enumerate(["Infinity", "NaN"])]
    assert api.post(f"/api/v1/runs/{run_id}/log-batch", json={"metrics": points}).status_code == 200
    body = {"run_id": run_id, "key": "m", "value": "-Infinity", "timestamp": 1, "step": 2}
    assert api.post(f"{MLFLOW}/runs/log-metric", json=body).status_code == 200
    assert api.get(f"/api/v1/runs/{run_id}/metrics/m/history").json()["values"] == [
        "Infinity",
        "NaN",
        "-Infinity",
    ]


# search filters past what one query holds ------------------------------------------------------------------
def test_a_filter_of_1100_or_terms_is_400_naming_the_limit(api: TestClient) -> None:
    terms = " OR ".join(f"metrics.m = {i}" for i in range(1100))
    for path, body in [
        ("/api/v1/runs/search", {"experiment_ids": ["0"], "filter": terms}),
        (f"{MLFLOW}/runs/search", {"experiment_ids": ["0"], "filter": terms}),
        (f"{MLFLOW}/model-versions/search", {"filter": " AND ".join(f"name != '{i}'" for i in range(1100))}),
    ]:
        response = api.post(path, json=body) if "model-versions" not in path else api.get(path, params=body)
        assert response.status_code == 400, (path, response.text)
        error = response.json()
        assert (
            error["error_code"] == "INVALID_PARAMETER_VALUE" and "at most 500 conditions" in error["message"]
        )
