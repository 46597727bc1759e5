"""The logging routes that `HotRoutes` dispatches answer exactly as FastAPI's router does: same status, headers
and body for good and bad requests, on the v1 and the MLflow paths, with and without auth."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.requests import Request
from starlette.testclient import TestClient

from modelyard.server import ServerSettings, create_app, hot_routes, mlflow_compat
from modelyard.server.routes import store as store_dependency

RUN = "{run}"  # replaced by each app's own run id


def _app(tmp_path: Path, name: str, hot: bool, monkeypatch: pytest.MonkeyPatch) -> Any:
    """`hot`: as built; else without HotRoutes, the MLflow routes in FastAPI's router like the others."""
    with monkeypatch.context() as m:
        if not hot:
            m.setattr(hot_routes, "install", lambda app: None)
        app = create_app(ServerSettings(backend_store_uri=f"sqlite:///{tmp_path / name}", max_body_mb=1))
    if not hot:
        app.include_router(mlflow_compat.build_router(app))
    return app


@pytest.fixture
def trio(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[TestClient, ...]]:
    """The same app three times, on three databases: as `modelyard server` serves it (HotRoutes in front of
    the app too, auth being off), with HotRoutes at the router only, and with FastAPI's router only."""
    front_app = _app(tmp_path, "front.db", True, monkeypatch)
    front = hot_routes.hot_front(front_app)
    hot, plain = _app(tmp_path, "hot.db", True, monkeypatch), _app(tmp_path, "plain.db", False, monkeypatch)
    assert isinstance(front, hot_routes.HotRoutes) and front.max_body == 2**20
    assert isinstance(hot.router.middleware_stack, hot_routes.HotRoutes)
    assert not isinstance(plain.router.middleware_stack, hot_routes.HotRoutes)
    with TestClient(front) as a, TestClient(hot) as b, TestClient(plain) as c:
        yield a, b, c


def _runs(api: TestClient) -> tuple[str, str]:
    """(an active run, a deleted run)."""
    active = api.post("/api/v1/runs", json={"experiment_id": "0"}).json()["info"]["run_id"]
    deleted = api.post("/api/v1/runs", json={"experiment_id": "0"}).json()["info"]["run_id"]
    api.post(f"/api/v1/runs/{deleted}/delete")
    return active, deleted


def _answer(api: TestClient, runs: tuple[str, str], path: str, body: Any) -> tuple[int, dict[str, str], Any]:
    path = path.replace(RUN, runs[0]).replace("{deleted}", runs[1])
    if isinstance(body, str):
        content = body.replace(RUN, runs[0]).replace("{deleted}", runs[1]).encode()
    else:
        content = json.dumps(body).replace(RUN, runs[0]).replace("{deleted}", runs[1]).encode()
    response = api.post(path, content=content, headers={"content-type": "application/json"})
    headers = {k: v for k, v in response.headers.items() if k != "date"}
    text = response.text.replace(runs[0], RUN).replace(runs[1], "{deleted}")
    return response.status_code, headers, text


