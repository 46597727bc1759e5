"""The unmodified `mlflow` client (mlflow-skinny) against a real Modelyard server: it creates experiments,
logs, searches and moves artifacts through MLflow's REST API, and what either API logs the other reads."""

from __future__ import annotations

import math
import os
from pathlib import Path

import httpx
import pytest

import modelyard as my
from tests.server import mlflow_live
from tests.server.live import LiveServer
from tests.server.mlflow_live import unique_name as _name

mlflow = pytest.importorskip("mlflow")
from mlflow import MlflowClient  # noqa: E402
from mlflow.entities import RunStatus as MlflowRunStatus  # noqa: E402
from mlflow.entities import ViewType as MlflowViewType  # noqa: E402
from mlflow.exceptions import MlflowException  # noqa: E402

API = "/api/2.0/mlflow"
server, mlflow_env = mlflow_live.server, mlflow_live.mlflow_env  # the shared fixtures


def _error_code(exc: pytest.ExceptionInfo[MlflowException]) -> str:
    return str(exc.value.error_code)


# logging ---------------------------------------------------------------------------------------------------
def test_fluent_logging_round_trip() -> None:
    exp = mlflow.set_experiment(_name("fluent"))
    assert exp.artifact_location == f"mlflow-artifacts:/{exp.experiment_id}"
    with mlflow.start_run(run_name="first") as run:
        mlflow.log_param("lr", 0.1)
        mlflow.log_params({"layers": 3, "optimizer": "adam"})
        for step in range(5):
            mlflow.log_metric("loss", 1 / (step + 1), step=step)
        mlflow.log_metrics({"acc": 0.75, "f1": 0.5}, step=4)
        mlflow.set_tag("team", "vision")
        mlflow.set_tags({"stage": "dev", "owner": "ana"})
    client = MlflowClient()
    got = client.get_run(run.info.run_id)
    assert got.info.status == "FINISHED" and got.info.end_time is not None
    assert got.info.run_name == "first" and got.data.tags["mlflow.runName"] == "first"
    assert got.info.artifact_uri == f"mlflow-artifacts:/{exp.experiment_id}/{run.info.run_id}/artifacts"
    assert got.data.params == {"lr": "0.1", "layers": "3", "optimizer": "adam"}
    assert got.data.metrics == {"loss": 0.2, "acc": 0.75, "f1": 0.5}
    assert {"team": "vision", "stage": "dev", "owner": "ana"}.items() <= got.data.tags.items()
    assert got.info.user_id and got.data.tags["mlflow.user"] == got.info.user_id
    latest = {m.key: m for m in got.data._metric_objs}
    assert latest["loss"].step == 4 and latest["loss"].timestamp > 0
    history = client.get_metric_history(run.info.run_id, "loss")
    assert [(m.step, m.value) for m in history] == [(s, 1 / (s + 1)) for s in range(5)]
    assert client.get_metric_history(run.info.run_id, "never-logged") == []


def test_nan_and_infinities_round_trip() -> None:
    mlflow.set_experiment(_name("nan"))
    with mlflow.start_run() as run:
        mlflow.log_metric("x", float("nan"), step=0)
        mlflow.log_metric("x", float("inf"), step=1)
        mlflow.log_metric("x", float("-inf"), step=2)
        mlflow.log_metric("x", 1.5, step=3)
        mlflow.log_metrics({"only_nan": float("nan")})
    values = [m.value for m in MlflowClient().get_metric_history(run.info.run_id, "x")]
    assert math.isnan(values[0]) and values[1:] == [math.inf, -math.inf, 1.5]
    assert math.isnan(MlflowClient().get_run(run.info.run_id).data.metrics["only_nan"])
    ours = my.Client(os.environ["MLFLOW_TRACKING_URI"]).get_metric_history(run.info.run_id, "x")
    assert math.isnan(ours.values[0]) and ours.values[1:] == [math.inf, -math.inf, 1.5]


