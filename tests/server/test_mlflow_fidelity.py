"""Where Modelyard's MLflow REST API answers as MLflow's own server does, checked with the unmodified `mlflow`
client: ids of runs another server holds stored as given, MLflow's type checks and error wording, explicit
artifact locations, logged models' outputs, metrics and dataset searches, datasets and registry details, and
the page the client's "View run at" links lead to."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import uuid
from pathlib import Path

import httpx
import pytest

import modelyard as my
from modelyard.registry.lineage import lineage
from tests.server import mlflow_live
from tests.server.live import LiveServer
from tests.server.mlflow_live import unique_name as _name

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import Dataset, DatasetInput, InputTag, LoggedModelOutput  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402
from mlflow.protos import service_pb2  # noqa: E402
from mlflow.utils.rest_utils import MlflowHostCreds, call_endpoint  # noqa: E402

API = "/api/2.0/mlflow"
server, mlflow_env = mlflow_live.server, mlflow_live.mlflow_env  # the shared fixtures


def _other_server_run_id() -> str:
    return uuid.uuid4().hex  # a run id no store here holds


# 1 -------------------------------------------------------------------------------------------------------
def test_ids_of_runs_held_elsewhere_are_stored_as_given(server: LiveServer) -> None:
    client = MlflowClient()
    exp_id = client.create_experiment(_name("elsewhere"))
    parent = _other_server_run_id()
    child = client.create_run(exp_id, tags={"mlflow.parentRunId": parent})
    assert client.get_run(child.info.run_id).data.tags["mlflow.parentRunId"] == parent
    assert my.Client(server.url).get_run(child.info.run_id).info.parent_run_id is None

    source_run = _other_server_run_id()
    model = client.create_logged_model(exp_id, name="m", source_run_id=source_run)
    assert client.get_logged_model(model.model_id).source_run_id == source_run

    name, version_run = _name("reg-elsewhere"), _other_server_run_id()
    client.create_registered_model(name)
    mv = client.create_model_version(name, "s3://bucket/model", run_id=version_run)
    assert client.get_model_version(name, mv.version).run_id == version_run
    graph = lineage(f"models:/{name}/{mv.version}", tracking_uri=server.url)
    run_node = graph.node(f"run:{version_run}")
    assert "not found" in run_node.label and run_node.attributes == {"found": False}


# 2 -------------------------------------------------------------------------------------------------------
def test_fields_of_the_wrong_type_are_refused_as_mlflow_refuses_them(server: LiveServer) -> None:
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment(_name("types"))).info.run_id
    creds = MlflowHostCreds(server.url)
    cases = [
        ("experiments/create", {"name": 123}, service_pb2.CreateExperiment, "name", "123"),
        ("runs/log-metric", {"run_id": run_id, "key": 7, "value": 1.0, "timestamp": 1}, service_pb2.LogMetric,
         "key", "7"),
        ("runs/set-tag", {"run_id": run_id, "key": "k", "value": 5}, service_pb2.SetTag, "value", "5"),
        ("runs/log-parameter", {"run_id": 1234, "key": "k", "value": "v"}, service_pb2.LogParam, "run_id",
         "1234"),
    ]  # fmt: skip
    for endpoint, body, proto, field, shown in cases:
        with pytest.raises(MlflowException) as exc:
            call_endpoint(creds, f"{API}/{endpoint}", "POST", json.dumps(body), proto.Response())  # type: ignore[attr-defined]
        assert exc.value.error_code == "INVALID_PARAMETER_VALUE", endpoint
        assert f"Invalid value {shown} for parameter '{field}' supplied" in exc.value.message, endpoint
    assert client.search_experiments(filter_string="name = '123'") == []
    assert client.get_run(run_id).data.tags.get("k") is None and client.get_run(run_id).data.metrics == {}


# 3 -------------------------------------------------------------------------------------------------------
def test_errors_in_mlflow_words() -> None:
    client = MlflowClient()
    exp_name = _name("words")
    exp_id = client.create_experiment(exp_name)
    run_id = client.create_run(exp_id).info.run_id
    client.log_param(run_id, "p", "1")
    model = _name("words-model")
    client.create_registered_model(model)
    missing_run = "f" * 32
    cases = [
        (lambda: client.get_run(missing_run), f"Run with id={missing_run} not found"),
        (lambda: client.log_metric(missing_run, "m", 1.0), f"Run with id={missing_run} not found"),
        (lambda: client.get_experiment("987654"), "No Experiment with id=987654 exists"),
        (lambda: client.create_experiment(exp_name), f"Experiment(name={exp_name}) already exists."),
        (lambda: client.delete_tag(run_id, "never"), f"No tag with name: never in run with id {run_id}"),
        (lambda: client.delete_experiment_tag(exp_id, "never"),
         f"No tag with name: never in experiment with id {exp_id}"),
        (lambda: client.log_param(run_id, "p", "2"),
         f"Changing param values is not allowed. Param with key='p' was already logged with value='1' for run "
         f"ID='{run_id}'. Attempted logging new value '2'."),
        (lambda: client.create_registered_model(model), f"Registered Model (name={model}) already exists."),
        (lambda: client.get_registered_model("no-such-model"), "Registered Model with name=no-such-model not found"),
        (lambda: client.get_model_version(model, "9"), f"Model Version (name={model}, version=9) not found"),
        (lambda: client.get_model_version_by_alias(model, "champ"), "Registered model alias champ not found."),
    ]  # fmt: skip
    for call, words in cases:
        with pytest.raises(MlflowException) as exc:
            call()
        assert words in exc.value.message, (words, exc.value.message)
    client.delete_run(run_id)
    with pytest.raises(MlflowException) as deleted:
        client.log_param(run_id, "q", "1")
    assert deleted.value.error_code == "INVALID_STATE"
    assert (
        f"The run {run_id} must be in the 'active' state. Current state is deleted." in deleted.value.message
    )


# 4 -------------------------------------------------------------------------------------------------------
def test_explicit_artifact_location_reads_back_as_given(tmp_path: Path) -> None:
    client = MlflowClient()
    location = str(tmp_path / "chosen")
    exp_id = client.create_experiment(_name("located"), artifact_location=location)
    assert client.get_experiment(exp_id).artifact_location == location
    name = client.get_experiment(exp_id).name
    assert client.get_experiment_by_name(name).artifact_location == location  # type: ignore[union-attr]
    default_id = client.create_experiment(_name("default"))
    assert client.get_experiment(default_id).artifact_location == f"mlflow-artifacts:/{default_id}"
    run = client.create_run(exp_id)
    client.log_text(run.info.run_id, "here", "note.txt")  # through the proxy, into the chosen location
    assert (tmp_path / "chosen" / run.info.run_id / "artifacts" / "note.txt").read_text() == "here"


# 5 -------------------------------------------------------------------------------------------------------
def test_logged_model_outputs_metrics_and_dataset_search() -> None:
    client = MlflowClient()
    exp_id = client.create_experiment(_name("outputs"))
    run_id = client.create_run(exp_id).info.run_id
    on_a = client.create_logged_model(exp_id, name="on-a", source_run_id=run_id)
    on_b = client.create_logged_model(exp_id, name="on-b", source_run_id=run_id)
    client.create_logged_model(exp_id, name="no-metrics")
    client.log_outputs(run_id, [LoggedModelOutput(on_a.model_id, 3), LoggedModelOutput(on_b.model_id, 0)])
    outputs = client.get_run(run_id).outputs
    assert outputs is not None
    assert {(o.model_id, o.step) for o in outputs.model_outputs} == {(on_a.model_id, 3), (on_b.model_id, 0)}
    assert not [k for k in client.get_run(run_id).data.tags if k.startswith("modelyard.model_output")]

    client.log_metric(
        run_id, "acc", 0.9, step=1, model_id=on_a.model_id, dataset_name="ds-a", dataset_digest="d1"
    )
    client.log_metric(
        run_id, "acc", 0.5, step=1, model_id=on_b.model_id, dataset_name="ds-b", dataset_digest="d2"
    )
    metrics = client.get_logged_model(on_a.model_id).metrics
    assert metrics is not None
    assert [
        (m.key, m.value, m.step, m.model_id, m.dataset_name, m.dataset_digest, m.run_id) for m in metrics
    ] == [("acc", 0.9, 1, on_a.model_id, "ds-a", "d1", run_id)]
    assert client.get_run(run_id).data.metrics == {"acc": 0.5}  # the run gets the points too

    def found(datasets: list[dict[str, str]]) -> set[str]:
        return {m.name for m in client.search_logged_models([exp_id], datasets=datasets)}

    assert found([{"dataset_name": "ds-a"}]) == {"on-a"}
    assert found([{"dataset_name": "ds-b", "dataset_digest": "d2"}]) == {"on-b"}
    assert found([{"dataset_name": "ds-b", "dataset_digest": "other"}]) == set()
    assert found([{"dataset_name": "ds-a"}, {"dataset_name": "ds-b"}]) == {"on-a", "on-b"}
    assert found([]) == {"on-a", "on-b", "no-metrics"}


# 6 -------------------------------------------------------------------------------------------------------
PROFILE = '{"num_rows": 150, "num_elements": 750}'  # what mlflow.data's pandas dataset sends


def test_dataset_source_model_versions_tag_and_artifacts_list(server: LiveServer) -> None:
    client = MlflowClient()
    exp_id = client.create_experiment(_name("smaller"))
    run_id = client.create_run(exp_id).info.run_id
    sources = [
        "s3://bucket/raw.csv",
        '{"uri":"s3://bucket/compact.csv"}',
        '{"uri": "s3://bucket/spaced.csv"}',
    ]
    client.log_inputs(
        run_id,
        [
            DatasetInput(
                Dataset(f"ds{i}", f"digest{i}", "s3", source, profile=PROFILE),
                [InputTag("mlflow.data.context", "train")],
            )
            for i, source in enumerate(sources)
        ],
    )
    run_inputs = client.get_run(run_id).inputs
    assert run_inputs is not None
    assert sorted(d.dataset.source for d in run_inputs.dataset_inputs) == sorted(sources)
    assert {d.dataset.profile for d in run_inputs.dataset_inputs} == {PROFILE}  # num_elements kept

    model = client.create_logged_model(exp_id, name="tagged")
    name = _name("tagged")
    client.create_registered_model(name)
    mv = client.create_model_version(name, f"models:/{model.model_id}", model_id=model.model_id)
    tag = client.get_logged_model(model.model_id).tags["mlflow.modelVersions"]
    assert json.loads(tag) == [{"name": name, "version": int(mv.version)}]

    client.log_text(run_id, "a", "dir/a.txt")
    client.log_text(run_id, "b", "dir/sub/b.txt")
    listed = call_endpoint(
        MlflowHostCreds(server.url),
        f"{API}/artifacts/list",
        "GET",
        json.dumps({"run_id": run_id, "path": "dir"}),
        service_pb2.ListArtifacts.Response(),
    )
    assert {(f.path, f.is_dir) for f in listed.files} == {("dir/a.txt", False), ("dir/sub", True)}
    assert listed.root_uri == f"mlflow-artifacts:/{exp_id}/{run_id}/artifacts"


# 7 -------------------------------------------------------------------------------------------------------
def _follow(page: str, url: str) -> str | None:
    """Where the page's script sends a browser that opened `url` (None: it stays), run by Node."""
    script = re.search(r"<script>(.*?)</script>", page, re.DOTALL)
    assert script is not None
    fragment = url.partition("#")[2]
    program = (
        f"var target = null; var location = {{hash: {json.dumps('#' + fragment if fragment else '')}, "
        "replace: function (u) { target = u; }};" + script[1] + "console.log(JSON.stringify(target));"
    )
    node = shutil.which("node")
    assert node is not None
    out = subprocess.run([node, "-e", program], capture_output=True, text=True, check=True, timeout=30)
    return json.loads(out.stdout)  # type: ignore[no-any-return]


