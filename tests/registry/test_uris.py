"""`models:/` URIs resolve on the embedded store and through a server, with errors that say what to write."""

from __future__ import annotations

from pathlib import Path

import pytest

from modelyard.errors import InvalidArgument, NotFound
from modelyard.registry import RegistryClient, model_version_for, resolve_model_uri


@pytest.fixture
def uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'r.db'}"


def test_every_form_of_models_uri(uri: str) -> None:
    client = RegistryClient(uri)
    for i in range(3):
        client.register_model(f"s3://bucket/churn/{i + 1}", "churn")
    client.transition_stage("churn", 2, "Production")
    client.set_alias("churn", "champion", 1)
    assert resolve_model_uri("models:/churn/3", uri) == "s3://bucket/churn/3"
    assert resolve_model_uri("models:/churn@champion", uri) == "s3://bucket/churn/1"
    assert resolve_model_uri("models:/churn/Production", uri) == "s3://bucket/churn/2"
    assert resolve_model_uri("models:/churn/production", uri) == "s3://bucket/churn/2"
    assert resolve_model_uri("models:/churn/latest", uri) == "s3://bucket/churn/3"
    assert model_version_for("models:/churn/1", uri).aliases == ["champion"]
    with pytest.raises(NotFound, match="No version of 'churn' is in Staging"):
        resolve_model_uri("models:/churn/Staging", uri)
    with pytest.raises(NotFound, match="no alias 'nope'"):
        resolve_model_uri("models:/churn@nope", uri)
    with pytest.raises(NotFound, match="no version 9"):
        resolve_model_uri("models:/churn/9", uri)
    for bad in ("models:/churn", "models:/", "runs:/x/model", "models:/@x"):
        with pytest.raises(InvalidArgument):
            resolve_model_uri(bad, uri)
    with pytest.raises(InvalidArgument, match="Unknown stage"):
        resolve_model_uri("models:/churn/Prod", uri)


def test_register_model_records_the_run_and_the_user(uri: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from modelyard.tracking.client import Client

    monkeypatch.setenv("MODELYARD_USER", "ann")
    run = Client(uri).create_run("0")
    mv = RegistryClient(uri).register_model(f"runs:/{run.run_id}/model", "m", tags={"epochs": 3})
    assert (mv.run_id, mv.created_by, mv.tags) == (run.run_id, "ann", {"epochs": "3"})
    with pytest.raises(InvalidArgument, match="names no run"):
        RegistryClient(uri).register_model("runs:///model", "m")


def test_sources_registered_by_mlflow_clients_map_to_storage(uri: str) -> None:
    from modelyard.tracking.client import Client

    experiment = Client(uri).get_experiment("0")
    model_id = "m-" + "a" * 32 + "-0"
    client = RegistryClient(uri)
    client.register_model(f"models:/{model_id}", "from-mlflow")
    client.register_model("mlflow-artifacts:/0/" + "b" * 32 + "/artifacts/clf", "from-mlflow")
    client.register_model("s3://bucket/elsewhere", "from-mlflow")
    root = experiment.artifact_location.rstrip("/")
    assert resolve_model_uri("models:/from-mlflow/1", uri) == f"{root}/models/{model_id}/artifacts"
    assert resolve_model_uri("models:/from-mlflow/2", uri) == f"{root}/{'b' * 32}/artifacts/clf"
    assert resolve_model_uri("models:/from-mlflow/3", uri) == "s3://bucket/elsewhere"