def test_paged_metric_history() -> None:
    client = MlflowClient()
    run_id = client.create_run(client.create_experiment(_name("paged"))).info.run_id
    client.log_batch(run_id, metrics=[mlflow.entities.Metric("m", float(i), 1000 + i, i) for i in range(250)])
    page = client.get_metric_history(run_id, "m")
    assert [m.step for m in page] == list(range(250))
    with httpx.Client(base_url=os.environ["MLFLOW_TRACKING_URI"]) as http:
        first = http.get(
            f"{API}/metrics/get-history", params={"run_id": run_id, "metric_key": "m", "max_results": 100}
        )
        body = first.json()
        assert len(body["metrics"]) == 100 and body["next_page_token"]
        rest = http.get(
            f"{API}/metrics/get-history",
            params={
                "run_id": run_id,
                "metric_key": "m",
                "max_results": 1000,
                "page_token": body["next_page_token"],
            },
        ).json()
        assert [m["step"] for m in rest["metrics"]] == list(range(100, 250)) and "next_page_token" not in rest


# artifacts -------------------------------------------------------------------------------------------------
def test_artifacts_upload_list_download(tmp_path: Path) -> None:
    mlflow.set_experiment(_name("artifacts"))
    blob = os.urandom(3 * 2**20 + 123)  # several 1 MiB chunks each way
    (tmp_path / "weights.bin").write_bytes(blob)
    (tmp_path / "tree" / "sub").mkdir(parents=True)
    (tmp_path / "tree" / "a.txt").write_text("a")
    (tmp_path / "tree" / "sub" / "b.txt").write_text("b")
    with mlflow.start_run() as run:
        mlflow.log_dict({"lr": 0.1, "layers": [1, 2]}, "config/params.json")
        mlflow.log_text("héllo", "notes.txt")
        mlflow.log_artifact(str(tmp_path / "weights.bin"), artifact_path="model")
        mlflow.log_artifacts(str(tmp_path / "tree"), artifact_path="tree")
    run_id = run.info.run_id
    client = MlflowClient()
    root = {(f.path, f.is_dir, f.file_size) for f in client.list_artifacts(run_id)}
    assert root == {
        ("config", True, None),
        ("model", True, None),
        ("notes.txt", False, 6),
        ("tree", True, None),
    }
    assert [(f.path, f.file_size) for f in client.list_artifacts(run_id, "model")] == [
        ("model/weights.bin", len(blob))
    ]
    assert client.list_artifacts(run_id, "model/weights.bin") == []  # a file lists as nothing

    one = mlflow.artifacts.download_artifacts(
        run_id=run_id, artifact_path="model/weights.bin", dst_path=str(tmp_path / "d1")
    )
    assert Path(one).read_bytes() == blob
    everything = Path(client.download_artifacts(run_id, "", dst_path=str(tmp_path / "d2")))
    assert (everything / "notes.txt").read_text(encoding="utf-8") == "héllo"
    assert (everything / "tree" / "sub" / "b.txt").read_text() == "b"
    assert mlflow.artifacts.load_dict(f"runs:/{run_id}/config/params.json") == {"lr": 0.1, "layers": [1, 2]}
    assert mlflow.artifacts.load_text(f"{run.info.artifact_uri}/notes.txt") == "héllo"

    # the files are where Modelyard's own API reads them
    ours = my.Client(os.environ["MLFLOW_TRACKING_URI"])
    assert {f.path for f in ours.list_artifacts(run_id)} == {"config", "model", "notes.txt", "tree"}
    assert (ours.download_artifacts(run_id, "model/weights.bin", tmp_path / "d3")).read_bytes() == blob


