"""`modelyard.kube.validate`: the CRD schemas of ../shared/crds (as JSON Schema, Kubernetes' extensions read as
the API server reads them), object-meta checks and KServe's webhook rules, with the failing path named."""

from __future__ import annotations

import copy
from typing import Any

import pytest

pytest.importorskip("jsonschema", reason="pip install 'modelyard[kube]'")

from modelyard.errors import InvalidArgument, NotFound
from modelyard.kube import validate
from modelyard.kube.validate import crds_dir, problems, to_json_schema

pytestmark = pytest.mark.skipif(
    crds_dir() is None, reason="no CRD folder (../shared/crds or MODELYARD_CRDS_DIR)"
)


def isvc(**predictor: Any) -> dict[str, Any]:
    container = {"name": "kserve-container", "image": "modelyard:0.1", "args": ["serve", "/mnt/models"]}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris", "labels": {"modelyard.io/model": "iris"}},
        "spec": {"predictor": {"containers": [container], **predictor}},
    }


def paths(manifest: dict[str, Any]) -> dict[str, str]:
    return dict(problems(manifest))


def test_a_valid_inference_service_passes():
    manifest = isvc(minReplicas=1, maxReplicas=3, scaleMetric="rps", scaleTarget=50, canaryTrafficPercent=10)
    manifest["spec"]["predictor"]["batcher"] = {"maxBatchSize": 32, "maxLatency": 5}
    manifest["spec"]["predictor"]["containers"][0]["resources"] = {"limits": {"cpu": "500m", "memory": 2**30}}
    manifest["status"] = {"anything": {"the": "operator writes"}}  # x-kubernetes-preserve-unknown-fields
    validate(manifest)
    # the framework form (predictor.model with storageUri) is one implementation too
    framework = isvc()
    framework["spec"]["predictor"] = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://b/m"}}
    validate(framework)


def test_schema_errors_name_the_path():
    manifest = isvc(minReplicas="two", scaleMetric="gpu", replicas=3)
    container = manifest["spec"]["predictor"]["containers"][0]
    container["resources"] = {"limits": {"cpu": "2 cores"}}
    container["env"] = [
        {"name": "A", "value": "1"},
        {"name": "A", "value": "2"},
    ]  # list-type map keyed by name
    container["ports"] = [{"containerPort": 2**31}]  # format int32
    found = paths(manifest)
    assert "not of type 'integer'" in found["spec.predictor.minReplicas"]
    assert "'gpu' is not one of" in found["spec.predictor.scaleMetric"]
    assert "'replicas' was unexpected" in found["spec.predictor"]  # would be pruned silently by the server
    assert "not a Kubernetes quantity" in found["spec.predictor.containers[0].resources.limits.cpu"]
    assert "duplicate key name" in found["spec.predictor.containers[0].env"]
    assert "does not fit in int32" in found["spec.predictor.containers[0].ports[0].containerPort"]
    with pytest.raises(InvalidArgument, match=r"InferenceService 'iris' is not valid: .*spec\.predictor"):
        validate(manifest)


def test_ports_are_a_map_keyed_by_port_and_protocol_with_its_default():
    manifest = isvc()
    manifest["spec"]["predictor"]["containers"][0]["ports"] = [
        {"containerPort": 8080},
        {"containerPort": 8080, "protocol": "UDP"},
    ]
    validate(manifest)
    manifest["spec"]["predictor"]["containers"][0]["ports"][1]["protocol"] = "TCP"  # TCP is the default
    assert "duplicate key" in paths(manifest)["spec.predictor.containers[0].ports"]


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("Iris", "DNS-1035"),
        ("1iris", "DNS-1035"),
        ("iris-", "DNS-1035"),
        ("iris.v2", "DNS-1035"),  # a DNS subdomain, but not a label
        ("a" * 64, "longer than 63"),
    ],
)
def test_inference_service_names_are_dns1035_labels(name, reason):
    manifest = isvc()
    manifest["metadata"]["name"] = name
    assert reason in paths(manifest)["metadata.name"]


