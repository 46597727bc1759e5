"""Deployment records through the server: the REST client against the in-process app, raw HTTP through
httpx's ASGITransport (statuses and messages of bad input), rights with auth on, and a live server that a
`DeploymentRecorder`, lineage and the `modelyard deployments` commands talk to over HTTP."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner
from starlette.testclient import TestClient

from modelyard.errors import InvalidArgument, InvalidState, NotFound
from modelyard.schemas.accounts import Role
from modelyard.server import ServerSettings, create_app
from modelyard.store.rest_deployments import RestDeploymentStore
from tests.server.live import LiveServer, backend_for
from tests.server.test_auth import Team

URL = "http://10.0.0.5:8080"
PRIMARY = {"model_name": "iris", "version": 1, "percent": 90, "role": "primary"}
CANARY = {"model_name": "iris", "version": 2, "percent": 10, "role": "canary"}


def _models(http: Any, headers: dict[str, str] | None = None, name: str = "iris", versions: int = 2) -> None:
    assert http.post("/api/v1/models", json={"name": name}, headers=headers).status_code == 201
    for _ in range(versions):
        made = http.post(
            f"/api/v1/models/{name}/versions", json={"source": f"s3://b/{name}"}, headers=headers
        )
        assert made.status_code == 201, made.text


@pytest.fixture
def app(tmp_path: Path) -> Any:
    return create_app(
        ServerSettings(backend_store_uri=f"sqlite:///{tmp_path / 'deploy.db'}", artifacts_uri=str(tmp_path))
    )


@pytest.fixture
def http(app: Any) -> Iterator[TestClient]:
    with TestClient(app) as client:
        _models(client)
        yield client


def test_rest_client_round_trip(http: TestClient) -> None:
    rest = RestDeploymentStore("http://testserver", client=http)
    made = rest.create_deployment("iris", URL, [PRIMARY | {"percent": 100}], info={"pid": 7}, message="up")
    assert rest.get_deployment(made.deployment_id) == made and made.info == {"pid": 7}
    rolling = rest.update_deployment(made.deployment_id, [PRIMARY, CANARY], "ROLLING_OUT", "canary 10%")
    assert rolling.state.value == "ROLLING_OUT" and [t.percent for t in rolling.traffic] == [90, 10]
    note = rest.add_event(made.deployment_id, "note", "dashboards look fine", {"p99_ms": 12})
    assert note.details == {"p99_ms": 12}
    rest.update_deployment(made.deployment_id, [CANARY | {"percent": 100, "role": "primary"}], "RUNNING",
                           "v2 promoted", kind="promoted")  # fmt: skip
    assert [e.kind.value for e in rest.list_events(made.deployment_id)] == [
        "started", "traffic_changed", "note", "promoted",
    ]  # fmt: skip
    assert [d.deployment_id for d in rest.list_deployments("iris", 2)] == [made.deployment_id]
    assert [d.deployment_id for d in rest.list_deployments(state="RUNNING")] == [made.deployment_id]
    assert rest.list_deployments(state="STOPPED") == []
    assert rest.deployments_of_version("iris", 1)[0].deployment_id == made.deployment_id
    rest.heartbeat(made.deployment_id)
    beat = rest.get_deployment(made.deployment_id).heartbeat_time
    assert beat is not None and beat >= made.created_time and len(rest.list_events(made.deployment_id)) == 4
    rest.update_deployment(made.deployment_id, kind="stopped")
    with pytest.raises(InvalidState, match="STOPPED"):
        rest.heartbeat(made.deployment_id)
    # the server's errors come back as the same exceptions
    with pytest.raises(InvalidState, match="STOPPED"):
        rest.update_deployment(made.deployment_id, state="RUNNING")
    with pytest.raises(NotFound, match="No deployment with id 'feedfacefeedface'"):
        rest.get_deployment("feedfacefeedface")
    with pytest.raises(NotFound, match="No version 5 of registered model 'iris'"):
        rest.create_deployment("iris", URL, [PRIMARY | {"version": 5, "percent": 100}])
    with pytest.raises(InvalidArgument, match="add up to 100%"):  # refused before sending
        rest.create_deployment("iris", URL, [PRIMARY])


def _error(response: httpx.Response, status: int, *fragments: str) -> None:
    assert response.status_code == status, response.text
    message = response.json()["message"]
    for fragment in fragments:
        assert fragment in message, message


def test_http_statuses_and_messages(app: Any, http: TestClient) -> None:
    async def scenario() -> None:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://modelyard.test/api/v1") as client:
            created = await client.post(
                "/deployments",
                json={
                    "name": "iris",
                    "endpoint": URL,
                    "traffic": [PRIMARY, CANARY],
                    "deployment_id": "iris-a",
                },
            )
            assert created.status_code == 201, created.text
            assert created.json()["state"] == "STARTING" and created.json()["traffic"][1]["role"] == "canary"
            _error(await client.post("/deployments", json={"name": "iris", "endpoint": URL, "traffic": [PRIMARY, CANARY],
                                                           "deployment_id": "iris-a"}), 409, "exists already")  # fmt: skip
            _error(await client.get("/deployments/nope"), 404, "No deployment with id 'nope'")
            _error(await client.patch("/deployments/nope", json={"state": "RUNNING"}), 404, "No deployment")
            _error(await client.get("/deployments/nope/events"), 404, "No deployment")
            _error(await client.post("/deployments/nope/events", json={"message": "x"}), 404, "No deployment")
            over = {"name": "iris", "endpoint": URL, "traffic": [PRIMARY | {"percent": 150}]}
            _error(
                await client.post("/deployments", json=over),
                400,
                "traffic.0.percent",
                "less than or equal to 100",
            )
            short = {"name": "iris", "endpoint": URL, "traffic": [PRIMARY]}
            _error(await client.post("/deployments", json=short), 400, "must add up to 100%, got 90%")
            _error(await client.post("/deployments", json=short | {"traffic": []}), 400, "traffic")
            _error(await client.post("/deployments", json=short | {"traffic": [PRIMARY | {"percent": 100}],
                                                                    "endpoint": "nowhere"}), 400, "endpoint")  # fmt: skip
            _error(await client.patch("/deployments/iris-a", json={"traffic": [CANARY]}), 400, "no primary")
            _error(
                await client.patch("/deployments/iris-a", json={"message": "hi"}), 400, "Nothing to change"
            )
            _error(await client.patch("/deployments/iris-a", json={"state": "ASLEEP"}), 400, "state")
            _error(await client.post("/deployments/iris-a/events", json={"kind": "stopped"}), 400,
                   "make the change with an update")  # fmt: skip
            _error(await client.get("/deployments", params={"state": "ASLEEP"}), 400, "state")
            _error(await client.get("/deployments", params={"version": 1}), 400, "needs the model's name")
            _error(await client.get("/deployments", params={"limit": 0}), 400, "limit")

            moved = await client.patch("/deployments/iris-a", json={"state": "RUNNING", "message": "ready"})
            assert moved.status_code == 200 and moved.json()["state"] == "RUNNING"
            note = await client.post(
                "/deployments/iris-a/events", json={"message": "hello", "details": {"a": 1}}
            )
            assert note.status_code == 201 and note.json()["kind"] == "note"
            events = (await client.get("/deployments/iris-a/events")).json()["events"]
            assert [(e["kind"], e["message"]) for e in events] == [
                ("started", ""),
                ("note", "ready"),
                ("note", "hello"),
            ]
            listed = (await client.get("/deployments", params={"model_name": "iris", "version": 2})).json()
            assert [d["deployment_id"] for d in listed["deployments"]] == ["iris-a"]

    asyncio.run(scenario())


def test_every_deployment_route_is_in_the_spec(app: Any) -> None:
    paths = app.openapi()["paths"]
    assert set(paths["/api/v1/deployments"]) == {"get", "post"}
    assert set(paths["/api/v1/deployments/{deployment_id}"]) == {"get", "patch"}
    assert set(paths["/api/v1/deployments/{deployment_id}/events"]) == {"get", "post"}


# -- rights ------------------------------------------------------------------------------------------------


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Team]:
    t = Team(tmp_path, Role.READ)
    with t.http:
        yield t


@pytest.fixture
def private_team(tmp_path: Path) -> Iterator[Team]:
    t = Team(tmp_path, None)
    with t.http:
        yield t


def _create(team: Team, who: str, traffic: list[dict[str, Any]] | None = None) -> httpx.Response:
    body = {"name": "iris", "endpoint": URL, "traffic": traffic or [PRIMARY, CANARY]}
    return team.http.post("/api/v1/deployments", json=body, headers=team.as_(who))


def test_writing_needs_edit_on_every_model_served_and_reading_needs_read(team: Team) -> None:
    _models(team.http, team.as_("alice"))  # alice manages iris
    _models(team.http, team.as_("root"), name="churn", versions=1)
    made = _create(team, "alice")
    assert made.status_code == 201 and made.json()["created_by"] == "alice"
    deployment_id = made.json()["deployment_id"]
    url = f"/api/v1/deployments/{deployment_id}"

    _error(_create(team, "bob"), 403, "registered model iris", "needs EDIT")
    _error(team.http.patch(url, json={"state": "RUNNING"}, headers=team.as_("bob")), 403, "needs EDIT")
    _error(team.http.post(url + "/events", json={"message": "x"}, headers=team.as_("bob")), 403, "needs EDIT")
    _error(team.http.post(url + "/heartbeat", headers=team.as_("bob")), 403, "needs EDIT")
    assert team.http.post(url + "/heartbeat", headers=team.as_("alice")).status_code == 204
    audited = team.http.get("/api/v1/audit", headers=team.as_("root")).json()["entries"]
    beats = [(e["username"], e["status"]) for e in audited if e["path"].endswith("/heartbeat")]
    assert beats == [("bob", 403)]  # a refused heartbeat is audited; an accepted one (every 30 s) is not
    assert team.http.get(url, headers=team.as_("bob")).status_code == 200  # default role READ
    assert team.http.get(url + "/events", headers=team.as_("bob")).status_code == 200
    assert len(team.http.get("/api/v1/deployments", headers=team.as_("bob")).json()["deployments"]) == 1

    # Moving traffic to a model alice may not edit needs EDIT on that one too.
    churn = [{"model_name": "churn", "version": 1, "percent": 100}]
    _error(
        team.http.patch(url, json={"traffic": churn}, headers=team.as_("alice")),
        403,
        "registered model churn",
    )
    grant = team.http.put("/api/v1/permissions/registered_model/iris/bob", json={"role": "EDIT"},
                          headers=team.as_("alice"))  # fmt: skip
    assert grant.status_code == 200
    moved = team.http.patch(url, json={"state": "RUNNING", "message": "bob says go"}, headers=team.as_("bob"))
    assert moved.status_code == 200, moved.text
    events = team.http.get(url + "/events", headers=team.as_("bob")).json()["events"]
    assert [(e["kind"], e["user"]) for e in events] == [("started", "alice"), ("note", "bob")]
    audit = team.http.get("/api/v1/audit", params={"username": "bob"}, headers=team.as_("root")).json()
    assert any(f"deployment:{deployment_id}" in e["targets"] and "model:iris" in e["targets"]
               for e in audit["entries"])  # fmt: skip
    assert team.http.get(url).status_code == 401  # no token


def test_default_role_none_hides_deployments(private_team: Team) -> None:
    t = private_team
    _models(t.http, t.as_("alice"))
    deployment_id = _create(t, "alice").json()["deployment_id"]
    assert t.http.get("/api/v1/deployments", headers=t.as_("bob")).json()["deployments"] == []
    assert len(t.http.get("/api/v1/deployments", headers=t.as_("alice")).json()["deployments"]) == 1
    _error(t.http.get(f"/api/v1/deployments/{deployment_id}", headers=t.as_("bob")), 403, "no role")
    _error(t.http.get(f"/api/v1/deployments/{deployment_id}/events", headers=t.as_("bob")), 403, "no role")


# -- a live server -----------------------------------------------------------------------------------------


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def live(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[LiveServer]:
    server = LiveServer(backend_for(request, tmp_path), tmp_path / "artifacts").start()
    yield server
    server.stop()


def test_recorder_lineage_and_cli_through_a_live_server(
    live: LiveServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modelyard as my
    from modelyard.cli.main import cli
    from modelyard.registry.deployments import DeploymentRecorder

    monkeypatch.setenv("COLUMNS", "250")
    client = my.Client(live.url)
    run_id = client.create_run("0").run_id
    client.set_terminated(run_id)
    registry = my.RegistryClient(live.url)
    v1 = registry.register_model(f"runs:/{run_id}/model", "iris")
    v2 = registry.register_model(f"runs:/{run_id}/model", "iris")

    started = time.perf_counter()
    recorder = DeploymentRecorder.start(
        "iris", [{"model_name": "iris", "version": v1.version, "percent": 100}], "http://127.0.0.1:9999",
        info={"pid": 1234}, tracking_uri=live.url,
    )  # fmt: skip
    recorder.traffic_changed(
        [{"model_name": "iris", "version": v1.version, "percent": 90},
         {"model_name": "iris", "version": v2.version, "percent": 10, "role": "canary"}],
        "canary at 10%", state="ROLLING_OUT", step=1,
    )  # fmt: skip
    assert time.perf_counter() - started < 0.5  # queued, not waited for
    assert recorder.flush(10)

    graph = my.lineage(f"models:/iris/{v2.version}", live.url)
    [node] = [n for n in graph.nodes if n.kind == "deployment"]
    assert node.label == "iris on http://127.0.0.1:9999 (ROLLING_OUT, canary 10%)"
    assert any(
        e.source == graph.root and e.target == node.id and e.relation == "served_by" for e in graph.edges
    )
    recorder.stop("rollout done")

    runner = CliRunner()
    listed = runner.invoke(cli, ["deployments", "list", "--model", "iris", "--tracking-uri", live.url])
    assert listed.exit_code == 0, listed.output
    assert recorder.deployment_id in listed.stdout and "STOPPED" in listed.stdout
    assert "iris v1 90%, canary iris v2 10%" in listed.stdout
    shown = runner.invoke(cli, ["deployments", "show", recorder.deployment_id, "--tracking-uri", live.url])
    assert shown.exit_code == 0, shown.output
    for text in (
        "started",
        "traffic_changed",
        "canary at 10%",
        "step=1",
        "stopped",
        "rollout done",
        "pid=1234",
    ):
        assert text in shown.stdout, (text, shown.stdout)
    tree = runner.invoke(cli, ["models", "lineage", f"models:/iris/{v1.version}", "--tracking-uri", live.url])
    assert tree.exit_code == 0, tree.output
    assert "served_by: iris on http://127.0.0.1:9999 (STOPPED, was 90%)" in tree.stdout


def test_recorder_never_raises_when_the_server_is_down(caplog: pytest.LogCaptureFixture) -> None:
    from modelyard.registry.deployments import DeploymentRecorder
    from tests.server.live import free_port

    started = time.perf_counter()
    recorder = DeploymentRecorder.start(
        "iris", [PRIMARY | {"percent": 100}], URL, tracking_uri=f"http://127.0.0.1:{free_port()}"
    )
    recorder.traffic_changed([PRIMARY, CANARY], "canary")
    recorder.event("note", "hello")
    assert time.perf_counter() - started < 0.5
    recorder.stop("bye", timeout=30)
    assert not recorder._thread.is_alive()  # type: ignore[union-attr]
    warnings = [r for r in caplog.records if r.name == "modelyard.deployments" and r.levelname == "WARNING"]
    assert len(warnings) >= 4 and "Cannot reach the Modelyard server" in warnings[0].getMessage()