def test_artifact_delete_and_bad_paths(server: LiveServer) -> None:
    client = MlflowClient()
    exp_id = client.create_experiment(_name("art-del"))
    run = client.create_run(exp_id)
    client.log_text(run.info.run_id, "x", "keep/a.txt")
    client.log_text(run.info.run_id, "y", "drop/b.txt")
    base = f"/api/2.0/mlflow-artifacts/artifacts/{exp_id}/{run.info.run_id}/artifacts"
    with httpx.Client(base_url=server.url) as http:
        assert http.delete(f"{base}/drop").status_code == 200
        assert [f.path for f in client.list_artifacts(run.info.run_id)] == ["keep"]
        assert http.get(f"{base}/keep/a.txt").content == b"x"
        for bad in (f"{base}/%2E%2E/%2E%2E/escape.txt", f"{base}/..%2F..%2Fescape.txt"):
            response = http.put(bad, content=b"nope")
            assert response.status_code == 400 and response.json()["error_code"] == "INVALID_PARAMETER_VALUE"
        absolute = http.get("/api/2.0/mlflow-artifacts/artifacts", params={"path": "/etc/passwd"})
        assert absolute.status_code == 400 and "absolute" in absolute.json()["message"]
        missing = http.get(f"{base}/keep/none.txt")
        assert missing.status_code == 404 and missing.json()["error_code"] == "RESOURCE_DOES_NOT_EXIST"
        folder = http.get(f"{base}/keep")
        assert folder.status_code == 400
        other_exp = http.get(f"/api/2.0/mlflow-artifacts/artifacts/0/{run.info.run_id}/artifacts/keep/a.txt")
        assert other_exp.status_code == 404  # the run is not in experiment 0
        assert http.delete(f"/api/2.0/mlflow-artifacts/artifacts/{exp_id}").status_code == 400
        assert http.get("/api/3.0/mlflow/server-info").json()["multipart_uploads_enabled"] is False
    assert not (server.artifacts.parent / "escape.txt").exists()


# search ----------------------------------------------------------------------------------------------------
def test_search_runs_filter_order_and_pages() -> None:
    exp_name = _name("search")
    mlflow.set_experiment(exp_name)
    for kind, score, name in [("a", 0.3, "r1"), ("a", 0.9, "r2"), ("b", 0.5, "r3"), ("a", 0.6, "r4")]:
        with mlflow.start_run(run_name=name):
            mlflow.log_param("kind", kind)
            mlflow.log_metric("score", score)
    df = mlflow.search_runs(
        experiment_names=[exp_name], filter_string="params.kind = 'a'", order_by=["metrics.score DESC"]
    )
    assert list(df["tags.mlflow.runName"]) == ["r2", "r4", "r1"]
    assert list(df["metrics.score"]) == [0.9, 0.6, 0.3] and set(df["status"]) == {"FINISHED"}
    by_name = mlflow.search_runs(
        experiment_names=[exp_name], filter_string="tags.mlflow.runName = 'r3'", output_format="list"
    )
    assert [r.data.params["kind"] for r in by_name] == ["b"]
    attr = mlflow.search_runs(
        experiment_names=[exp_name], filter_string="attributes.run_name LIKE 'r%' AND metrics.score > 0.55",
        order_by=["start_time ASC"], output_format="list",
    )  # fmt: skip
    assert [r.info.run_name for r in attr] == ["r2", "r4"]
    client = MlflowClient()
    exp = client.get_experiment_by_name(exp_name)
    assert exp is not None
    exp_id = exp.experiment_id
    first = client.search_runs([exp_id], order_by=["metrics.score ASC"], max_results=3)
    assert [r.info.run_name for r in first] == ["r1", "r3", "r4"] and first.token
    second = client.search_runs(
        [exp_id], order_by=["metrics.score ASC"], max_results=3, page_token=first.token
    )
    assert [r.info.run_name for r in second] == ["r2"] and not second.token
    with pytest.raises(MlflowException) as bad:
        client.search_runs([exp_id], filter_string="metrics.score >")
    assert _error_code(bad) == "INVALID_PARAMETER_VALUE"