POINT = {"key": "loss", "value": 0.5, "timestamp": 1, "step": 2}
V1 = "/api/v1/runs/{run}/log-batch"
CASES = [
    (V1, {"metrics": [POINT], "params": [{"key": "p", "value": "1"}], "tags": [{"key": "t", "value": "x"}]}),
    (V1, {"metrics": [{**POINT, "step": i} for i in range(300)]}),
    (V1, {}),
    (V1, "{not json"),
    (V1, ""),
    (V1, {"metrics": [{"key": "loss", "value": "high", "timestamp": 1}]}),
    (V1, {"metrics": [POINT], "extra": 1}),
    (V1, {"params": [{"key": "p", "value": "2"}]}),  # a param already set to 1 (first case): conflict
    (V1, {"metrics": [{**POINT, "key": ""}]}),
    ("/api/v1/runs/" + "f" * 32 + "/log-batch", {"metrics": [POINT]}),
    ("/api/v1/runs/{deleted}/log-batch", {"metrics": [POINT]}),
    ("/api/v1/runs/bad%20id/log-batch", {"metrics": [POINT]}),
    ("/api/v1/runs/a%2Fb/log-batch", {"metrics": [POINT]}),
    ("/api/v1/runs//log-batch", {"metrics": [POINT]}),
    ("/api/v1/runs/{run}/log-batch/", {"metrics": [POINT]}),
    ("/api/2.0/mlflow/runs/log-metric", {"run_id": RUN, **POINT}),
    (
        "/ajax-api/2.0/mlflow/runs/log-metric",
        {"run_uuid": RUN, "key": "acc", "value": "NaN", "timestamp": "3"},
    ),
    ("/api/2.0/mlflow/runs/log-metric", {"run_id": RUN, "key": "loss"}),
    ("/api/2.0/mlflow/runs/log-metric", {"run_id": RUN, "key": "loss", "value": [1], "timestamp": 1}),
    ("/api/2.0/mlflow/runs/log-metric", {"run_id": "f" * 32, **POINT}),
    ("/api/2.0/mlflow/runs/log-metric", {"run_id": "{deleted}", **POINT}),
    ("/api/2.0/mlflow/runs/log-metric", "[1, 2]"),
    ("/api/2.0/mlflow/runs/log-metric", "{nope"),
    ("/api/2.0/mlflow/runs/log-metric", {"run_id": RUN, "key": "a\u0000b", "value": 1, "timestamp": 1}),
    (
        "/api/2.0/mlflow/runs/log-batch",
        {
            "run_id": RUN,
            "metrics": [POINT] * 3,
            "params": [{"key": "q", "value": "1"}],
            "tags": [{"key": "mlflow.runName", "value": "renamed"}, {"key": "t2", "value": "y"}],
        },
    ),
    ("/ajax-api/2.0/mlflow/runs/log-batch", {"run_id": RUN, "params": [{"key": "q", "value": "2"}]}),
    ("/api/2.0/mlflow/runs/log-batch", {"run_id": RUN, "metrics": "loss"}),
    ("/api/2.0/mlflow/runs/log-batch", {"metrics": [POINT]}),
    (V1, {"metrics": [{**POINT, "step": i} for i in range(20_000)]}),  # over the apps' 1 MB limit: 413
]


def test_hot_routes_answer_like_fastapis_router(trio: tuple[TestClient, ...]) -> None:
    runs = [_runs(api) for api in trio]
    for path, body in CASES:
        front, hot, plain = (_answer(api, r, path, body) for api, r in zip(trio, runs))
        assert front == hot == plain, (path, body)
    # and all stored the same
    for api, (run_id, _) in zip(trio, runs):
        run = api.get(f"/api/v1/runs/{run_id}").json()["data"]
        assert run["params"] == {"p": "1", "q": "1"}
        assert run["tags"]["t"] == "x" and run["tags"]["t2"] == "y"
        history = api.get(f"/api/v1/runs/{run_id}/metrics/loss/history").json()
        assert len(history["steps"]) == 1 + 300 + 1 + 1 + 3  # the trailing-slash request: redirected


DEEP = '{"run_id": "{run}", "metrics": ' + "[" * 5000 + "]" * 5000 + "}"
HUGE = '{"key": "loss", "value": 1e400, "timestamp": 1}'  # would parse as infinity
BAD_INPUT = [
    (V1, DEEP.replace('"run_id": "{run}", ', "")),
    ("/api/2.0/mlflow/runs/log-metric", DEEP),
    ("/api/2.0/mlflow/runs/log-batch", DEEP),
    (V1, '{"metrics": [' + HUGE.replace("1e400", "1" + "0" * 400) + "]}"),
    (V1, '{"metrics": [' + HUGE + "]}"),
    ("/api/2.0/mlflow/runs/log-metric", '{"run_id": "{run}", ' + HUGE[1:]),
    ("/api/2.0/mlflow/runs/log-batch", '{"run_id": "{run}", "metrics": [' + HUGE + "]}"),
]


def test_hot_routes_answer_bad_input_with_the_same_400(trio: tuple[TestClient, ...]) -> None:
    """A deeply nested body or a value past the float range: the same JSON 400 on every path, nothing stored."""
    runs = [_runs(api) for api in trio]
    for path, body in BAD_INPUT:
        answers = [_answer(api, r, path, body) for api, r in zip(trio, runs)]
        assert answers[0] == answers[1] == answers[2], (path, body)
        status, _, text = answers[0]
        assert status == 400 and json.loads(text)["error_code"] == "INVALID_PARAMETER_VALUE", (path, text)
    for api, (run_id, _) in zip(trio, runs):
        assert api.get(f"/api/v1/runs/{run_id}").json()["data"]["metrics"] == {}


