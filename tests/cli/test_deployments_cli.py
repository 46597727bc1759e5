"""`modelyard deployments list|show` on the embedded store, as a user types them."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner, Result

import modelyard as my
from modelyard.cli.main import cli
from modelyard.registry.deployments import deployment_store_for
from modelyard.store.sql.deployments import SqlDeploymentStore


def run(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def deployed(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """iris v1-v2 and churn v1 registered; three deployments, the iris one mid-rollout with a history."""
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("MODELYARD_USER", "ann")
    my.set_tracking_uri(None)
    registry = my.RegistryClient()
    for name, count in (("iris", 2), ("churn", 1)):
        for _ in range(count):
            registry.register_model("s3://bucket/model", name)
    store = deployment_store_for()
    assert isinstance(store, SqlDeploymentStore)  # the embedded store: `now` orders the list
    one = [{"model_name": "iris", "version": 1, "percent": 100}]
    a = store.create_deployment("iris", "http://10.0.0.5:8080", one, state="RUNNING", info={"pid": 99},
                                message="serving v1", user="ann", deployment_id="iris-prod", now=1_000)  # fmt: skip
    store.update_deployment(
        a.deployment_id,
        [{"model_name": "iris", "version": 1, "percent": 75},
         {"model_name": "iris", "version": 2, "percent": 25, "role": "canary"}],
        "ROLLING_OUT", "canary at 25%", details={"error_rate": 0.002}, user="bot",
    )  # fmt: skip
    b = store.create_deployment("churn", "http://10.0.0.9:9000", [{"model_name": "churn", "version": 1, "percent": 100}],
                                target="kserve", info={"namespace": "ml"}, deployment_id="churn-isvc", now=2_000)  # fmt: skip
    c = store.create_deployment("iris", "http://10.0.0.6:8080", one, deployment_id="iris-old", now=500)
    store.update_deployment(c.deployment_id, kind="stopped", message="replaced")
    return [a.deployment_id, b.deployment_id, c.deployment_id]


def test_list_with_filters(deployed: list[str]) -> None:
    out = run("deployments", "list").stdout
    for text in ("iris-prod", "churn-isvc", "iris-old", "http://10.0.0.5:8080", "kserve", "ROLLING_OUT", "STOPPED",
                 "iris v1 75%, canary iris v2 25%", "churn v1 100%"):  # fmt: skip
        assert text in out, (text, out)
    assert out.index("churn-isvc") < out.index("iris-prod") < out.index("iris-old")  # newest first
    only = run("deployments", "list", "--model", "iris", "--version", "2").stdout
    assert "iris-prod" in only and "iris-old" not in only and "churn-isvc" not in only
    stopped = run("deployments", "list", "--state", "stopped").stdout
    assert "iris-old" in stopped and "iris-prod" not in stopped
    assert "churn-isvc" in run("deployments", "list", "--name", "churn").stdout
    as_json = json.loads(run("deployments", "list", "--model", "iris", "--json").stdout)
    assert [d["deployment_id"] for d in as_json] == ["iris-prod", "iris-old"]
    assert as_json[0]["traffic"][1] == {"model_name": "iris", "version": 2, "percent": 25.0, "role": "canary",
                                        "model_uri": None}  # fmt: skip
    none = run("deployments", "list", "--model", "churn", "--state", "FAILED")
    assert "No deployments recorded for that filter." in none.stderr


def test_show_prints_the_traffic_and_the_history(deployed: list[str]) -> None:
    out = run("deployments", "show", "iris-prod").stdout
    for text in ("iris-prod", "http://10.0.0.5:8080", "ROLLING_OUT", "pid=99", "by ann", "Traffic", "History",
                 "canary", "25%", "started", "serving v1", "traffic_changed", "canary at 25%", "error_rate=0.002",
                 "previous_state=RUNNING", "bot"):  # fmt: skip
        assert text in out, (text, out)
    assert out.index("serving v1") < out.index("canary at 25%")  # oldest event first
    shown = json.loads(run("deployments", "show", "iris-prod", "--json").stdout)
    assert shown["deployment"]["state"] == "ROLLING_OUT"
    assert [e["kind"] for e in shown["events"]] == ["started", "traffic_changed"]


def test_errors_without_tracebacks(deployed: list[str]) -> None:
    missing = run("deployments", "show", "no-such-id", code=1)
    assert "No deployment with id 'no-such-id'" in missing.stderr and "Traceback" not in missing.output
    bad = run("deployments", "list", "--version", "2", code=1)
    assert "--version needs --model" in bad.stderr and "Traceback" not in bad.output
    state = run("deployments", "list", "--state", "ASLEEP", code=1)
    assert "Unknown deployment state 'ASLEEP': use one of STARTING, RUNNING" in state.stderr
    assert "modelyard deployments show" in run("deployments", "--help").stdout
    assert "Example" in run("deployments", "list", "--help").stdout


def test_empty_store_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    my.set_tracking_uri(None)
    assert "No deployments recorded yet." in run("deployments", "list").stderr


def test_stop_records_the_stop_of_a_server_that_could_not(deployed: list[str]) -> None:
    said = run("deployments", "stop", "iris-prod", "--message", "node ml-7 lost").stdout
    assert "iris-prod" in said and "STOPPED" in said
    shown = json.loads(run("deployments", "show", "iris-prod", "--json").stdout)
    assert shown["deployment"]["state"] == "STOPPED"
    last = shown["events"][-1]
    assert (last["kind"], last["message"], last["user"]) == ("stopped", "node ml-7 lost", "ann")
    assert last["details"]["previous_state"] == "ROLLING_OUT"
    assert shown["deployment"]["traffic"] == shown["events"][-2]["traffic"]  # the split stays as it was
    default = json.loads(run("deployments", "stop", "churn-isvc", "--json").stdout)
    assert default["state"] == "STOPPED"
    assert "stopped by hand" in run("deployments", "show", "churn-isvc").stdout
    again = run("deployments", "stop", "iris-prod", code=1)
    assert "is STOPPED" in again.stderr and "Traceback" not in again.output
    missing = run("deployments", "stop", "no-such-id", code=1)
    assert "No deployment with id 'no-such-id'" in missing.stderr
    assert "Example" in run("deployments", "stop", "--help").stdout
