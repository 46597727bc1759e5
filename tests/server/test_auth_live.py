"""Auth end to end on a real `modelyard server --auth` process: the first admin made on the database with the
CLI, then Modelyard's SDK and CLI and the unmodified `mlflow` client, each with its own token."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.errors import PermissionDenied, Unauthenticated
from modelyard.store.rest import RestStore
from tests.server.live import LiveServer, free_port

CLI = str(Path(sys.executable).with_name("modelyard"))


def modelyard(*args: str, token: str | None = None, code: int = 0) -> subprocess.CompletedProcess[str]:
    import os

    env = {k: v for k, v in os.environ.items() if k != "MODELYARD_TOKEN"}
    if token:
        env["MODELYARD_TOKEN"] = token
    env["COLUMNS"] = "200"
    done = subprocess.run([CLI, *args], capture_output=True, text=True, env=env, timeout=60)
    assert done.returncode == code, (args, done.stdout, done.stderr)
    return done


class Deployment:
    def __init__(self, tmp: Path) -> None:
        self.db = f"sqlite:///{tmp / 'team.db'}"
        self.tokens = {}
        for name, admin in (("root", True), ("alice", False), ("bob", False)):
            made = modelyard(
                "users", "create", name, *(["--admin"] if admin else []), "--tracking-uri", self.db
            )
            self.tokens[name] = made.stdout.strip()
            assert "shown only now" in made.stderr.replace("\n", " ")
        self.server = LiveServer(
            self.db, tmp / "artifacts", extra_args=("--auth", "--host", "0.0.0.0")
        ).start()
        self.url = self.server.url


@pytest.fixture(scope="module")
def team(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    deployment = Deployment(tmp_path_factory.mktemp("auth-live"))
    yield deployment
    deployment.server.stop()


def _store(url: str, token: str | None, monkeypatch: pytest.MonkeyPatch) -> RestStore:
    if token is None:
        monkeypatch.delenv("MODELYARD_TOKEN", raising=False)
    else:
        monkeypatch.setenv("MODELYARD_TOKEN", token)
    return RestStore(url, retries=0)


def test_binding_beyond_loopback_needs_auth_or_insecure(tmp_path: Path) -> None:
    refused = modelyard("server", "--host", "0.0.0.0", "--port", str(free_port()),
                        "--backend-store-uri", f"sqlite:///{tmp_path / 'x.db'}", code=1)  # fmt: skip
    assert "--auth" in refused.stderr and "--insecure" in refused.stderr and "Traceback" not in refused.stderr


def test_sdk_with_tokens(team: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(Unauthenticated, match="MODELYARD_TOKEN"):
        _store(team.url, None, monkeypatch).search_experiments()
    alice = _store(team.url, team.tokens["alice"], monkeypatch)
    with pytest.raises(PermissionDenied, match="Only an admin may choose where"):  # no prefix allowed here
        alice.create_experiment("alice-elsewhere", artifact_location="/tmp/modelyard-elsewhere")
    exp = alice.create_experiment("alice-sdk")
    run = alice.create_run(exp)
    from modelyard.schemas import Metric

    alice.log_batch(run.run_id, metrics=[Metric(key="loss", value=0.5, step=1, timestamp=1)])
    alice.artifact_store(run.run_id, run.info.artifact_uri).put_bytes(b"weights", "model.bin")
    bob = _store(team.url, team.tokens["bob"], monkeypatch)
    assert bob.get_metric_history(run.run_id, "loss").values == [0.5]  # default role READ
    with pytest.raises(PermissionDenied, match="needs EDIT"):
        bob.log_batch(run.run_id, metrics=[Metric(key="loss", value=9.0, step=2, timestamp=2)])
    with pytest.raises(PermissionDenied):
        bob.artifact_store(run.run_id, run.info.artifact_uri).put_bytes(b"evil", "model.bin")
    with bob.artifact_store(run.run_id, run.info.artifact_uri).open_read("model.bin") as f:
        assert f.read() == b"weights"


def test_cli_through_the_server(team: Deployment) -> None:
    url = (
        "--tracking-uri",
        team.url,
    )  # after the subcommand here; `modelyard --tracking-uri URL ...` works too
    modelyard("--tracking-uri", team.url, "experiments", "list", token=team.tokens["alice"])
    modelyard("--tracking-uri", team.url, "experiments", "create", "alice-cli", token=team.tokens["alice"])
    me = modelyard("users", "me", *url, token=team.tokens["alice"])
    assert me.stdout.strip() == "alice"
    granted = modelyard(
        "permissions", "grant", "bob", "experiment", "alice-cli", "EDIT", *url, token=team.tokens["alice"]
    )
    assert "bob now has EDIT" in granted.stderr
    denied = modelyard("permissions", "grant", "bob", "experiment", "alice-cli", "MANAGE", *url,
                       token=team.tokens["bob"], code=1)  # fmt: skip
    assert "needs MANAGE" in denied.stderr and "Traceback" not in denied.stderr
    assert "admin" in modelyard("users", "list", *url, token=team.tokens["alice"], code=1).stderr

    new = modelyard("tokens", "create", "--name", "ci", "--expires-in", "30d", *url, token=team.tokens["bob"])
    ci_token = new.stdout.strip()
    assert ci_token.startswith("myd_") and "bob" in new.stderr
    listed = modelyard("tokens", "list", *url, token=ci_token).stdout
    assert "ci" in listed and ci_token not in listed and "active" in listed
    token_id = next(line.split()[0] for line in listed.splitlines() if " ci " in line)
    modelyard("tokens", "revoke", token_id, *url, token=team.tokens["bob"])
    refused = modelyard("--tracking-uri", team.url, "experiments", "list", token=ci_token, code=1)
    assert "revoked" in refused.stderr

    audit = modelyard(
        "audit", "--user", "alice", "--since", "1h", "--json", *url, token=team.tokens["root"]
    ).stdout
    import json

    paths = {(e["method"], e["path"]) for e in json.loads(audit)}
    assert ("PUT", f"/api/v1/permissions/experiment/{_experiment_id(team, 'alice-cli')}/bob") in paths


def _experiment_id(team: Deployment, name: str) -> str:
    import httpx

    r = httpx.get(f"{team.url}/api/v1/experiments/by-name/{name}",
                  headers={"Authorization": f"Bearer {team.tokens['root']}"})  # fmt: skip
    return str(r.json()["experiment_id"])


def test_unmodified_mlflow_client_with_tokens(team: Deployment, monkeypatch: pytest.MonkeyPatch) -> None:
    mlflow = pytest.importorskip("mlflow")
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    monkeypatch.setenv("MLFLOW_TRACKING_URI", team.url)
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN", raising=False)
    with pytest.raises(MlflowException) as no_token:
        MlflowClient().search_experiments()
    assert "401" in str(no_token.value) or "UNAUTHENTICATED" in str(no_token.value)

    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", team.tokens["alice"])
    exp_id = mlflow.create_experiment("alice-mlflow")
    with mlflow.start_run(experiment_id=exp_id) as run:
        mlflow.log_metric("acc", 0.9)
        mlflow.log_text("hello", "notes.txt")
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/notes.txt") == "hello"

    # bob, through MLflow's Basic auth with his token as the password: he may read, not write.
    monkeypatch.delenv("MLFLOW_TRACKING_TOKEN")
    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "bob")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", team.tokens["bob"])
    client = MlflowClient()
    assert client.get_run(run.info.run_id).data.metrics == {"acc": 0.9}
    with pytest.raises(MlflowException) as denied:
        client.log_metric(run.info.run_id, "acc", 0.1)
    assert denied.value.error_code == "PERMISSION_DENIED"
    import requests

    with pytest.raises(
        requests.HTTPError, match="PERMISSION_DENIED"
    ):  # MLflow's artifact client raises these
        client.log_text(run.info.run_id, "evil", "notes.txt")
    assert mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/notes.txt") == "hello"


def test_artifact_location_prefixes_with_the_mlflow_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`--artifact-location-prefix` (twice) reaches the server's worker: a user's experiment may live in a
    folder under one, MLflow's uploads land there, and a location elsewhere is refused in MLflow's shape."""
    mlflow = pytest.importorskip("mlflow")
    from mlflow.exceptions import MlflowException

    db = f"sqlite:///{tmp_path / 'locations.db'}"
    token = modelyard("users", "create", "alice", "--tracking-uri", db).stdout.strip()
    shared, elsewhere = tmp_path / "shared", tmp_path / "elsewhere"
    shared.mkdir()
    prefixes = ("--artifact-location-prefix", str(shared), "--artifact-location-prefix", "s3://team/exps")
    server = LiveServer(db, tmp_path / "artifacts", extra_args=("--auth", *prefixes)).start()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
        monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
        monkeypatch.setenv("MLFLOW_DISABLE_TELEMETRY", "true")
        monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token)
        with pytest.raises(MlflowException) as refused:
            mlflow.create_experiment("elsewhere", artifact_location=str(elsewhere))
        assert refused.value.error_code == "PERMISSION_DENIED"
        assert str(shared) in refused.value.message and "s3://team/exps" in refused.value.message
        exp_id = mlflow.create_experiment("shared", artifact_location=str(shared / "alice"))
        with mlflow.start_run(experiment_id=exp_id) as run:
            mlflow.log_text("hello", "notes.txt")
        assert (shared / "alice" / run.info.run_id / "artifacts" / "notes.txt").read_text() == "hello"
        assert not elsewhere.exists()
    finally:
        server.stop()
