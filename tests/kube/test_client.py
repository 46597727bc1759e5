"""`modelyard.kube.apply` through the real `kubernetes` client against an in-process fake of the API server
(tests/kube/fake_api.py): create, update in place with a JSON merge patch, and the API's errors as
Modelyard errors. No cluster runs here."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("kubernetes", reason="pip install 'modelyard[kube]'")

from modelyard.errors import InvalidArgument, NotFound, Unauthenticated, Unavailable
from modelyard.kube import apply, connect
from tests.kube.fake_api import FakeKubeApi

ISVC = ("serving.kserve.io", "v1beta1", "inferenceservices")


@pytest.fixture
def kube(tmp_path) -> Iterator[tuple[FakeKubeApi, str]]:
    with FakeKubeApi(served={ISVC}) as api:
        yield api, str(api.write_kubeconfig(tmp_path / "kubeconfig", namespace="models"))


def manifest(**predictor: Any) -> dict[str, Any]:
    container = {"name": "kserve-container", "image": "modelyard:0.1"}
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": "iris", "labels": {"modelyard.io/model": "iris"}},
        "spec": {"predictor": {"containers": [container], **predictor}},
    }


def test_create_then_update_in_place(kube):
    api, kubeconfig = kube
    first = apply(manifest(canaryTrafficPercent=10, minReplicas=1), kubeconfig=kubeconfig)
    assert (first.action, first.namespace, first.name) == (
        "created",
        "models",
        "iris",
    )  # the context's namespace
    stored = api.get(*ISVC[:2], "models", ISVC[2], "iris")
    assert stored is not None and stored["spec"]["predictor"]["canaryTrafficPercent"] == 10
    assert api.requests[0].method == "POST" and api.requests[0].path.endswith(
        "/namespaces/models/inferenceservices"
    )
    stored["metadata"]["labels"]["team"] = "search"  # added by someone else

    second = apply(manifest(maxReplicas=3), kubeconfig=kubeconfig)
    assert second.action == "updated"
    assert [r.method for r in api.requests[1:]] == ["POST", "GET", "PATCH"]
    assert api.requests[-1].content_type == "application/merge-patch+json"
    stored = api.get(*ISVC[:2], "models", ISVC[2], "iris")
    assert stored is not None
    predictor = stored["spec"]["predictor"]
    # the spec is what the new manifest says: the canary and the old replica bound are gone
    assert predictor == {
        "containers": [{"name": "kserve-container", "image": "modelyard:0.1"}],
        "maxReplicas": 3,
    }
    # what the operator and others added is kept
    assert stored["metadata"]["finalizers"] == ["controller.example/cleanup"] and "status" in stored
    assert stored["metadata"]["labels"] == {"modelyard.io/model": "iris", "team": "search"}
    assert stored["metadata"]["generation"] == 2 and second.resource["metadata"]["uid"] == "uid-iris"


def test_namespace_and_context(kube):
    api, kubeconfig = kube
    assert apply(manifest(), kubeconfig=kubeconfig, namespace="prod").namespace == "prod"
    assert apply(manifest(), kubeconfig=kubeconfig, context="other").namespace == "other"
    in_manifest = manifest()
    in_manifest["metadata"]["namespace"] = "staging"
    assert apply(in_manifest, kubeconfig=kubeconfig).namespace == "staging"
    assert {key[2] for key in api.objects} == {"prod", "other", "staging"}
    with pytest.raises(NotFound, match="No context 'nope'"):
        apply(manifest(), kubeconfig=kubeconfig, context="nope")


def test_default_loader_reads_kubeconfig_env(kube, monkeypatch):
    _, kubeconfig = kube
    monkeypatch.setenv("KUBECONFIG", kubeconfig)
    cluster = connect()
    assert cluster.namespace == "models" and cluster.context == "fake"


def test_errors_from_the_api(kube, tmp_path):
    api, kubeconfig = kube
    api.reject = (422, "Invalid", 'admission webhook denied the request: "iris" is invalid')
    with pytest.raises(InvalidArgument, match="admission webhook denied"):
        apply(manifest(), kubeconfig=kubeconfig)
    wrong_token = api.write_kubeconfig(tmp_path / "wrong", token="nope")
    with pytest.raises(Unauthenticated, match="refused the credentials"):
        apply(manifest(), kubeconfig=str(wrong_token))
    api.served = set()  # KServe not installed
    with pytest.raises(NotFound, match=r"is the operator .* installed"):
        apply(manifest(), kubeconfig=kubeconfig)


def test_no_cluster(tmp_path, monkeypatch):
    with pytest.raises(InvalidArgument, match="Cannot use the kubeconfig"):
        apply(manifest(), kubeconfig=str(tmp_path / "missing"))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "missing"))
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    with pytest.raises(Unavailable, match="No Kubernetes cluster configured"):
        connect()


def test_api_server_down(tmp_path):
    with FakeKubeApi(served={ISVC}) as api:
        kubeconfig = str(api.write_kubeconfig(tmp_path / "kubeconfig"))
    with pytest.raises(Unavailable, match="Cannot reach the Kubernetes API"):
        apply(manifest(), kubeconfig=kubeconfig)
