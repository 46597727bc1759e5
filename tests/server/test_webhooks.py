"""Webhooks through the server (in-process, with its dispatcher running), the REST client, rights with auth
on, and the `modelyard webhooks` commands; a real HTTP receiver on 127.0.0.1 checks what arrives."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from starlette.testclient import TestClient

from modelyard.cli.main import cli
from modelyard.errors import InvalidArgument, NotFound, PermissionDenied
from modelyard.schemas.accounts import Role
from modelyard.schemas.webhooks import DeliveryState
from modelyard.server import ServerSettings, create_app
from modelyard.store.rest_webhooks import RestWebhookStore
from modelyard.store.sql.model_registry import SqlModelRegistryStore
from modelyard.store.sql.store import SqlTrackingStore
from tests.server.test_auth import Team
from tests.store.test_webhooks_store import SECRET, Receiver, check_signed, free_port_url


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def http(tmp_path: Path) -> Iterator[TestClient]:
    app = create_app(
        ServerSettings(backend_store_uri=f"sqlite:///{tmp_path / 'hooks.db'}", artifacts_uri=str(tmp_path))
    )
    with TestClient(app) as client:  # runs startup: the dispatcher polls in the background
        yield client


def test_rest_api_delivers_registry_and_run_events(http: TestClient, receiver: Receiver) -> None:
    assert http.post("/api/v1/models", json={"name": "churn"}).status_code == 201
    made = http.post(
        "/api/v1/webhooks",
        json={"url": receiver.url, "model_name": "churn", "events": ["model_version.*"], "secret": SECRET},
    )
    assert made.status_code == 201, made.text
    hook = made.json()
    assert hook["secret"] == SECRET and hook["events"] == ["model_version.*"] and hook["active"] is True
    exp = http.post("/api/v1/experiments", json={"name": "nightly"}).json()["experiment_id"]
    on_runs = http.post("/api/v1/webhooks", json={"url": receiver.url + "/runs", "experiment_id": exp}).json()

    started = time.perf_counter()
    r = http.post("/api/v1/models/churn/versions", json={"source": "file:///m"})
    assert r.status_code == 201, r.text
    run = http.post("/api/v1/runs", json={"experiment_id": exp}).json()["info"]["run_id"]
    assert http.post(f"/api/v1/runs/{run}/end", json={"status": "KILLED"}).status_code == 200
    assert time.perf_counter() - started < 2.0

    got = receiver.wait_for(2)
    assert len(got) == 2
    by_path = {r.path: r for r in got}
    version = check_signed(by_path["/hook"])
    assert version["event"]["type"] == "model_version.created" and version["webhook_id"] == hook["webhook_id"]
    killed = check_signed(by_path["/hook/runs"], on_runs["secret"])
    assert killed["event"]["type"] == "run.killed" and killed["event"]["run_id"] == run

    listed = http.get("/api/v1/webhooks").json()["webhooks"]
    assert {h["webhook_id"] for h in listed} == {hook["webhook_id"], on_runs["webhook_id"]}
    assert all("secret" not in h for h in listed)
    assert (
        http.get("/api/v1/webhooks", params={"model_name": "churn"}).json()["webhooks"][0]["url"]
        == receiver.url
    )
    one = http.get(f"/api/v1/webhooks/{hook['webhook_id']}").json()
    assert "secret" not in one and one["model_name"] == "churn"
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        log = http.get(f"/api/v1/webhooks/{hook['webhook_id']}/deliveries").json()["deliveries"]
        if log and log[0]["state"] == "delivered":
            break
        time.sleep(0.05)
    assert [(d["event_type"], d["state"], d["last_status"]) for d in log] == [
        ("model_version.created", "delivered", 200)
    ]


def test_rest_api_test_update_delete_and_errors(http: TestClient, receiver: Receiver) -> None:
    hook = http.post("/api/v1/webhooks", json={"url": receiver.url, "secret": SECRET}).json()
    hid = hook["webhook_id"]
    sent = http.post(f"/api/v1/webhooks/{hid}/test")
    assert sent.status_code == 200 and sent.json()["state"] == "delivered" and sent.json()["attempts"] == 1
    assert check_signed(receiver.wait_for(1)[0])["event"]["type"] == "webhook.test"

    off = http.patch(f"/api/v1/webhooks/{hid}", json={"active": False})
    assert off.status_code == 200 and off.json()["active"] is False
    assert http.patch(f"/api/v1/webhooks/{hid}", json={}).status_code == 400
    bad = http.patch(f"/api/v1/webhooks/{hid}", json={"events": ["nope"]})
    assert bad.status_code == 400 and "Unknown event type" in bad.json()["message"]
    assert http.post("/api/v1/webhooks", json={"url": "file:///etc/passwd"}).status_code == 400
    assert http.post("/api/v1/webhooks", json={"url": receiver.url, "model_name": "ghost"}).status_code == 404
    assert http.post("/api/v1/webhooks", json={"url": receiver.url, "experiment_id": "77"}).status_code == 404
    failed = http.get(f"/api/v1/webhooks/{hid}/deliveries", params={"state": "failed"}).json()["deliveries"]
    assert failed == []
    assert http.delete(f"/api/v1/webhooks/{hid}").status_code == 200
    gone = http.get(f"/api/v1/webhooks/{hid}")
    assert gone.status_code == 404 and gone.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    assert http.post(f"/api/v1/webhooks/{hid}/test").status_code == 404


def test_rest_client(http: TestClient, receiver: Receiver) -> None:
    hooks = RestWebhookStore("http://testserver", client=http)
    hooks._rest._retries = 0
    http.post("/api/v1/models", json={"name": "churn"})
    made = hooks.create_webhook(receiver.url, ["registered_model.tag_set"], model_name="churn", secret=SECRET)
    assert made.secret == SECRET
    assert [h.webhook_id for h in hooks.list_webhooks(model_name="churn")] == [made.webhook_id]
    assert hooks.get_webhook(made.webhook_id).events == ["registered_model.tag_set"]
    assert hooks.send_test(made.webhook_id).state is DeliveryState.DELIVERED
    http.put("/api/v1/models/churn/tags/team", json={"value": "growth"})
    receiver.wait_for(2)
    assert [check_signed(r)["event"]["type"] for r in receiver.received] == [
        "webhook.test",
        "registered_model.tag_set",
    ]
    assert hooks.update_webhook(made.webhook_id, active=False).active is False
    deliveries = hooks.list_deliveries(made.webhook_id, limit=1)
    assert len(deliveries) == 1
    with pytest.raises(InvalidArgument):
        hooks.create_webhook("ftp://x")
    hooks.delete_webhook(made.webhook_id)
    with pytest.raises(NotFound):
        hooks.get_webhook(made.webhook_id)


# -- rights with auth on -------------------------------------------------------------------------------------


@pytest.fixture
def team(tmp_path: Path) -> Iterator[Team]:
    t = Team(tmp_path, Role.READ)
    with t.http:
        yield t


def test_rights_with_auth(team: Team, receiver: Receiver) -> None:
    http = team.http
    assert http.post("/api/v1/models", json={"name": "alices"}, headers=team.as_("alice")).status_code == 201
    exp = team.experiment("alice", "alices-exp")

    def create(who: str, **body: object) -> object:
        return http.post("/api/v1/webhooks", json={"url": receiver.url, **body}, headers=team.as_(who))

    assert create("alice", model_name="alices").status_code == 201  # she manages what she created
    on_exp = create("alice", experiment_id=exp)
    assert on_exp.status_code == 201  # type: ignore[attr-defined]
    denied = create("bob", model_name="alices")
    assert denied.status_code == 403 and "MANAGE" in denied.json()["message"]  # type: ignore[attr-defined]
    assert create("bob", experiment_id=exp).status_code == 403  # type: ignore[attr-defined]
    everything = create("alice")
    assert everything.status_code == 403 and "admin" in everything.json()["message"]  # type: ignore[attr-defined]
    assert create("root").status_code == 201  # type: ignore[attr-defined]
    assert http.post("/api/v1/webhooks", json={"url": receiver.url}).status_code == 401

    hid = on_exp.json()["webhook_id"]  # type: ignore[attr-defined]
    for method, path in (
        ("GET", f"/api/v1/webhooks/{hid}"),
        ("PATCH", f"/api/v1/webhooks/{hid}"),
        ("POST", f"/api/v1/webhooks/{hid}/test"),
        ("GET", f"/api/v1/webhooks/{hid}/deliveries"),
        ("DELETE", f"/api/v1/webhooks/{hid}"),
    ):
        body = {"active": False} if method == "PATCH" else None
        assert http.request(method, path, json=body, headers=team.as_("bob")).status_code == 403, path
    assert http.get("/api/v1/webhooks", headers=team.as_("bob")).json()["webhooks"] == []
    assert len(http.get("/api/v1/webhooks", headers=team.as_("alice")).json()["webhooks"]) == 2
    assert len(http.get("/api/v1/webhooks", headers=team.as_("root")).json()["webhooks"]) == 3
    grant = http.put(
        f"/api/v1/permissions/experiment/{exp}/bob", json={"role": "MANAGE"}, headers=team.as_("alice")
    )
    assert grant.status_code == 200, grant.text
    assert (
        http.patch(f"/api/v1/webhooks/{hid}", json={"active": False}, headers=team.as_("bob")).status_code
        == 200
    )
    assert http.delete(f"/api/v1/webhooks/{hid}", headers=team.as_("bob")).status_code == 200
    with pytest.raises(PermissionDenied):
        RestWebhookStore("http://testserver", client=_as(http, team.tokens["bob"])).create_webhook(
            receiver.url
        )


def _as(http: TestClient, token: str) -> TestClient:
    http.headers["Authorization"] = f"Bearer {token}"
    return http


# -- the CLI on the embedded store ---------------------------------------------------------------------------


def cli_run(*args: str, code: int = 0, input: str | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), input=input)
    assert result.exit_code == code, result.output
    return result


def test_cli_on_a_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, receiver: Receiver) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    db = f"sqlite:///{tmp_path / 'team.db'}"
    tracking = SqlTrackingStore(db)
    registry = SqlModelRegistryStore(tracking)
    try:
        registry.create_registered_model("churn")
        exp = tracking.create_experiment("nightly")
        made = cli_run("webhooks", "create", "--model", "churn", "--url", receiver.url, "--tracking-uri", db)
        secret = made.stdout.strip()
        assert secret.startswith("whsec_") and "only now" in made.stderr
        cli_run("webhooks", "create", "--url", receiver.url, "--tracking-uri", db, code=1)  # no scope
        on_exp = json.loads(
            cli_run(
                "webhooks", "create", "--experiment", "nightly", "--url", free_port_url(),
                "--events", "run.failed", "--json", "--tracking-uri", db,
            ).stdout
        )  # fmt: skip
        assert on_exp["experiment_id"] == exp and on_exp["events"] == ["run.failed"]
        listed = json.loads(cli_run("webhooks", "list", "--json", "--tracking-uri", db).stdout)
        hid = next(h["webhook_id"] for h in listed if h["model_name"] == "churn")
        table = cli_run("webhooks", "list", "--tracking-uri", db).stdout
        assert "model churn" in table and "experiment " + exp in table and "active" in table

        assert "delivered" in cli_run("webhooks", "test", hid, "--tracking-uri", db).stderr
        assert (
            "Connect"
            in cli_run("webhooks", "test", on_exp["webhook_id"], "--tracking-uri", db, code=1).stderr
        )

        registry.create_model_version("churn", "file:///m")  # the embedded store: queued until `deliver`
        time.sleep(0.3)
        assert len(receiver.received) == 1
        done = cli_run("webhooks", "deliver", "--tracking-uri", db)
        assert "1 delivered" in done.stderr and "0 still queued" in done.stderr
        events = [check_signed(r, secret)["event"]["type"] for r in receiver.wait_for(2)]
        assert events == ["webhook.test", "model_version.created"]
        log = cli_run("webhooks", "deliveries", hid, "--tracking-uri", db).stdout
        assert "model_version.created" in log and "webhook.test" in log and "delivered" in log
        as_json = json.loads(cli_run("webhooks", "deliveries", hid, "--json", "--tracking-uri", db).stdout)
        assert [d["attempts"] for d in as_json] == [1, 1]

        assert "disabled" in cli_run("webhooks", "disable", hid, "--tracking-uri", db).stderr
        assert "disabled" in cli_run("webhooks", "list", "--tracking-uri", db).stdout
        assert "active" in cli_run("webhooks", "enable", hid, "--tracking-uri", db).stderr
        cli_run("webhooks", "delete", hid, "--tracking-uri", db, input="y\n")
        assert (
            "No webhook with id"
            in cli_run("webhooks", "deliveries", hid, "--tracking-uri", db, code=1).stderr
        )
        for command in ("create", "list", "deliveries", "test", "delete", "disable", "enable", "deliver"):
            assert "Example:" in cli_run("webhooks", command, "--help").stdout
    finally:
        tracking.close()
