"""Third-party flavors through the `modelyard.flavors` entry-point group; missing libraries; requirements."""

from __future__ import annotations

import json
import sys
from importlib.metadata import EntryPoint
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from modelyard.errors import InvalidArgument
from modelyard.models import Flavor, flavor_for, get_flavor, load_model, load_predictor, log_model, save_model
from modelyard.models import requirements as reqs
from modelyard.models.flavors import base
from modelyard.models.safety import Trust


class Lookup:
    """A "library" model: a lookup table the built-in flavors know nothing about."""

    def __init__(self, table: dict[str, float]) -> None:
        self.table = table


class LookupFlavor(Flavor):
    name = "lookup"
    packages = ("pyyaml",)
    priority = 10

    @classmethod
    def detect(cls, model: Any) -> bool:
        return isinstance(model, Lookup)

    def save(self, model: Any, path: Path, *, input_example: Any = None, **options: Any) -> dict[str, Any]:
        (path / "table.json").write_text(json.dumps(model.table))
        return {"files": ["table.json"]}

    def load(self, path: Path, config: dict[str, Any], trust: Trust, **options: Any) -> Any:
        return Lookup(json.loads((path / config["files"][0]).read_text()))

    def predict(self, model: Any, inputs: Any) -> Any:
        return np.array([model.table[str(k)] for k in np.asarray(inputs).ravel()])


@pytest.fixture
def lookup_plugin(monkeypatch):
    """Register LookupFlavor as an installed distribution would, through the entry-point group."""
    real = base.entry_points
    ep = EntryPoint(name="lookup", value=f"{__name__}:LookupFlavor", group=base.GROUP)

    def fake(*, group: str) -> Any:
        found = list(real(group=group))
        return [*found, ep] if group == base.GROUP else found

    monkeypatch.setattr(base, "entry_points", fake)


def test_third_party_flavor_round_trip(run, lookup_plugin):
    model = Lookup({"a": 1.0, "b": 2.0})
    assert flavor_for(model).name == "lookup"
    info = log_model(model, "model", input_example=np.array(["a", "b"]))
    assert info.flavors["lookup"]["loader"] == f"{__name__}:LookupFlavor"
    assert any(r.startswith("pyyaml==") or r.startswith("PyYAML==") for r in info.requirements)
    assert load_model(info.model_uri).table == {"a": 1.0, "b": 2.0}
    np.testing.assert_array_equal(load_predictor(info.model_uri).predict(np.array(["b", "a"])), [2.0, 1.0])


def test_model_of_an_uninstalled_flavor_names_it(tmp_path, monkeypatch, lookup_plugin):
    save_model(Lookup({"a": 1.0}), tmp_path / "m")
    monkeypatch.setattr(base, "entry_points", lambda *, group: [])
    with pytest.raises(
        InvalidArgument, match=r"not installed: lookup \(tests.models.test_plugins:LookupFlavor\)"
    ):
        load_model(tmp_path / "m")


def test_entry_points_declare_the_builtins():
    names = {ep.name for ep in base.entry_points(group=base.GROUP)}
    if not names:
        pytest.skip("modelyard is not installed with its entry points (pip install -e .)")
    assert {"sklearn", "pytorch", "onnx", "xgboost", "lightgbm", "python_function"} <= names
    assert get_flavor("sklearn").name == "sklearn"


def test_missing_library_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "onnx", None)  # import onnx now raises ImportError
    with pytest.raises(InvalidArgument, match=r"needs the 'onnx' package: pip install 'modelyard\[onnx\]'"):
        get_flavor("onnx").import_library("onnx")


def test_requirements_are_pinned_and_merged(tmp_path):
    assert reqs.pinned("numpy") == f"numpy=={np.__version__}"
    assert reqs.pinned("no-such-distribution-here") is None
    inferred = reqs.infer(["numpy", "NumPy", "no-such-distribution-here"])
    assert inferred == [f"numpy=={np.__version__}"]
    assert reqs.merge(inferred, ["numpy<3", "extra-pkg==1"]) == ["numpy<3", "extra-pkg==1"]
    file = tmp_path / "requirements.txt"
    file.write_text("# pinned by hand\nrequests>=2  # http\n\n")
    assert reqs.merge(inferred, file) == [f"numpy=={np.__version__}", "requests>=2"]
    with pytest.raises(InvalidArgument, match="not a pip requirement"):
        reqs.merge([], ["==1"])


def test_local_version_labels_are_dropped(monkeypatch):
    monkeypatch.setattr(reqs, "version", lambda name: "2.13.0+cpu")
    reqs.pinned.cache_clear()
    try:
        assert reqs.pinned("torch-like") == "torch-like==2.13.0"
    finally:
        reqs.pinned.cache_clear()


def test_log_model_requirements(run):
    sklearn = pytest.importorskip("sklearn")
    from sklearn.dummy import DummyClassifier

    model = DummyClassifier().fit([[0], [1]], [0, 1])
    info = log_model(model, "model", requirements=["my-features==0.3"])
    names = [reqs.requirement_name(r) for r in info.requirements]
    assert names[:2] == ["modelyard", "scikit-learn"]
    assert "numpy" in names and names[-1] == "my-features"
    assert f"scikit-learn=={sklearn.__version__}" in info.requirements
