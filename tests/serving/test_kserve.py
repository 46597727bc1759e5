"""`modelyard serve MODEL_URI --target kserve`: the InferenceService it builds (checked against the KServe CRD
schema of ../shared/crds and KServe's webhook rules), its CLI errors, and `--apply` through the kubernetes client
against an in-process fake API server (no cluster runs here)."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import click
import pytest
import yaml
from click.testing import CliRunner

pytest.importorskip("jsonschema", reason="pip install 'modelyard[kube]'")

from modelyard.cli.main import ModelyardGroup
from modelyard.cli.serve import serve
from modelyard.kube import validate
from modelyard.kube.validate import crds_dir
from modelyard.registry.client import RegistryClient
from modelyard.serving.kserve import KServeOptions, ModelSource, build, inference_service, resolve_model
from modelyard.tracking.client import Client

pytestmark = pytest.mark.skipif(
    crds_dir() is None, reason="no CRD folder (../shared/crds or MODELYARD_CRDS_DIR)"
)

IMAGE = "registry.example.com/modelyard:0.1"


def cli() -> click.Group:
    group = ModelyardGroup("modelyard")
    group.add_command(serve)
    return group


def run(*args: str) -> Any:
    return CliRunner().invoke(cli(), ["serve", *args])


def register_in_bucket(name: str, bucket: str = "s3://models-bucket/exp") -> str:
    """A model version whose files are in an object store (nothing is written there: only URIs are read)."""
    client = Client()
    experiment_id = client.create_experiment(
        f"kserve-{name}-{uuid.uuid4().hex[:8]}", artifact_location=bucket
    )
    run_id = client.create_run(experiment_id).info.run_id
    RegistryClient().register_model(f"runs:/{run_id}/model", name)
    return run_id


def predictor_of(manifest: dict[str, Any]) -> dict[str, Any]:
    return manifest["spec"]["predictor"]


def test_dry_run_maps_every_option():
    run_id = register_in_bucket("iris")
    RegistryClient().set_alias("iris", "champion", 1)
    result = run(
        "models:/iris@champion", "--target", "kserve", "--dry-run", "--image", IMAGE,
        "--autoscale", "1:4", "--scale-metric", "concurrency", "--scale-target", "4", "--canary-percent", "10",
        "--max-batch-size", "16", "--max-batch-delay-ms", "2.5", "--timeout-ms", "200", "--trusted",
        "--max-request-mb", "8", "--cpu", "2", "--memory", "4Gi", "--gpu", "1", "--env", "LOG_LEVEL=debug",
        "--label", "team=search", "--annotation", "owner=ml@example.com", "--service-account", "s3-reader",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    manifest = yaml.safe_load(result.stdout)
    validate(manifest)
    assert manifest["apiVersion"] == "serving.kserve.io/v1beta1" and manifest["kind"] == "InferenceService"
    meta = manifest["metadata"]
    assert meta["name"] == "iris" and "namespace" not in meta
    assert meta["labels"] == {
        "app.kubernetes.io/managed-by": "modelyard",
        "modelyard.io/model": "iris",
        "modelyard.io/model-version": "1",
        "team": "search",
    }
    location = f"s3://models-bucket/exp/{run_id}/artifacts/model"
    assert meta["annotations"] == {
        "modelyard.io/model-name": "iris",
        "modelyard.io/model-uri": "models:/iris/1",  # the alias, pinned to the version it names now
        "modelyard.io/model-version": "1",
        "modelyard.io/model-location": location,
        "owner": "ml@example.com",
    }
    predictor = predictor_of(manifest)
    assert {k: predictor[k] for k in ("minReplicas", "maxReplicas", "scaleMetric", "scaleTarget")} == {
        "minReplicas": 1,
        "maxReplicas": 4,
        "scaleMetric": "concurrency",
        "scaleTarget": 4,
    }
    assert predictor["canaryTrafficPercent"] == 10
    assert predictor["batcher"] == {"maxBatchSize": 16, "maxLatency": 3}  # whole milliseconds, rounded up
    assert predictor["serviceAccountName"] == "s3-reader"
    (container,) = predictor["containers"]
    assert container["name"] == "kserve-container" and container["image"] == IMAGE
    assert container["command"] == ["modelyard"]
    assert container["args"] == [
        "serve", "/mnt/models", "--name", "iris", "--host", "0.0.0.0", "--port", "8080",
        "--max-batch-size", "16", "--max-batch-delay-ms", "2.5", "--max-request-mb", "8", "--timeout-ms",
        "200", "--trusted",
    ]  # fmt: skip
    assert container["env"] == [
        {"name": "STORAGE_URI", "value": location},  # KServe's storage initializer fetches it to /mnt/models
        {"name": "LOG_LEVEL", "value": "debug"},
    ]
    assert container["ports"] == [{"containerPort": 8080, "protocol": "TCP"}]
    assert container["resources"] == {
        "requests": {"cpu": "2", "memory": "4Gi"},
        "limits": {"cpu": "2", "memory": "4Gi", "nvidia.com/gpu": "1"},
    }
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8080}


def test_replicas_runs_uri_output_file_and_name(tmp_path):
    run_id = register_in_bucket("iris", bucket="gs://bucket/exp")
    out = tmp_path / "isvc.yaml"
    result = run(
        f"runs:/{run_id}/model", "--target", "kserve", "--dry-run", "--image", IMAGE, "--replicas", "3",
        "--name", "iris-prod", "--namespace", "models", "-o", str(out), "--max-batch-size", "1", "--port", "9000",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.stdout == "" and "Wrote InferenceService iris-prod" in result.output
    manifest = yaml.safe_load(out.read_text())
    predictor = predictor_of(manifest)
    assert manifest["metadata"]["namespace"] == "models"
    assert (predictor["minReplicas"], predictor["maxReplicas"]) == (3, 3)
    assert "batcher" not in predictor and "canaryTrafficPercent" not in predictor  # batching off: no batcher
    container = predictor["containers"][0]
    assert container["env"][0] == {
        "name": "STORAGE_URI",
        "value": f"gs://bucket/exp/{run_id}/artifacts/model",
    }
    assert container["args"][:4] == ["serve", "/mnt/models", "--name", "iris-prod"]
    assert "9000" in container["args"] and container["ports"][0]["containerPort"] == 9000


def test_a_laptop_dry_run_prints_the_manifest_and_what_a_cluster_needs(iris):
    """The README's `--dry-run` on the default local store: the manifest, and a warning (not an error) that a
    pod cannot load the model from this store; `--apply` refuses it."""
    import modelyard as my
    from modelyard.models import log_model

    with my.start_run(capture=False):
        uri = log_model(iris.model, "model", registered_model_name="flowers").model_uri
    for target in (uri, "models:/flowers/1"):
        result = run(target, "--target", "kserve", "--dry-run", "--image", IMAGE)
        assert result.exit_code == 0, result.output
        manifest = yaml.safe_load(result.stdout)
        validate(manifest)
        assert predictor_of(manifest)["containers"][0]["args"][1] == target
        (warning,) = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
        assert "A pod cannot load" in warning and "s3:// or gs://" in warning and "--apply refuses" in warning
        applied = run(target, "--target", "kserve", "--apply", "--image", IMAGE)
        assert applied.exit_code == 1 and "Traceback" not in applied.output
        assert "Error: A pod cannot load" in applied.output and "s3:// or gs://" in applied.output


def test_a_loopback_tracking_uri_in_the_pod_gets_a_warning():
    for option in (
        ["--tracking-uri", "http://127.0.0.1:5000"],
        ["--env", "MODELYARD_TRACKING_URI=http://localhost:5000"],
    ):
        result = run("/models/scorer", "--target", "kserve", "--dry-run", "--image", IMAGE, *option)
        assert result.exit_code == 0, result.output
        env = predictor_of(yaml.safe_load(result.stdout))["containers"][0]["env"]
        assert env[0]["name"] == "MODELYARD_TRACKING_URI" and "5000" in env[0]["value"]
        (warning,) = [line for line in result.stderr.splitlines() if line.startswith("Warning: ")]
        assert "in a pod that address is the pod itself" in warning, result.stderr
    remote = run("/models/scorer", "--target", "kserve", "--dry-run", "--image", IMAGE,
                 "--tracking-uri", "http://modelyard.ml:5000")  # fmt: skip
    assert remote.exit_code == 0 and "Warning" not in remote.stderr


def test_a_folder_is_loaded_from_the_image(tmp_path):
    result = run("/models/scorer", "--target", "kserve", "--dry-run", "--image", IMAGE)
    assert result.exit_code == 0, result.output
    assert "the image must contain it" in result.stderr
    container = predictor_of(yaml.safe_load(result.stdout))["containers"][0]
    assert container["args"][:4] == ["serve", "/models/scorer", "--name", "scorer"] and "env" not in container


def test_loading_through_a_tracking_server():
    source = ModelSource("iris", "2", "models:/iris/2", "file:///srv/artifacts/1/abc/artifacts/model")
    options = KServeOptions(image=IMAGE, tracking_uri="https://tracking.example.com", env={"A": "1"})
    manifest = inference_service(source, options)
    validate(manifest)
    container = predictor_of(manifest)["containers"][0]
    assert container["args"][1] == "models:/iris/2"
    assert container["env"] == [
        {"name": "MODELYARD_TRACKING_URI", "value": "https://tracking.example.com"},
        {"name": "A", "value": "1"},
    ]


def test_resolve_model_names():
    assert resolve_model("s3://bucket/path/scorer") == ModelSource(
        "scorer", None, "s3://bucket/path/scorer", "s3://bucket/path/scorer"
    )
    assert resolve_model("./my-model").location is None
    assert resolve_model("s3://bucket/path/scorer").storage_uri == "s3://bucket/path/scorer"
    assert resolve_model("https://host/model").storage_uri is None


def test_names_that_are_not_dns1035_labels():
    register_in_bucket("Iris_Classifier")
    result = run("models:/Iris_Classifier/1", "--target", "kserve", "--dry-run", "--image", IMAGE)
    assert result.exit_code == 1 and "Pass --name iris-classifier" in result.output
    result = run(
        "models:/Iris_Classifier/1", "--target", "kserve", "--dry-run", "--image", IMAGE, "--name", "ic"
    )
    assert result.exit_code == 0, result.output
    labels = yaml.safe_load(result.stdout)["metadata"]["labels"]
    assert labels["modelyard.io/model"] == "Iris_Classifier"
    assert (
        yaml.safe_load(result.stdout)["metadata"]["annotations"]["modelyard.io/model-name"]
        == "Iris_Classifier"
    )
    # a name that is no label value goes to the annotations only
    source = ModelSource("a name/with slash", "1", "models:/a name/with slash/1", "s3://b/m")
    manifest = inference_service(source, KServeOptions(image=IMAGE, name="m"))
    assert "modelyard.io/model" not in manifest["metadata"]["labels"]
    validate(manifest)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--target", "kserve", "--dry-run"], "--target kserve needs --image"),
        (["--target", "kserve", "--image", IMAGE], "needs --dry-run"),
        (["--target", "kserve", "--image", IMAGE, "--dry-run", "--apply"], "one of them"),
        (["--target", "kserve", "--dry-run", "--image", IMAGE, "--autoscale", "4:1"], "MIN <= MAX"),
        (["--target", "kserve", "--dry-run", "--image", IMAGE, "--autoscale", "x"], "write MIN:MAX"),
        (
            ["--target", "kserve", "--dry-run", "--image", IMAGE, "--replicas", "2", "--autoscale", "1:3"],
            "not both",
        ),
        (
            ["--target", "kserve", "--dry-run", "--image", IMAGE, "--cpu", "2 cores"],
            "not a Kubernetes quantity",
        ),
        (
            ["--target", "kserve", "--dry-run", "--image", IMAGE, "--env", "NOVALUE"],
            "expected KEY=VALUE, got 'NOVALUE'",
        ),
        (["--target", "kserve", "--dry-run", "--image", IMAGE, "--canary-percent", "120"], "0<=x<=100"),
        (
            [
                "--target",
                "kserve",
                "--dry-run",
                "--image",
                IMAGE,
                "--scale-metric",
                "cpu",
                "--scale-target",
                "150",
            ],
            "utilization percentage",
        ),
        (["--image", IMAGE], "--image applies to --target kserve only"),
        (["--canary-percent", "10"], "--canary-percent needs --canary MODEL_URI (or --target kserve)"),
        (
            ["--target", "kserve", "--dry-run", "--image", IMAGE, "--canary", "models:/iris/1"],
            "--canary and --shadow serve here",
        ),
        (["--autoscale", "0:3"], "serving here needs MIN >= 1"),
        (["--scale-target", "4"], "--scale-target applies to --autoscale"),
        (["--replicas", "2", "--scale-down-delay", "5"], "--scale-down-delay applies to --autoscale"),
        (["--scale-window", "10"], "--scale-window applies to --autoscale"),
        (["--autoscale", "1:2", "--scale-window", "0"], "0 is not in the range x>0"),
        (
            ["--target", "kserve", "--dry-run", "--image", IMAGE, "--scale-up-delay", "5"],
            "--scale-up-delay applies to --target local only",
        ),
    ],
)
def test_errors_are_one_line(args, message):
    register_in_bucket("iris")
    result = run("models:/iris/1", *args)
    assert result.exit_code != 0
    assert message in " ".join(result.output.split()) and "Traceback" not in result.output


def test_help_shows_the_kserve_example():
    result = CliRunner().invoke(serve, ["--help"])
    assert result.exit_code == 0
    for text in (
        "--target kserve --dry-run",
        "--autoscale 1:4",
        "--canary-percent",
        "--kubeconfig",
        "[kserve]",
    ):
        assert text in result.output


def test_build_without_crd_files_still_checks_kserve_rules(monkeypatch, tmp_path):
    monkeypatch.setattr(
        "modelyard.serving.kserve.resolve_model", lambda uri, tracking: resolve_model("s3://b/m")
    )
    import sys

    # (the module through sys.modules: `modelyard.kube.validate` as an attribute is the function)
    monkeypatch.setattr(sys.modules["modelyard.kube.validate"], "crds_dir", lambda: None)
    manifest, notes = build("s3://b/m", KServeOptions(image=IMAGE))
    assert manifest["metadata"]["name"] == "m" and "CRD schema was not checked" in notes[-1]
    from modelyard.errors import InvalidArgument

    with pytest.raises(InvalidArgument, match="canaryTrafficPercent"):
        build("s3://b/m", KServeOptions(image=IMAGE, canary_percent=101))


def test_apply_creates_then_updates(tmp_path: Path):
    pytest.importorskip("kubernetes", reason="pip install 'modelyard[kube]'")
    from tests.kube.fake_api import FakeKubeApi

    register_in_bucket("iris")
    isvc = ("serving.kserve.io", "v1beta1", "inferenceservices")
    with FakeKubeApi(served={isvc}) as api:
        kubeconfig = str(api.write_kubeconfig(tmp_path / "kubeconfig"))
        base = [
            "models:/iris/1",
            "--target",
            "kserve",
            "--apply",
            "--image",
            IMAGE,
            "--kubeconfig",
            kubeconfig,
        ]
        result = run(*base, "--namespace", "models", "--canary-percent", "10")
        assert result.exit_code == 0, result.output
        assert "Created InferenceService iris in namespace models" in result.output, result.output

        stored = api.get(*isvc[:2], "models", isvc[2], "iris")
        assert stored is not None and predictor_of(stored)["canaryTrafficPercent"] == 10
        result = run(*base, "--namespace", "models", "--replicas", "2")  # promote: the canary percent goes
        assert result.exit_code == 0, result.output
        assert "Updated InferenceService iris in namespace models" in result.output
        stored = api.get(*isvc[:2], "models", isvc[2], "iris")
        assert stored is not None and "canaryTrafficPercent" not in predictor_of(stored)
        assert predictor_of(stored)["minReplicas"] == 2
        result = run(*base)  # the kubeconfig context has no namespace: "default"
        assert result.exit_code == 0 and "namespace default" in result.output
        # each InferenceService is recorded as a deployment (target kserve), its updates in its history
        from modelyard.registry.deployments import deployment_store_for

        store = deployment_store_for()
        records = {d.endpoint: d for d in store.list_deployments(name="iris")}
        assert records.keys() == {
            "http://iris.models.svc.cluster.local",
            "http://iris.default.svc.cluster.local",
        }
        record = records["http://iris.models.svc.cluster.local"]
        assert record.target.value == "kserve" and record.info["image"] == IMAGE
        assert [(t.model_name, t.version, t.percent) for t in record.traffic] == [("iris", 1, 100.0)]
        events = store.list_events(record.deployment_id)
        assert [e.kind.value for e in events] == ["started", "traffic_changed"]
        register_in_bucket("iris")  # version 2: a 20% canary of version 1
        canary = ["models:/iris/2", *base[1:], "--namespace", "models", "--canary-percent", "20"]
        assert run(*canary).exit_code == 0
        record = store.get_deployment(record.deployment_id)
        assert record.state.value == "ROLLING_OUT"
        assert [(t.version, t.percent, t.role.value) for t in record.traffic] == [
            (1, 80.0, "primary"), (2, 20.0, "canary"),
        ]  # fmt: skip
        api.served = set()
        result = run(*base)
        assert (
            result.exit_code == 1 and "is the operator" in result.output and "Traceback" not in result.output
        )
