"""The unmodified `mlflow` client (mlflow-skinny) against a real Modelyard server's model registry: registered
models, versions, stages, aliases, searches, MLflow 3's logged models with `log_model(registered_model_name=)`
and `models:/` URIs, and a promotion refused by Modelyard's gates. Versions registered through MLflow are
Modelyard's own, read back through its registry store."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

import modelyard as my
from modelyard.schemas.registry import GatePolicy, GateRule, Stage
from modelyard.store.sql.model_registry import SqlModelRegistryStore
from tests.server import mlflow_live
from tests.server.live import LiveServer
from tests.server.mlflow_live import unique_name as _name

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

API = "/api/2.0/mlflow"
server, mlflow_env = mlflow_live.server, mlflow_live.mlflow_env  # the shared fixtures
pytestmark = pytest.mark.filterwarnings(
    "ignore:.*stages:FutureWarning"
)  # MLflow deprecates stages; we test them


@pytest.fixture
def registry(server: LiveServer) -> Iterator[SqlModelRegistryStore]:
    """Modelyard's own registry store on the server's database."""
    store = SqlModelRegistryStore.open(server.backend_uri)
    yield store
    store.close()


def _code(exc: pytest.ExceptionInfo[MlflowException]) -> str:
    return str(exc.value.error_code)


def _run_with_model_files(tmp_path: Path, metrics: dict[str, float] | None = None) -> str:
    """A run whose artifacts hold a (fake) MLflow model folder under `model/`."""
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    (folder / "MLmodel").write_text("flavors: {}\n")
    (folder / "weights.bin").write_bytes(b"\x00\x01")
    mlflow.set_experiment(_name("registry"))
    with mlflow.start_run() as run:
        mlflow.log_artifacts(str(folder), "model")
        if metrics:
            mlflow.log_metrics(metrics)
    return str(run.info.run_id)


# registering ----------------------------------------------------------------------------------------------
def test_register_model_from_run_reads_through_both_apis(
    tmp_path: Path, registry: SqlModelRegistryStore
) -> None:
    run_id = _run_with_model_files(tmp_path)
    name = _name("churn")
    mv = mlflow.register_model(f"runs:/{run_id}/model", name, tags={"team": "growth"})
    assert (mv.name, mv.version, mv.run_id, mv.status) == (name, "1", run_id, "READY")
    experiment_id = mlflow.get_run(run_id).info.experiment_id
    assert mv.source == f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts/model"

    client = MlflowClient()
    got = client.get_model_version(name, "1")
    assert got.current_stage == "None" and got.tags == {"team": "growth"} and got.aliases == []
    assert 0 < (got.creation_timestamp or 0) <= (got.last_updated_timestamp or 0)
    assert client.get_model_version_download_uri(name, "1") == mv.source
    files = mlflow.artifacts.download_artifacts(f"models:/{name}/1", dst_path=str(tmp_path / "dl"))
    assert (Path(files) / "weights.bin").read_bytes() == b"\x00\x01"

    ours = registry.get_model_version(name, 1)  # the same version, in Modelyard's registry
    assert (ours.source, ours.run_id, ours.tags, ours.stage) == (
        mv.source,
        run_id,
        {"team": "growth"},
        Stage.NONE,
    )
    model = client.get_registered_model(name)
    assert [v.version for v in model.latest_versions] == ["1"]

    again = mlflow.register_model(f"runs:/{run_id}/model", name)  # an existing model gets a new version
    assert again.version == "2"
    assert [v.version for v in registry.search_model_versions(f"name = '{name}'").model_versions] == [2, 1]

    # a version Modelyard registered with the files' real location downloads through the proxy
    real = (
        my.Client(os.environ["MLFLOW_TRACKING_URI"]).get_run(run_id).info.artifact_uri.rstrip("/") + "/model"
    )
    assert registry.create_model_version(name, real, run_id).version == 3
    assert client.get_model_version(name, "3").source == real
    assert client.get_model_version_download_uri(name, "3") == mv.source
    files = mlflow.artifacts.download_artifacts(f"models:/{name}/3", dst_path=str(tmp_path / "dl3"))
    assert (Path(files) / "MLmodel").exists()


def test_registered_models_create_get_search_update_rename_delete() -> None:
    client = MlflowClient()
    prefix = _name("rm")
    first = client.create_registered_model(f"{prefix}-a", tags={"team": "vision"}, description="first")
    assert (first.name, first.description, first.tags) == (f"{prefix}-a", "first", {"team": "vision"})
    assert first.creation_timestamp > 0 and first.latest_versions == [] and first.aliases == {}
    client.create_registered_model(f"{prefix}-b")
    with pytest.raises(MlflowException) as taken:
        client.create_registered_model(f"{prefix}-a")
    assert _code(taken) == "RESOURCE_ALREADY_EXISTS"

    found = client.search_registered_models(f"name LIKE '{prefix}%'")
    assert [m.name for m in found] == [f"{prefix}-a", f"{prefix}-b"]
    assert [
        m.name for m in client.search_registered_models(f"name LIKE '{prefix}%'", order_by=["name DESC"])
    ] == [
        f"{prefix}-b",
        f"{prefix}-a",
    ]
    assert [
        m.name for m in client.search_registered_models(f"tags.team = 'vision' AND name LIKE '{prefix}%'")
    ] == [f"{prefix}-a"]
    page = client.search_registered_models(f"name LIKE '{prefix}%'", max_results=1)
    assert [m.name for m in page] == [f"{prefix}-a"] and page.token
    rest = client.search_registered_models(f"name LIKE '{prefix}%'", max_results=1, page_token=page.token)
    assert [m.name for m in rest] == [f"{prefix}-b"]

    client.update_registered_model(f"{prefix}-a", description="better")
    client.set_registered_model_tag(f"{prefix}-a", "owner", "ana")
    client.delete_registered_model_tag(f"{prefix}-a", "team")
    client.rename_registered_model(f"{prefix}-a", f"{prefix}-c")
    got = client.get_registered_model(f"{prefix}-c")
    assert (got.description, got.tags) == ("better", {"owner": "ana"})
    client.delete_registered_model(f"{prefix}-c")
    prompt = httpx.post(  # MLflow's prompt registry (the client itself keeps prompts out of model calls)
        f"{os.environ['MLFLOW_TRACKING_URI']}{API}/registered-models/create",
        json={"name": _name("prompt"), "tags": [{"key": "mlflow.prompt.is_prompt", "value": "true"}]},
    )
    assert prompt.status_code == 501 and prompt.json()["error_code"] == "NOT_IMPLEMENTED"
    for call, code in [
        (lambda: client.get_registered_model(f"{prefix}-c"), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: client.delete_registered_model_tag(f"{prefix}-b", "never"), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: client.create_registered_model(" bad name"), "INVALID_PARAMETER_VALUE"),
        (lambda: client.search_registered_models("nonsense ~ 1"), "INVALID_PARAMETER_VALUE"),
        (lambda: client.search_registered_models(order_by=["size"]), "INVALID_PARAMETER_VALUE"),
    ]:
        with pytest.raises(MlflowException) as exc:
            call()
        assert _code(exc) == code, exc.value


def test_model_versions_update_tags_search_delete(tmp_path: Path) -> None:
    run_id = _run_with_model_files(tmp_path)
    other_run = _run_with_model_files(tmp_path)
    client = MlflowClient()
    name = _name("mv")
    client.create_registered_model(name)
    for i, rid in enumerate([run_id, run_id, other_run]):
        mv = client.create_model_version(name, f"runs:/{rid}/model", run_id=rid, tags={"i": str(i)})
        assert mv.version == str(i + 1) and mv.source == f"runs:/{rid}/model"
    updated = client.update_model_version(name, "2", description="the good one")
    assert updated.description == "the good one"
    client.set_model_version_tag(name, "2", "validated", "yes")
    client.delete_model_version_tag(name, "2", "i")
    assert client.get_model_version(name, "2").tags == {"validated": "yes"}

    def versions(filter_string: str, **kwargs: object) -> list[str]:
        return [mv.version for mv in client.search_model_versions(filter_string, **kwargs)]  # type: ignore[arg-type]

    assert versions(f"name = '{name}'") == ["3", "2", "1"]
    assert versions(f"name = '{name}'", order_by=["version_number ASC"]) == ["1", "2", "3"]
    assert versions(f"name = '{name}' AND tags.validated = 'yes'") == ["2"]
    assert versions(f"name = '{name}' AND run_id = '{other_run}'") == ["3"]
    assert versions(f"run_id IN ('{run_id}', '{other_run}') AND name = '{name}'") == ["3", "2", "1"]
    assert versions(f"name = '{name}' AND version_number = 1") == ["1"]
    assert versions(f"name='{name}' AND source_path = 'runs:/{other_run}/model'") == ["3"]
    page = client.search_model_versions(f"name = '{name}'", max_results=2)
    assert [mv.version for mv in page] == ["3", "2"] and page.token
    assert [mv.version for mv in client.search_model_versions(f"name = '{name}'", page_token=page.token)] == [
        "1"
    ]

    client.delete_model_version(name, "3")
    assert versions(f"name = '{name}'") == ["2", "1"]
    for call, code in [
        (lambda: client.get_model_version(name, "3"), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: client.get_model_version(name, "x"), "INVALID_PARAMETER_VALUE"),
        (
            lambda: client.create_model_version(_name("missing"), f"runs:/{run_id}/model"),
            "RESOURCE_DOES_NOT_EXIST",
        ),
        (lambda: client.create_model_version(name, str(tmp_path / "model")), "INVALID_PARAMETER_VALUE"),
        (lambda: client.create_model_version(name, "s3://bucket/../etc"), "INVALID_PARAMETER_VALUE"),
        (
            lambda: client.search_model_versions(f"name = '{name}' AND version_number > 1"),
            "INVALID_PARAMETER_VALUE",
        ),
        (lambda: client.delete_model_version_tag(name, "1", "never"), "RESOURCE_DOES_NOT_EXIST"),
    ]:
        with pytest.raises(MlflowException) as exc:
            call()
        assert _code(exc) == code, exc.value


def test_stages_archive_existing_and_aliases(tmp_path: Path) -> None:
    run_id = _run_with_model_files(tmp_path)
    client = MlflowClient()
    name = _name("stages")
    client.create_registered_model(name)
    for _ in range(3):
        client.create_model_version(name, f"runs:/{run_id}/model", run_id=run_id)
    assert client.transition_model_version_stage(name, "1", "production").current_stage == "Production"
    client.transition_model_version_stage(name, "2", "Staging")
    moved = client.transition_model_version_stage(name, "3", "Production", archive_existing_versions=True)
    assert moved.current_stage == "Production"
    assert client.get_model_version(name, "1").current_stage == "Archived"
    assert client.get_model_version(name, "2").current_stage == "Staging"  # another stage: untouched
    latest = {mv.current_stage: mv.version for mv in client.get_latest_versions(name)}
    assert latest == {"Archived": "1", "Staging": "2", "Production": "3"}
    assert [mv.version for mv in client.get_latest_versions(name, stages=["Production"])] == ["3"]
    assert client.get_model_version_download_uri(name, "3") == f"runs:/{run_id}/model"
    assert Path(
        mlflow.artifacts.download_artifacts(f"models:/{name}/Production", dst_path=str(tmp_path / "p"))
    )

    client.set_registered_model_alias(name, "champion", "2")
    client.set_registered_model_alias(name, "challenger", "1")
    assert client.get_model_version_by_alias(name, "champion").version == "2"
    assert client.get_registered_model(name).aliases == {"champion": "2", "challenger": "1"}
    assert client.get_model_version(name, "2").aliases == ["champion"]
    client.set_registered_model_alias(name, "champion", "3")  # an alias moves
    assert client.get_model_version_by_alias(name, "champion").version == "3"
    client.delete_registered_model_alias(name, "challenger")
    assert client.get_registered_model(name).aliases == {"champion": "3"}
    for call, code in [
        (lambda: client.get_model_version_by_alias(name, "challenger"), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: client.set_registered_model_alias(name, "latest", "1"), "INVALID_PARAMETER_VALUE"),
        (lambda: client.transition_model_version_stage(name, "1", "Shipped"), "INVALID_PARAMETER_VALUE"),
        (
            lambda: client.transition_model_version_stage(
                name, "1", "Archived", archive_existing_versions=True
            ),
            "INVALID_PARAMETER_VALUE",
        ),
        # Modelyard refuses to delete what a stage or an alias still points at (MLflow would delete it)
        (lambda: client.delete_model_version(name, "3"), "INVALID_STATE"),
        (lambda: client.delete_registered_model(name), "INVALID_STATE"),
    ]:
        with pytest.raises(MlflowException) as exc:
            call()
        assert _code(exc) == code, exc.value


def test_gate_refusal_reaches_the_mlflow_client(tmp_path: Path, registry: SqlModelRegistryStore) -> None:
    run_id = _run_with_model_files(tmp_path, {"accuracy": 0.8})
    name = _name("gated")
    mlflow.register_model(f"runs:/{run_id}/model", name)
    registry.set_gate_policy(
        name,
        GatePolicy(rules=[GateRule(rule="tags.approved exists"), GateRule(rule="metrics.accuracy >= 0.7")]),
    )
    client = MlflowClient()
    for promote in (
        lambda: client.transition_model_version_stage(name, "1", "Production"),
        lambda: client.set_registered_model_alias(name, "champion", "1"),
    ):
        with pytest.raises(MlflowException) as refused:
            promote()
        assert _code(refused) == "INVALID_STATE"
        assert "tags.approved exists" in str(refused.value) and "accuracy" not in str(refused.value)
    assert client.get_model_version(name, "1").current_stage == "None"
    client.transition_model_version_stage(name, "1", "Archived")  # not a promotion: no gate
    client.set_model_version_tag(name, "1", "approved", "ana")
    assert client.transition_model_version_stage(name, "1", "Production").current_stage == "Production"
    history = registry.stage_history(name, 1)
    assert [t.to_stage for t in history] == [Stage.ARCHIVED, Stage.PRODUCTION]


# MLflow 3 logged models -------------------------------------------------------------------------------------
def test_sklearn_log_model_register_and_load(tmp_path: Path, registry: SqlModelRegistryStore) -> None:
    pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression

    x = [[0.0, 0.0], [0.0, 1.0], [1.0, 0.0], [1.0, 1.0]] * 5
    y = [0, 1, 1, 1] * 5
    model = LogisticRegression().fit(x, y)
    name = _name("sk")
    mlflow.set_experiment(_name("sklearn"))
    with mlflow.start_run() as run:
        mlflow.log_param("C", 1.0)
        info = mlflow.sklearn.log_model(
            model, name="clf", registered_model_name=name, pip_requirements=["scikit-learn"]
        )
    assert str(info.registered_model_version) == "1" and info.model_id
    client = MlflowClient()
    mv = client.get_model_version(name, "1")
    assert (mv.source, mv.run_id) == (f"models:/{info.model_id}", run.info.run_id)
    raw = httpx.get(
        f"{os.environ['MLFLOW_TRACKING_URI']}{API}/model-versions/get", params={"name": name, "version": 1}
    )
    assert (
        raw.json()["model_version"]["model_id"] == info.model_id
    )  # in the JSON (the client reads it not yet)
    ours = registry.get_model_version(name, 1)
    assert (ours.source, ours.run_id) == (mv.source, run.info.run_id)

    logged = client.get_logged_model(info.model_id)
    assert (logged.name, logged.source_run_id, logged.experiment_id) == (
        "clf", run.info.run_id, run.info.experiment_id,
    )  # fmt: skip
    assert logged.params == {"C": "1.0"} and logged.artifact_location.startswith("mlflow-artifacts:/")
    assert '"version": "1"' in logged.tags["mlflow.modelVersions"]
    assert client.get_model_version_download_uri(name, "1") == logged.artifact_location
    found = client.search_logged_models([run.info.experiment_id], filter_string="name = 'clf'")
    assert [m.model_id for m in found] == [info.model_id]

    expected = model.predict(x).tolist()
    assert mlflow.pyfunc.load_model(f"models:/{name}/1").predict(x).tolist() == expected
    client.set_registered_model_alias(name, "champion", "1")
    assert mlflow.pyfunc.load_model(f"models:/{name}@champion").predict(x).tolist() == expected
    client.transition_model_version_stage(name, "1", "Production")
    assert mlflow.sklearn.load_model(f"models:/{name}/Production").predict(x).tolist() == expected
    assert mlflow.pyfunc.load_model(f"models:/{info.model_id}").predict(x).tolist() == expected
    assert mlflow.pyfunc.load_model(f"runs:/{run.info.run_id}/clf").predict(x).tolist() == expected
    # Modelyard's own SDK loads the version MLflow logged and registered, from the same server
    import numpy as np

    import modelyard as my

    previous = my.get_tracking_uri()
    my.set_tracking_uri(os.environ["MLFLOW_TRACKING_URI"])
    try:
        predictor = my.load_predictor(f"models:/{name}@champion", trusted=True)
        assert predictor.predict(np.array(x)).tolist() == expected
    finally:
        my.set_tracking_uri(previous)

    # a second version from the same run's logged model, through runs:/ (MLflow finds the logged model)
    again = mlflow.register_model(f"runs:/{run.info.run_id}/clf", name)
    assert again.version == "2" and again.source == f"models:/{info.model_id}"
    # and one from another version
    copy = client.create_model_version(name, f"models:/{name}@champion")
    assert (copy.version, copy.source, copy.run_id) == ("3", f"models:/{info.model_id}", run.info.run_id)


def test_logged_models_api() -> None:
    client = MlflowClient()
    experiment_id = client.create_experiment(_name("logged"))
    run_id = client.create_run(experiment_id).info.run_id
    first = client.create_logged_model(
        experiment_id,
        name="net",
        source_run_id=run_id,
        params={"lr": "0.1"},
        tags={"k": "v"},
        model_type="nn",
    )
    assert str(first.status) == "PENDING" and first.params == {"lr": "0.1"} and first.model_type == "nn"
    second = client.create_logged_model(experiment_id, name="tree")
    ready = client.finalize_logged_model(first.model_id, mlflow.entities.LoggedModelStatus.READY)
    assert str(ready.status) == "READY"
    client.set_logged_model_tags(first.model_id, {"team": "cv"})
    client.delete_logged_model_tag(first.model_id, "k")
    assert client.get_logged_model(first.model_id).tags == {"team": "cv"}

    def names(filter_string: str | None = None, **kwargs: object) -> list[str]:
        found = client.search_logged_models([experiment_id], filter_string=filter_string, **kwargs)  # type: ignore[arg-type]
        return [m.name for m in found]

    assert names() == ["tree", "net"]  # the newest first
    assert names(order_by=[{"field_name": "name", "ascending": True}]) == ["net", "tree"]
    assert names("name = 'net'") == ["net"]
    assert names("tags.team = 'cv'") == ["net"]
    assert names(f"source_run_id = '{run_id}' AND status = 'READY'") == ["net"]
    assert names("name LIKE 't%'") == ["tree"]
    page = client.search_logged_models([experiment_id], max_results=1)
    assert len(page) == 1 and page.token
    client.delete_logged_model(second.model_id)
    assert names() == ["net"]
    # meta.json sits among the experiment's artifacts: a rewritten one reads as a missing model, not a 500
    proxy = f"{os.environ['MLFLOW_TRACKING_URI']}/api/2.0/mlflow-artifacts/artifacts/{experiment_id}"
    assert (
        httpx.put(f"{proxy}/models/{first.model_id}/meta.json", content=b'{"model_id": 1}').status_code == 200
    )
    assert names() == []
    for call, code in [
        (lambda: client.get_logged_model(second.model_id), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: client.get_logged_model(first.model_id), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: client.get_logged_model("m-" + "0" * 32 + "-" + experiment_id), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: client.get_logged_model("not-an-id"), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: client.create_logged_model("987654"), "RESOURCE_DOES_NOT_EXIST"),
        (
            lambda: client.search_logged_models([experiment_id], filter_string="metrics.x > 1"),
            "INVALID_PARAMETER_VALUE",
        ),
    ]:
        with pytest.raises(MlflowException) as exc:
            call()
        assert _code(exc) == code, exc.value


# malformed requests ---------------------------------------------------------------------------------------
BAD_BODIES: list[bytes] = [  # the first three are not JSON objects
    b"{not json",
    b"[1, 2]",
    b'"a string"',
    b'{"name": 5, "version": {"x": 1}, "tags": "nope", "stages": [1, {}]}',
    b'{"name": "m", "version": "-3", "source": 7, "archive_existing_versions": "maybe", "stage": "Nope"}',
    b'{"name": "m", "version": "99999999999999999999999", "alias": "a b", "new_name": ""}',
    b'{"name": "\\ud800", "key": "\\u0000", "source": "runs:/x/../../etc"}',
    b'{"experiment_id": "1e3", "experiment_ids": [{}], "max_results": "x", "order_by": ["size"], "filter": "a ~"}',
    b'{"experiment_id": "0", "name": "a/b", "params": [{"key": null}], "tags": [{"value": 1}], "status": 9}',
]
ENDPOINTS = [
    ("POST", "registered-models/create"), ("POST", "registered-models/rename"),
    ("PATCH", "registered-models/update"), ("DELETE", "registered-models/delete"),
    ("POST", "registered-models/set-tag"), ("DELETE", "registered-models/delete-tag"),
    ("POST", "registered-models/get-latest-versions"), ("POST", "registered-models/alias"),
    ("DELETE", "registered-models/alias"), ("POST", "model-versions/create"), ("PATCH", "model-versions/update"),
    ("DELETE", "model-versions/delete"), ("POST", "model-versions/set-tag"), ("DELETE", "model-versions/delete-tag"),
    ("POST", "model-versions/transition-stage"), ("POST", "logged-models"), ("POST", "logged-models/search"),
    ("PATCH", "logged-models/m-00000000000000000000000000000000-0"), ("POST", "runs/outputs"),
]  # fmt: skip
GET_QUERIES = [
    ("registered-models/get", {}),
    ("registered-models/get", {"name": "a\0b"}),
    ("registered-models/search", {"max_results": "0"}),
    ("registered-models/search", {"max_results": "x", "filter": "name ~ 'a'"}),
    ("registered-models/search", {"page_token": "!!"}),
    ("registered-models/alias", {"name": "m"}),
    ("registered-models/get-latest-versions", {"name": "m", "stages": "Nope"}),
    ("model-versions/get", {"name": "m", "version": "one"}),
    ("model-versions/get-download-uri", {"name": "m"}),
    ("model-versions/search", {"filter": "version_number > 'x'"}),
    ("model-versions/search", {"order_by": "name SIDEWAYS"}),
    ("model-versions/search", {"max_results": "999999999"}),
    ("logged-models/not-an-id", {}),
    ("logged-models/m-00000000000000000000000000000000-99999999999999999999", {}),
]


def test_malformed_registry_requests_are_4xx_never_500(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for method, endpoint in ENDPOINTS:
            for i, body in enumerate(BAD_BODIES):
                response = http.request(
                    method, f"{API}/{endpoint}", content=body, headers={"content-type": "application/json"}
                )
                assert response.status_code < 500, (endpoint, body, response.text)
                if i < 3:
                    assert response.status_code == 400, (endpoint, body, response.text)
                if response.status_code != 200:
                    assert set(response.json()) == {"error_code", "message"}, (endpoint, body)
                    assert response.json()["message"], (endpoint, body)
        for endpoint, query in GET_QUERIES:
            response = http.get(f"{API}/{endpoint}", params=query)
            assert 400 <= response.status_code < 500, (endpoint, query, response.text)
            assert response.json()["error_code"] in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST")
        for root in ("/api/2.0", "/ajax-api/2.0"):
            missing = http.get(f"{root}/mlflow/registered-models/get", params={"name": "never-made"})
            assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