def test_experiments_search_rename_tag_delete_restore() -> None:
    client = MlflowClient()
    prefix = _name("exps")
    ids = [client.create_experiment(f"{prefix}-{i}", tags={"n": str(i)}) for i in range(3)]
    assert mlflow.get_experiment_by_name(f"{prefix}-none") is None
    found = mlflow.search_experiments(filter_string=f"name LIKE '{prefix}-%'", order_by=["name DESC"])
    assert [e.experiment_id for e in found] == ids[::-1]
    tagged = client.search_experiments(filter_string=f"name LIKE '{prefix}%' AND tags.n = '1'")
    assert [e.name for e in tagged] == [f"{prefix}-1"]
    page = client.search_experiments(
        filter_string=f"name LIKE '{prefix}%'", max_results=2, order_by=["experiment_id"]
    )
    assert [e.experiment_id for e in page] == ids[:2] and page.token
    rest = client.search_experiments(
        filter_string=f"name LIKE '{prefix}%'",
        max_results=2,
        order_by=["experiment_id"],
        page_token=page.token,
    )
    assert [e.experiment_id for e in rest] == ids[2:] and not rest.token

    client.rename_experiment(ids[0], f"{prefix}-renamed")
    client.set_experiment_tag(ids[0], "owner", "ana")
    exp = client.get_experiment(ids[0])
    assert exp.name == f"{prefix}-renamed" and exp.tags == {"n": "0", "owner": "ana"}
    client.delete_experiment_tag(ids[0], "owner")
    assert client.get_experiment(ids[0]).tags == {"n": "0"}
    assert my.Client(os.environ["MLFLOW_TRACKING_URI"]).get_experiment(ids[0]).tags == {
        "n": "0"
    }  # the same store through Modelyard's API
    client.delete_experiment(ids[1])
    assert client.get_experiment(ids[1]).lifecycle_stage == "deleted"
    deleted = client.search_experiments(
        view_type=MlflowViewType.DELETED_ONLY, filter_string=f"name LIKE '{prefix}%'"
    )
    assert [e.experiment_id for e in deleted] == [ids[1]]
    client.restore_experiment(ids[1])
    assert client.get_experiment(ids[1]).lifecycle_stage == "active"
    with pytest.raises(MlflowException) as dup:
        client.create_experiment(f"{prefix}-2")
    assert _error_code(dup) == "RESOURCE_ALREADY_EXISTS"


# run lifecycle ---------------------------------------------------------------------------------------------
def test_set_terminated_delete_restore() -> None:
    client = MlflowClient()
    exp_id = client.create_experiment(_name("lifecycle"))
    run_id = client.create_run(exp_id, run_name="short").info.run_id
    client.set_terminated(run_id, status="KILLED", end_time=1_700_000_000_000)
    info = client.get_run(run_id).info
    assert info.status == "KILLED" and info.end_time == 1_700_000_000_000
    assert MlflowRunStatus.is_terminated(MlflowRunStatus.from_string(info.status))
    client.delete_run(run_id)
    assert client.get_run(run_id).info.lifecycle_stage == "deleted"
    assert client.search_runs([exp_id]) == []
    assert [
        r.info.run_id for r in client.search_runs([exp_id], run_view_type=MlflowViewType.DELETED_ONLY)
    ] == [run_id]
    with pytest.raises(MlflowException) as deleted:
        client.log_param(run_id, "x", "1")
    assert _error_code(deleted) == "INVALID_STATE"
    client.restore_run(run_id)
    assert [r.info.run_id for r in client.search_runs([exp_id])] == [run_id]


def test_run_name_and_description_stay_one_value() -> None:
    client = MlflowClient()
    ours = my.Client(os.environ["MLFLOW_TRACKING_URI"])
    run_id = client.create_run(client.create_experiment(_name("names")), run_name="before").info.run_id
    client.update_run(run_id, name="renamed")
    assert ours.get_run(run_id).info.run_name == "renamed"
    client.set_tag(run_id, "mlflow.runName", "by-tag")
    client.set_tag(run_id, "mlflow.note.content", "what this run tries")
    got = ours.get_run(run_id)
    assert got.info.run_name == "by-tag" and got.info.description == "what this run tries"
    assert "mlflow.runName" not in got.data.tags and "mlflow.note.content" not in got.data.tags
    ours.update_run(run_id, name="from-modelyard")
    tags = client.get_run(run_id).data.tags
    assert tags["mlflow.runName"] == "from-modelyard" and tags["mlflow.note.content"] == "what this run tries"
    client.delete_tag(run_id, "mlflow.note.content")
    assert "mlflow.note.content" not in client.get_run(run_id).data.tags
    client.delete_tag(run_id, "mlflow.runName")  # a run keeps its name
    assert client.get_run(run_id).info.run_name == "from-modelyard"