def test_webhook_rules():
    assert "exactly one implementation is required" in paths(isvc(containers=[]))["spec.predictor"]
    two = isvc()
    two["spec"]["predictor"] = {
        "sklearn": {"storageUri": "s3://b/m"},
        "model": {"modelFormat": {"name": "x"}},
    }
    assert "found model, sklearn" in paths(two)["spec.predictor"]
    assert "not a percentage" in paths(isvc(canaryTrafficPercent=101))["spec.predictor.canaryTrafficPercent"]
    assert "more than maxReplicas" in paths(isvc(minReplicas=5, maxReplicas=2))["spec.predictor.minReplicas"]
    validate(isvc(minReplicas=5, maxReplicas=0))  # maxReplicas 0: KServe's default, no upper bound
    assert "negative" in paths(isvc(minReplicas=-1))["spec.predictor.minReplicas"]
    assert "utilization" in paths(isvc(scaleMetric="cpu", scaleTarget=150))["spec.predictor.scaleTarget"]
    validate(isvc(scaleMetric="concurrency", scaleTarget=150))
    batcher = isvc(batcher={"maxBatchSize": 0})
    assert "at least 1" in paths(batcher)["spec.predictor.batcher.maxBatchSize"]
    # the rules hold without the schema too
    with pytest.raises(InvalidArgument, match="canaryTrafficPercent"):
        validate(isvc(canaryTrafficPercent=-1), schema=False)


def test_metadata_checks():
    manifest = isvc()
    manifest["metadata"]["labels"] = {"modelyard.io/model": "a name with spaces", "bad key!": "x"}
    manifest["metadata"]["annotations"] = {"modelyard.io/version": 3}
    manifest["metadata"]["namespace"] = "Models"
    found = paths(manifest)
    assert "not a label value" in found["metadata.labels['modelyard.io/model']"]
    assert "not a qualified name" in found["metadata.labels['bad key!']"]
    assert "not a string" in found["metadata.annotations['modelyard.io/version']"]
    assert "DNS-1123" in found["metadata.namespace"]
    del manifest["metadata"]
    assert "required" in paths(manifest)["metadata"]


def test_many_problems_are_summarized():
    manifest = isvc(**{f"unknown{i}": i for i in range(3)}, minReplicas="x", maxReplicas="y", scaleTarget="z")
    manifest["metadata"]["name"] = "Bad_Name"
    with pytest.raises(InvalidArgument, match=r"\(and \d+ more\)"):
        validate(manifest)


def test_other_crds_validate_too():
    """The same `validate` serves PyTorchJob and TrainJob manifests."""
    template = {"spec": {"containers": [{"name": "pytorch", "image": "trainer:1"}]}}
    job: dict[str, Any] = {
        "apiVersion": "kubeflow.org/v1",
        "kind": "PyTorchJob",
        "metadata": {"name": "mnist"},
        "spec": {"pytorchReplicaSpecs": {"Master": {"replicas": 1, "template": template}}},
    }
    validate(job)
    broken = copy.deepcopy(job)
    broken["spec"]["pytorchReplicaSpecs"]["Master"]["replicas"] = "one"
    with pytest.raises(InvalidArgument, match=r"spec\.pytorchReplicaSpecs\.Master\.replicas"):
        validate(broken)
    train = {
        "apiVersion": "trainer.kubeflow.org/v1alpha1",
        "kind": "TrainJob",
        "metadata": {"name": "mnist"},
        "spec": {"runtimeRef": {"name": "torch-distributed"}, "trainer": {"numNodes": 2}},
    }
    validate(train)


def test_a_kind_without_a_crd(tmp_path, monkeypatch):
    with pytest.raises(NotFound, match=r"No CRD for Widget"):
        validate({"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w"}})
    monkeypatch.setenv("MODELYARD_CRDS_DIR", str(tmp_path / "missing"))
    with pytest.raises(NotFound, match="MODELYARD_CRDS_DIR"):
        validate(isvc())


def test_extensions_in_a_small_schema():
    import jsonschema

    schema = to_json_schema(
        {
            "type": "object",
            "properties": {
                "port": {
                    "x-kubernetes-int-or-string": True,
                    "anyOf": [{"type": "integer"}, {"type": "string"}],
                },
                "note": {"type": "string", "nullable": True},
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "pod": {"type": "object", "x-kubernetes-embedded-resource": True, "properties": {}},
                "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
            },
        },
        root=True,
    )
    from modelyard.kube.validate import _validator_class

    validator = _validator_class()(schema)
    good = {
        "port": "http",
        "note": None,
        "free": {"x": 1},
        "pod": {"apiVersion": "v1", "kind": "Pod"},
        "tags": ["a"],
    }
    assert not list(validator.iter_errors(good))
    bad = {"port": 1.5, "other": 1, "tags": ["a", "a"]}
    messages = sorted(error.message for error in validator.iter_errors(bad))
    assert any("duplicate item" in m for m in messages) and any(
        "'other' was unexpected" in m for m in messages
    )
    assert isinstance(jsonschema.__name__, str)