@pytest.mark.skipif(shutil.which("node") is None, reason="the page's script is run by Node")
def test_view_run_links_lead_to_the_runs_json(server: LiveServer, capsys: pytest.CaptureFixture[str]) -> None:
    mlflow.set_experiment(_name("links"))
    with mlflow.start_run() as run:
        pass
    printed = capsys.readouterr()
    links = re.findall(r"at: (http://\S+)", printed.out + printed.err)
    run_link = next(link for link in links if "/runs/" in link)
    experiment_link = next(link for link in links if "/runs/" not in link)
    with httpx.Client(base_url=server.url) as http:
        page = http.get("/")  # what a browser requests for every such link: the fragment stays with it
        assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
        assert "/api/v1/docs" in page.text and "/api/2.0/mlflow" in page.text
        run_json = _follow(page.text, run_link)
        assert run_json == f"/api/v1/runs/{run.info.run_id}"
        assert http.get(run_json).json()["info"]["run_id"] == run.info.run_id
        experiment_json = _follow(page.text, experiment_link)
        assert experiment_json == f"/api/v1/experiments/{run.info.experiment_id}"
        assert http.get(experiment_json).json()["experiment_id"] == run.info.experiment_id
        assert _follow(page.text, server.url + "/") is None  # no hash: the page itself, listing the APIs