def test_nested_runs_record_their_parent() -> None:
    mlflow.set_experiment(_name("nested"))
    with mlflow.start_run() as parent, mlflow.start_run(nested=True) as child:
        pass
    ours = my.Client(os.environ["MLFLOW_TRACKING_URI"]).get_run(child.info.run_id)
    assert ours.info.parent_run_id == parent.info.run_id
    assert MlflowClient().get_run(child.info.run_id).data.tags["mlflow.parentRunId"] == parent.info.run_id


@pytest.mark.filterwarnings(
    "ignore:Hint. Inferred schema contains integer", "ignore:Starting with pandas version 4"
)
def test_log_inputs_from_pandas() -> None:
    pd = pytest.importorskip("pandas")
    frame = pd.DataFrame({"a": [1, 2, 3], "b": [0.1, 0.2, 0.3]})
    dataset = mlflow.data.from_pandas(frame, name="train-table")  # works with mlflow-skinny + pandas
    mlflow.set_experiment(_name("inputs"))
    with mlflow.start_run() as run:
        mlflow.log_input(dataset, context="training")
    inputs = MlflowClient().get_run(run.info.run_id).inputs
    assert inputs is not None and len(inputs.dataset_inputs) == 1
    got = inputs.dataset_inputs
    entity = dataset._to_mlflow_entity()
    assert (got[0].dataset.name, got[0].dataset.digest) == ("train-table", entity.digest)
    assert got[0].dataset.schema == entity.schema and got[0].dataset.source == entity.source
    assert [(t.key, t.value) for t in got[0].tags] == [("mlflow.data.context", "training")]
    ours = my.Client(os.environ["MLFLOW_TRACKING_URI"]).get_run(run.info.run_id).inputs
    assert ours[0].context == "training" and ours[0].dataset.num_rows == 3
    assert ours[0].dataset.schema_ == {"a": "long", "b": "double"}
    found = mlflow.search_runs(
        experiment_ids=[run.info.experiment_id],
        filter_string="datasets.context = 'training'",
        output_format="list",
    )
    assert [r.info.run_id for r in found] == [run.info.run_id]


# both APIs -------------------------------------------------------------------------------------------------
def test_mlflow_run_reads_through_modelyard() -> None:
    exp_name = _name("to-modelyard")
    mlflow.set_experiment(exp_name)
    with mlflow.start_run(run_name="from-mlflow") as run:
        mlflow.log_params({"lr": 0.01, "depth": 4})
        for step in range(3):
            mlflow.log_metric("loss", 1.0 - step / 10, step=step)
        mlflow.set_tag("team", "nlp")
    client = my.Client(os.environ["MLFLOW_TRACKING_URI"])
    got = client.get_run(run.info.run_id)
    assert got.info.run_name == "from-mlflow" and got.info.status == my.RunStatus.FINISHED
    assert got.data.params == {"lr": "0.01", "depth": "4"} and got.data.metrics == {"loss": 0.8}
    assert got.data.tags["team"] == "nlp" and got.data.tags["modelyard.user"] == run.info.user_id
    assert client.get_metric_history(run.info.run_id, "loss").steps == [0, 1, 2]
    for query in ("params.depth = '4'", f"attributes.user = '{run.info.user_id}'"):
        found = client.search_runs(exp_name, query)
        assert isinstance(found, list) and [r.run_id for r in found] == [run.info.run_id], query


