"""/api/v1/pipelines through the real app in-process: pipeline runs (list, DAG with step states, cache hits,
durations, logs), schedules (CRUD, run now, the REST client), and rights with auth on. The pipelines are
real: written to tmp_path, run with `run_pipeline` into the store the app serves."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from starlette.testclient import TestClient

from modelyard.errors import AlreadyExists, InvalidArgument, NotFound, PermissionDenied
from modelyard.pipelines import loading, run_pipeline
from modelyard.pipelines.runner import PipelineRun
from modelyard.schemas.accounts import ResourceType, Role
from modelyard.server import ServerSettings, create_app
from modelyard.store.rest_schedules import RestScheduleStore
from tests.server.test_auth import Team

FLOW = """
import modelyard as my


@my.step
def double(n: int) -> int:
    print(f"doubling {n}")
    return n * 2


@my.step
def add(a: int, b: int) -> int:
    print(f"adding {a} and {b}")
    if b < 0:
        raise ValueError("b must not be negative")
    return a + b


@my.pipeline
def arith(n: int = 3):
    d = double(n)
    add(d.output, n)
"""


def write_flow(folder: Path) -> Path:
    path = folder / "flow.py"
    path.write_text(FLOW)
    return path


def run_flow(path: Path, uri: str, **params: Any) -> PipelineRun:
    return run_pipeline(loading.load_pipeline(f"{path}:arith"), params, tracking_uri=uri)


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[TestClient, str, Path]]:
    uri = f"sqlite:///{tmp_path / 'pipelines.db'}"
    app = create_app(ServerSettings(backend_store_uri=uri, artifacts_uri=str(tmp_path / "artifacts")))
    with TestClient(app) as http:
        yield http, uri, write_flow(tmp_path)


def test_runs_list_describe_logs_and_cache_hits(served: tuple[TestClient, str, Path]) -> None:
    http, uri, flow = served
    assert http.get("/api/v1/pipelines/runs").json() == {"runs": []}
    first = run_flow(flow, uri, n=4)
    second = run_flow(flow, uri, n=4)  # every step a cache hit
    failed = run_flow(flow, uri, n=-1)
    assert (first.status, second.status, failed.status) == ("FINISHED", "FINISHED", "FAILED")

    listed = http.get("/api/v1/pipelines/runs").json()["runs"]
    assert [r["run_id"] for r in listed] == [failed.run_id, second.run_id, first.run_id]  # newest first
    by_id = {r["run_id"]: r for r in listed}
    assert by_id[first.run_id]["steps"] == {"SUCCEEDED": 2}
    assert by_id[second.run_id]["steps"] == {"CACHED": 2}
    assert by_id[failed.run_id]["steps"] == {"FAILED": 1, "SUCCEEDED": 1}
    one = by_id[first.run_id]
    assert one["pipeline"] == "arith" and one["status"] == "FINISHED" and one["params"] == {"n": 4}
    assert one["start_time"] <= one["end_time"] and one["run_name"].startswith("arith-")
    assert len(http.get("/api/v1/pipelines/runs", params={"max_results": 1}).json()["runs"]) == 1
    assert len(http.get("/api/v1/pipelines/runs", params={"experiment": "arith"}).json()["runs"]) == 3
    exp = one["experiment_id"]
    assert len(http.get("/api/v1/pipelines/runs", params={"experiment": exp}).json()["runs"]) == 3
    missing = http.get("/api/v1/pipelines/runs", params={"experiment": "nope"})
    assert missing.status_code == 404 and "nope" in missing.json()["message"]
    assert http.get("/api/v1/pipelines/runs", params={"max_results": 0}).status_code == 400

    detail = http.get(f"/api/v1/pipelines/runs/{first.run_id}").json()
    assert detail["status"] == "FINISHED" and detail["executor"] == "local" and detail["params"] == {"n": 4}
    graph = {s["id"]: s for s in detail["graph"]["steps"]}
    assert graph["add"]["depends_on"] == ["double"] and graph["add"]["inputs"]["a"] == "double.output"
    steps = {s["instance"]: s for s in detail["steps"]}
    assert set(steps) == {"double", "add"}
    double = steps["double"]
    assert double["state"] == "SUCCEEDED" and double["cache"] == "miss" and double["attempts"] == 1
    assert double["duration_s"] is not None and double["duration_s"] >= 0 and double["error"] is None
    assert double["outputs"]["output"]["value"] == 8

    cached = {s["instance"]: s for s in http.get(f"/api/v1/pipelines/runs/{second.run_id}").json()["steps"]}
    assert cached["double"]["state"] == "CACHED" and cached["double"]["cache"] == "hit"
    assert cached["double"]["cached_from"] == double["run_id"]

    broken = {s["instance"]: s for s in http.get(f"/api/v1/pipelines/runs/{failed.run_id}").json()["steps"]}
    assert broken["add"]["state"] == "FAILED" and "b must not be negative" in broken["add"]["error"]

    log = http.get(f"/api/v1/pipelines/runs/{first.run_id}/steps/double/logs")
    assert log.status_code == 200 and log.headers["content-type"].startswith("text/plain")
    assert "doubling 4" in log.text
    failed_log = http.get(f"/api/v1/pipelines/runs/{failed.run_id}/steps/add/logs")
    assert failed_log.status_code == 200 and "b must not be negative" in failed_log.text

    no_log = http.get(f"/api/v1/pipelines/runs/{second.run_id}/steps/double/logs")
    assert no_log.status_code == 404 and "reused the result of step run" in no_log.json()["message"]
    no_step = http.get(f"/api/v1/pipelines/runs/{first.run_id}/steps/train[3]/logs")
    assert no_step.status_code == 404
    assert "no step 'train[3]'" in no_step.json()["message"] and "add, double" in no_step.json()["message"]


def test_not_pipeline_runs_and_bad_ids(served: tuple[TestClient, str, Path]) -> None:
    http, _, _ = served
    exp = http.post("/api/v1/experiments", json={"name": "plain"}).json()["experiment_id"]
    plain = http.post("/api/v1/runs", json={"experiment_id": exp}).json()["info"]["run_id"]
    r = http.get(f"/api/v1/pipelines/runs/{plain}")
    assert r.status_code == 404 and "not a pipeline run" in r.json()["message"]
    assert http.get(f"/api/v1/pipelines/runs/{plain}/steps/x/logs").status_code == 404
    assert http.get(f"/api/v1/pipelines/runs/{'0' * 32}").status_code == 404
    assert http.get("/api/v1/pipelines/runs/not-an-id").status_code == 404
    assert http.get("/api/v1/pipelines/runs/a%20b").status_code == 400


def test_schedules_crud_and_run_now(served: tuple[TestClient, str, Path]) -> None:
    http, _, flow = served
    body = {"name": "nightly", "target": f"{flow}:arith", "cron": "0 3 * * *", "params": {"n": 5}}
    made = http.post("/api/v1/pipelines/schedules", json=body)
    assert made.status_code == 201, made.text
    got = made.json()
    assert got["target"] == f"{flow}:arith" and got["enabled"] and got["next_run_time"] > time.time() * 1000
    assert got["timezone"] == "UTC" and got["last_status"] is None and got["created_by"] is None
    again = http.post("/api/v1/pipelines/schedules", json=body)
    assert again.status_code == 409 and "exists already" in again.json()["message"]
    for bad, fragment in (
        ({"cron": "61 * * * *"}, "Invalid cron expression"),
        ({"cron": "* * *"}, "has 3 fields"),
        ({"target": "relative.py:arith"}, "absolute path"),
        ({"target": "/nowhere/flow.py:arith"}, "No such file on the server's host"),
        ({"timezone": "Mars/Base"}, "Unknown time zone"),
        ({"name": "bad name"}, "Invalid schedule name"),
    ):
        r = http.post("/api/v1/pipelines/schedules", json={**body, "name": "other", **bad})
        assert r.status_code == 400 and fragment in r.json()["message"], (bad, r.text)

    assert [s["name"] for s in http.get("/api/v1/pipelines/schedules").json()["schedules"]] == ["nightly"]
    paused = http.patch("/api/v1/pipelines/schedules/nightly", json={"enabled": False}).json()
    assert paused["enabled"] is False and paused["next_run_time"] is None
    changed = http.patch("/api/v1/pipelines/schedules/nightly", json={"enabled": True, "cron": "@hourly"})
    assert changed.status_code == 200 and changed.json()["cron"] == "@hourly" and changed.json()["enabled"]
    assert http.patch("/api/v1/pipelines/schedules/nightly", json={}).status_code == 400
    assert http.patch("/api/v1/pipelines/schedules/ghost", json={"enabled": False}).status_code == 404

    started = http.post("/api/v1/pipelines/schedules/nightly/run")
    assert started.status_code == 202 and started.json()["last_status"] == "RUNNING"
    scheduler = http.app.state.pipeline_scheduler  # type: ignore[attr-defined]
    assert scheduler.wait(120)
    done = http.get("/api/v1/pipelines/schedules/nightly").json()
    assert done["last_status"] == "FINISHED", done
    detail = http.get(f"/api/v1/pipelines/runs/{done['last_run_id']}").json()
    assert detail["params"] == {"n": 5} and {s["state"] for s in detail["steps"]} == {"SUCCEEDED"}

    assert http.delete("/api/v1/pipelines/schedules/nightly").status_code == 200
    assert http.get("/api/v1/pipelines/schedules/nightly").status_code == 404
    assert http.post("/api/v1/pipelines/schedules/nightly/run").status_code == 404


def test_rest_client(served: tuple[TestClient, str, Path]) -> None:
    http, _, flow = served
    client = RestScheduleStore("http://testserver", client=http)
    client._rest._retries = 0
    made = client.create_schedule("etl", f"{flow}:arith", "*/5 * * * *", {"n": 2}, "etl-runs", "Europe/Paris")
    assert made.experiment == "etl-runs" and made.timezone == "Europe/Paris" and made.params == {"n": 2}
    with pytest.raises(AlreadyExists):
        client.create_schedule("etl", f"{flow}:arith", "@daily")
    with pytest.raises(InvalidArgument, match="has 7 fields, not 5"):
        client.create_schedule("x", f"{flow}:arith", "1 2 3 4 5 6 7")
    assert [s.name for s in client.list_schedules()] == ["etl"]
    assert client.update_schedule("etl", enabled=False).enabled is False
    assert client.update_schedule("etl", params={"n": 7}).params == {"n": 7}
    assert client.get_schedule("etl").enabled is False
    client.delete_schedule("etl")
    with pytest.raises(NotFound):
        client.get_schedule("etl")


# -- rights with auth on -------------------------------------------------------------------------------------


@pytest.fixture
def private_team(tmp_path: Path) -> Iterator[Team]:
    t = Team(tmp_path, None)  # nobody sees an experiment without a grant
    with t.http:
        yield t


def test_rights_with_auth(private_team: Team, tmp_path: Path) -> None:
    team, http = private_team, private_team.http
    flow = write_flow(tmp_path)
    done = run_flow(flow, f"sqlite:///{team.db}", n=2)
    exp = http.get(f"/api/v1/runs/{done.run_id}", headers=team.as_("root")).json()["info"]["experiment_id"]

    assert http.get("/api/v1/pipelines/runs").status_code == 401
    assert http.get("/api/v1/pipelines/runs", headers=team.as_("alice")).json()["runs"] == []
    denied = http.get(f"/api/v1/pipelines/runs/{done.run_id}", headers=team.as_("alice"))
    assert denied.status_code == 403 and "READ" in denied.json()["message"]
    log = f"/api/v1/pipelines/runs/{done.run_id}/steps/double/logs"
    assert http.get(log, headers=team.as_("alice")).status_code == 403

    team.accounts.set_permission("alice", ResourceType.EXPERIMENT, exp, Role.READ)
    team.app.state.authorizer.forget()
    listed = http.get("/api/v1/pipelines/runs", headers=team.as_("alice")).json()["runs"]
    assert [r["run_id"] for r in listed] == [done.run_id]
    assert http.get(f"/api/v1/pipelines/runs/{done.run_id}", headers=team.as_("alice")).status_code == 200
    assert "doubling 2" in http.get(log, headers=team.as_("alice")).text
    assert http.get(f"/api/v1/pipelines/runs/{done.run_id}", headers=team.as_("bob")).status_code == 403

    body = {"name": "nightly", "target": f"{flow}:arith", "cron": "@daily"}
    refused = http.post("/api/v1/pipelines/schedules", json=body, headers=team.as_("alice"))
    assert refused.status_code == 403
    assert "Only an admin" in refused.json()["message"] and "runs code" in refused.json()["message"]
    made = http.post("/api/v1/pipelines/schedules", json=body, headers=team.as_("root"))
    assert made.status_code == 201 and made.json()["created_by"] == "root"
    for method, path in (
        ("GET", "/api/v1/pipelines/schedules"),
        ("GET", "/api/v1/pipelines/schedules/nightly"),
        ("PATCH", "/api/v1/pipelines/schedules/nightly"),
        ("POST", "/api/v1/pipelines/schedules/nightly/run"),
        ("DELETE", "/api/v1/pipelines/schedules/nightly"),
    ):
        payload = {"enabled": False} if method == "PATCH" else None
        assert http.request(method, path, json=payload, headers=team.as_("alice")).status_code == 403, path
    client = RestScheduleStore("http://testserver", client=http)
    client._rest._retries = 0
    http.headers["Authorization"] = f"Bearer {team.tokens['bob']}"
    with pytest.raises(PermissionDenied, match="Only an admin"):
        client.list_schedules()
    http.headers["Authorization"] = f"Bearer {team.tokens['root']}"
    assert [s.name for s in client.list_schedules()] == ["nightly"]