def test_other_requests_and_overrides_go_through_the_router(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app(tmp_path, "o.db", True, monkeypatch)
    with TestClient(app) as api:
        run_id = api.post("/api/v1/runs", json={"experiment_id": "0"}).json()["info"]["run_id"]
        assert api.get(f"/api/v1/runs/{run_id}/log-batch").status_code == 405  # only POST is hot
        calls: list[str] = []

        def overridden(request: Request) -> Any:
            calls.append(request.url.path)
            return store_dependency(request)

        app.dependency_overrides[store_dependency] = overridden  # FastAPI must see the request to apply it
        body = {"run_id": run_id, **POINT}
        assert api.post("/api/2.0/mlflow/runs/log-metric", json=body).status_code == 200
        assert calls == ["/api/2.0/mlflow/runs/log-metric"]


def test_mlflow_router_is_built_on_the_first_mlflow_request(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    app = _app(tmp_path, "lazy.db", True, monkeypatch)
    with TestClient(app) as api:
        assert api.get("/api/v1/experiments/0").status_code == 200
        hot = app.router.middleware_stack
        assert isinstance(hot, hot_routes.HotRoutes) and hot._mlflow_router is None  # not at startup
        missing = api.get("/api/2.0/mlflow/experiments/get", params={"experiment_id": "12345"})
        assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        assert hot._mlflow_router is not None
        unknown = api.get("/api/2.0/mlflow/no-such-endpoint")
        assert unknown.status_code == 404 and unknown.json()["error_code"] == "ENDPOINT_NOT_FOUND"
        assert (
            api.get("/ajax-api/2.0/mlflow/experiments/get", params={"experiment_id": "0"}).json()[
                "experiment"
            ]["name"]
            == "Default"
        )


def test_hot_routes_with_auth_check_roles_and_audit(tmp_path: Path) -> None:
    from modelyard.schemas.accounts import Role
    from modelyard.store.sql.accounts import SqlAccountStore
    from modelyard.store.sql.store import SqlTrackingStore

    uri = f"sqlite:///{tmp_path / 'auth.db'}"
    base = SqlTrackingStore(uri)
    accounts = SqlAccountStore(base)
    accounts.create_user("admin", is_admin=True)
    accounts.create_user("reader")
    admin_token = accounts.create_token("admin").token
    reader_token = accounts.create_token("reader").token
    base.close()
    app = create_app(ServerSettings(backend_store_uri=uri, auth=True, default_role=Role.READ))
    with TestClient(app) as api:
        as_admin = {"Authorization": f"Bearer {admin_token}"}
        as_reader = {"Authorization": f"Bearer {reader_token}"}
        run_id = api.post("/api/v1/runs", json={"experiment_id": "0"}, headers=as_admin).json()["info"][
            "run_id"
        ]
        for path, body in (
            (f"/api/v1/runs/{run_id}/log-batch", {"metrics": [POINT]}),
            ("/api/2.0/mlflow/runs/log-metric", {"run_id": run_id, **POINT}),
        ):
            assert api.post(path, json=body).status_code == 401
            assert api.post(path, json=body, headers=as_reader).status_code == 403
            assert api.post(path, json=body, headers=as_admin).status_code == 200
        entries = app.state.accounts.search_audit(limit=100)
        logged = [(e.username or "", e.path.split("/")[-1], e.status) for e in entries if "log-" in e.path]
        assert sorted(logged) == sorted(
            [("", "log-batch", 401), ("reader", "log-batch", 403), ("admin", "log-batch", 200),
             ("", "log-metric", 401), ("reader", "log-metric", 403), ("admin", "log-metric", 200)]
        )  # fmt: skip


def test_the_front_answers_hot_requests_before_the_app(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    front = hot_routes.hot_front(_app(tmp_path, "f.db", True, monkeypatch))
    assert isinstance(front, hot_routes.HotRoutes)
    reached: list[str] = []
    app = front.app

    async def recording(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            reached.append(scope["path"])
        await app(scope, receive, send)

    front.app = recording
    with TestClient(front) as api:
        run_id = api.post("/api/v1/runs", json={"experiment_id": "0"}).json()["info"]["run_id"]
        assert api.post(f"/api/v1/runs/{run_id}/log-batch", json={"metrics": [POINT]}).status_code == 200
        missing = api.post("/api/v1/runs/" + "f" * 32 + "/log-batch", json={"metrics": [POINT]})
        assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        big = api.post(f"/api/v1/runs/{run_id}/log-batch", content=b" " * (2**20 + 1))
        assert big.status_code == 413
        assert reached == ["/api/v1/runs", f"/api/v1/runs/{run_id}/log-batch"]  # only the create and the 413


def test_no_front_with_auth(tmp_path: Path) -> None:
    app = create_app(ServerSettings(backend_store_uri=f"sqlite:///{tmp_path / 'a.db'}", auth=True))
    assert hot_routes.hot_front(app) is app  # the auth middleware must see every request