def test_modelyard_run_reads_through_mlflow(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_TRACKING_URI", os.environ["MLFLOW_TRACKING_URI"])
    exp_name = _name("to-mlflow")
    with my.start_run(
        experiment=exp_name, name="from-modelyard", params={"lr": 0.1}, description="baseline"
    ) as run:
        for step in range(4):
            my.log_metric("acc", step / 4, step=step)
        my.set_tag("team", "cv")
        my.log_text("written by modelyard", "notes/readme.txt")
    client = MlflowClient()
    got = client.get_run(run.run_id)
    assert got.info.run_name == "from-modelyard" and got.info.status == "FINISHED"
    assert got.data.params == {"lr": "0.1"} and got.data.metrics == {"acc": 0.75}
    assert (
        got.data.tags["mlflow.runName"] == "from-modelyard"
        and got.data.tags["mlflow.note.content"] == "baseline"
    )
    assert got.data.tags["team"] == "cv" and got.info.user_id == got.data.tags["modelyard.user"]
    assert [m.step for m in client.get_metric_history(run.run_id, "acc")] == [0, 1, 2, 3]
    path = client.download_artifacts(run.run_id, "notes/readme.txt", str(tmp_path))
    assert Path(path).read_text() == "written by modelyard"
    df = mlflow.search_runs(
        experiment_names=[exp_name], filter_string="tags.team = 'cv' AND params.lr = '0.1'"
    )
    assert list(df["run_id"]) == [run.run_id]
    assert [
        r.info.run_id
        for r in client.search_runs([got.info.experiment_id], f"attributes.user_id = '{got.info.user_id}'")
    ] == [run.run_id]


# errors ----------------------------------------------------------------------------------------------------
def test_client_errors_carry_mlflow_codes() -> None:
    client = MlflowClient()
    cases = [
        (lambda: client.get_run("f" * 32), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: client.get_run("not a run id"), "INVALID_PARAMETER_VALUE"),
        (lambda: client.get_experiment("abc"), "INVALID_PARAMETER_VALUE"),
        (lambda: client.get_experiment("987654"), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: client.create_run("987654"), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: client.log_metric("f" * 32, "m", 1.0), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: client.set_tag("f" * 32, "bad key\n", "v"), "INVALID_PARAMETER_VALUE"),
        (lambda: client.delete_experiment_tag("0", "never-set"), "RESOURCE_DOES_NOT_EXIST"),
        (lambda: client.search_runs(["0"], " OR ".join(f"metrics.m = {i}" for i in range(1100))),
         "INVALID_PARAMETER_VALUE"),  # over 500 conditions: the client's mistake, not retried as an outage
    ]  # fmt: skip
    for call, code in cases:
        with pytest.raises(MlflowException) as exc:
            call()
        assert _error_code(exc) == code, exc.value
    run_id = client.create_run("0").info.run_id
    client.log_param(run_id, "p", "1")
    with pytest.raises(MlflowException) as changed:
        client.log_param(run_id, "p", "2")
    assert _error_code(changed) == "INVALID_PARAMETER_VALUE"
    assert "Changing param values is not allowed" in str(
        changed.value
    )  # MLflow's words: the client adds a hint
    with pytest.raises(MlflowException) as missing_tag:
        client.delete_tag(run_id, "never-set")
    assert _error_code(missing_tag) == "RESOURCE_DOES_NOT_EXIST"


BAD_BODIES: list[bytes] = [  # the first three are not JSON objects
    b"{not json",
    b"[1, 2]",
    b'"a string"',
    b'{"run_id": 5, "experiment_id": {"x": 1}}',
    b'{"run_id": "' + b"f" * 32 + b'", "key": 3, "value": "abc", "timestamp": "soon", "step": 1.5}',
    b'{"run_id": "' + b"f" * 32 + b'", "metrics": "nope", "params": [1], "tags": [{"key": null}]}',
    b'{"experiment_ids": "0", "max_results": -1, "order_by": [1], "run_view_type": "SOME"}',
    b'{"name": ["x"], "tags": [{"value": 1}], "datasets": [{"dataset": 4}]}',
    b'{"experiment_id": "0", "start_time": "yesterday", "tags": {"k": "v"}}',
    b'{"name": "\\ud800"}',
    b'{"experiment_id": "99999999999999999999", "experiment_ids": ["1e3"], "start_time": 99999999999999999999}',
    b'{"run_id": "' + b"f" * 32 + b'", "key": "k", "value": 1' + b"0" * 400 + b', "timestamp": 1}',
    b'{"name": "a\\u0000b", "experiment_id": "0", "key": "k", "value": "\\u0000", "tags": [{"key": "k\\u0000"}]}',
]
POST_ENDPOINTS = [
    "experiments/create", "experiments/search", "experiments/update", "experiments/delete", "experiments/restore",
    "experiments/set-experiment-tag", "runs/create", "runs/update", "runs/delete", "runs/restore", "runs/search",
    "runs/log-metric", "runs/log-parameter", "runs/set-tag", "runs/delete-tag", "runs/log-batch",
    "runs/log-inputs", "logged-models/search",
]  # fmt: skip
GET_QUERIES = [
    ("experiments/get", {}),
    ("experiments/get", {"experiment_id": "1.5"}),
    ("experiments/get-by-name", {}),
    ("runs/get", {"run_id": "../../etc"}),
    ("metrics/get-history", {"run_id": "f" * 32}),
    ("metrics/get-history", {"run_id": "f" * 32, "metric_key": "m", "max_results": "x"}),
    ("metrics/get-history", {"run_id": "f" * 32, "metric_key": "m", "page_token": "!!"}),
    ("experiments/get", {"experiment_id": "9" * 30}),
    ("experiments/get", {"experiment_id": "²"}),
    ("experiments/get-by-name", {"experiment_name": "a\0b"}),
]


def test_malformed_requests_are_4xx_never_500(server: LiveServer) -> None:
    with httpx.Client(base_url=server.url, timeout=30) as http:
        for endpoint in POST_ENDPOINTS:
            for i, body in enumerate(BAD_BODIES):
                response = http.post(
                    f"{API}/{endpoint}", content=body, headers={"content-type": "application/json"}
                )
                # Fields an endpoint does not read are ignored (as MLflow's server does), so a body may be fine
                # for one endpoint; what is not JSON object is a 400 everywhere, and nothing is ever a 500.
                assert response.status_code < 500, (endpoint, body, response.text)
                if i < 3:
                    assert response.status_code == 400, (endpoint, body, response.text)
                if response.status_code != 200:
                    assert set(response.json()) == {"error_code", "message"}, (endpoint, body)
        for endpoint, query in GET_QUERIES:
            response = http.get(f"{API}/{endpoint}", params=query)
            assert 400 <= response.status_code < 500, (endpoint, query, response.text)
            assert response.json()["error_code"] in ("INVALID_PARAMETER_VALUE", "RESOURCE_DOES_NOT_EXIST")
        bad_json = http.post(f"{API}/runs/create", content=b"{not json")
        assert bad_json.status_code == 400 and "not valid JSON" in bad_json.json()["message"]
        unknown = http.post(f"{API}/traces", json={"name": "m"})
        assert unknown.status_code == 404 and unknown.json()["error_code"] == "ENDPOINT_NOT_FOUND"
        alias = http.get("/ajax-api/2.0/mlflow/experiments/get", params={"experiment_id": "0"})
        assert alias.status_code == 200 and alias.json()["experiment"]["name"] == "Default"
        spec = http.get("/api/v1/openapi.json").json()
        assert not [p for p in spec["paths"] if "mlflow" in p]  # MLflow's contract stays out of our spec


def test_mlflow_artifact_upload_is_not_capped_by_the_json_body_limit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow clients send a whole artifact in one PUT; the server streams it to disk, whatever --max-body-mb."""
    small = LiveServer(
        f"sqlite:///{tmp_path / 'small.db'}", tmp_path / "small-artifacts", extra_args=("--max-body-mb", "1")
    ).start()
    try:
        monkeypatch.setenv("MLFLOW_TRACKING_URI", small.url)
        mlflow.set_experiment(_name("big-upload"))  # this server's own experiment, not the module server's
        blob = os.urandom(3 * 2**20)
        (tmp_path / "big.bin").write_bytes(blob)
        with mlflow.start_run() as run:
            mlflow.log_artifact(str(tmp_path / "big.bin"))
        got = mlflow.artifacts.download_artifacts(
            run_id=run.info.run_id, artifact_path="big.bin", dst_path=str(tmp_path / "dl")
        )
        assert Path(got).read_bytes() == blob
        with httpx.Client(base_url=small.url) as http:  # JSON bodies still are capped
            too_big = http.post(
                "/api/v1/experiments",
                content=b"x" * (2 * 2**20),
                headers={"content-type": "application/json"},
            )
            assert too_big.status_code == 413
    finally:
        small.stop()
