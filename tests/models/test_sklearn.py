"""scikit-learn flavor: log, load and predict through every URI form and serialization."""

from __future__ import annotations

import re
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml

import modelyard as my
from modelyard.errors import AlreadyExists, InvalidArgument, InvalidState
from modelyard.models import (
    ModelInfo,
    UnsafeModelWarning,
    load_input_example,
    load_model,
    load_predictor,
    log_model,
    safety,
    save_model,
)

sklearn = pytest.importorskip(
    "sklearn", reason="scikit-learn is not installed (pip install 'modelyard[sklearn]')"
)
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.pipeline import make_pipeline  # noqa: E402
from sklearn.preprocessing import FunctionTransformer, StandardScaler  # noqa: E402


@pytest.fixture
def clf(table):
    X, y = table
    return make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)


def test_log_model_writes_model_folder_and_info(run, clf, table):
    X, _ = table
    info = log_model(clf, "model", input_example=X.head(3), metadata={"team": "risk"})

    assert isinstance(info, ModelInfo)
    assert info.model_uri == f"runs:/{run.run_id}/model"
    assert info.flavor == "sklearn"
    assert info.signature is not None and info.signature.inputs is not None
    assert [f.name for f in info.signature.inputs.fields] == ["age", "income"]
    names = {p.path for p in run.client.list_artifacts(run.run_id, "model")}
    assert names == {
        "model/model.yaml",
        "model/model.skops",
        "model/requirements.txt",
        "model/input_example.json",
    }

    folder = run.client.download_artifacts(run.run_id, "model")
    config = yaml.safe_load((folder / "model.yaml").read_text())
    assert config["format_version"] == 1
    assert config["flavors"]["sklearn"]["loader"] == "modelyard.models.flavors.sklearn:SklearnFlavor"
    assert config["flavors"]["sklearn"]["files"] == ["model.skops"]
    assert config["flavors"]["sklearn"]["serialization"] == "skops"
    assert config["run_id"] == run.run_id
    assert config["metadata"] == {"team": "risk"}
    assert config["modelyard_version"] == my.__version__
    assert config["signature"]["inputs"]["fields"][0] == {"name": "age", "dtype": "int64"}
    assert any(r.startswith("scikit-learn==") for r in config["requirements"])
    assert (folder / "requirements.txt").read_text().splitlines() == config["requirements"]


@pytest.mark.parametrize("serialization", ["cloudpickle", "pickle", "skops"])
def test_round_trip_every_serialization(run, clf, table, serialization):
    if serialization == "skops":
        pytest.importorskip("skops", reason="skops is not installed (pip install 'modelyard[sklearn]')")
    X, _ = table
    info = log_model(clf, "model", input_example=X.head(2), serialization=serialization)
    assert info.flavors["sklearn"]["serialization"] == serialization

    loaded = load_model(info.model_uri)
    assert type(loaded) is type(clf)
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))
    np.testing.assert_array_equal(load_predictor(info.model_uri).predict(X), clf.predict(X))


def test_default_is_skops_and_loads_elsewhere_without_a_warning(tmp_path, clf, table):
    X, _ = table
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = save_model(clf, tmp_path / "m")
    assert config.flavors["sklearn"]["serialization"] == "skops"
    assert config.flavors["sklearn"]["files"] == ["model.skops"]
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "model.skops",
        "model.yaml",
        "requirements.txt",
    ]
    assert "skops" in {r.split("==")[0] for r in config.requirements}
    safety.forget_written()  # load as another process would
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        np.testing.assert_array_equal(load_model(tmp_path / "m").predict(X), clf.predict(X))


class Doubler(sklearn.base.BaseEstimator, sklearn.base.TransformerMixin):
    """A class of the user's own: outside skops' safe set."""

    def fit(self, X, y=None):
        return self

    def transform(self, X):
        return X * 2


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (lambda: make_pipeline(Doubler(), LogisticRegression()), r"outside skops' safe set \(.*Doubler\)"),
        (lambda: make_pipeline(FunctionTransformer(lambda x: x), LogisticRegression()), r"<lambda>"),
    ],
    ids=["own-class", "lambda"],
)
def test_default_falls_back_to_cloudpickle_with_a_warning_naming_it(tmp_path, table, make, why):
    X, y = table
    model = make().fit(X, y)
    with pytest.warns(
        UnsafeModelWarning, match=r"Saved the scikit-learn model with cloudpickle, not the safe skops"
    ) as record:
        config = save_model(model, tmp_path / "m")
    assert re.search(why, str(record[0].message))
    assert record[0].filename == __file__  # names the user's save call
    assert config.flavors["sklearn"]["serialization"] == "cloudpickle"
    assert sorted(p.name for p in (tmp_path / "m").iterdir()) == [
        "model.pkl",
        "model.yaml",
        "requirements.txt",
    ]
    np.testing.assert_array_equal(load_model(tmp_path / "m").predict(X), model.predict(X))
    safety.forget_written()
    with pytest.warns(UnsafeModelWarning, match="cloudpickled scikit-learn model"):
        load_model(tmp_path / "m")


def test_default_falls_back_to_pickle_without_skops(tmp_path, clf, monkeypatch):
    monkeypatch.setitem(sys.modules, "skops.io", None)  # import skops.io raises ImportError
    with pytest.warns(UnsafeModelWarning, match=r"with cloudpickle.*skops is not installed"):
        config = save_model(clf, tmp_path / "m")
    assert config.flavors["sklearn"]["serialization"] == "cloudpickle"


@pytest.mark.parametrize("serialization", ["cloudpickle", "pickle"])
def test_an_explicit_pickle_format_saves_without_a_warning(tmp_path, table, serialization):
    X, y = table
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        config = save_model(model, tmp_path / "m", serialization=serialization)
    assert config.flavors["sklearn"]["serialization"] == serialization


def test_predictor_takes_dataframes_dicts_and_arrays(run, clf, table):
    X, _ = table
    predictor = load_predictor(log_model(clf, "model", input_example=X.head(2)).model_uri)
    expected = clf.predict(X)
    np.testing.assert_array_equal(predictor.predict(X), expected)
    np.testing.assert_array_equal(predictor.predict({c: X[c].to_numpy() for c in X.columns}), expected)
    ints = X.astype("int64")  # a 2-d array: columns in signature order; int64 -> float64 is a safe cast
    np.testing.assert_array_equal(predictor.predict(ints.to_numpy()), clf.predict(ints))
    with pytest.raises(InvalidArgument, match=r"Column 'age' has dtype float64.*expects int64"):
        predictor.predict(X.to_numpy())  # mixed columns became float64: age would lose information
    assert predictor.predict({"age": 30, "income": 900.0}).shape == (1,)  # one row as a dict of scalars
    reordered = X[["income", "age"]].assign(extra=1)  # order does not matter, extra columns are dropped
    np.testing.assert_array_equal(predictor.predict(reordered), expected)


def test_load_from_folder_and_file_uri(tmp_path, clf, table):
    X, _ = table
    save_model(clf, tmp_path / "m", input_example=X.head(2))
    for uri in (str(tmp_path / "m"), (tmp_path / "m").as_uri(), tmp_path / "m"):
        np.testing.assert_array_equal(load_predictor(uri).predict(X), clf.predict(X))


def test_input_example_round_trip(tmp_path, clf, table):
    X, _ = table
    save_model(clf, tmp_path / "m", input_example=X.head(3))
    example = load_input_example(tmp_path / "m")
    assert list(example.columns) == ["age", "income"]
    assert len(example) == 3


def test_log_model_with_run_id_outside_a_run(clf):
    with my.start_run(capture=False) as active:
        run_id = active.run_id
    info = log_model(clf, "model", run_id=run_id)
    assert info.run_id == run_id
    assert load_model(info.model_uri).__class__ is clf.__class__


def test_log_model_errors(clf, run):
    with pytest.raises(InvalidArgument, match="needs a name"):
        log_model(clf, "")
    log_model(clf, "model")
    with pytest.raises(AlreadyExists, match="already has artifacts at 'model'"):
        log_model(clf, "model")
    my.end_run()
    with pytest.raises(InvalidState, match="needs a run"):
        log_model(clf, "other")


def test_save_model_refuses_a_non_empty_folder(tmp_path, clf):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "x").write_text("x")
    with pytest.raises(AlreadyExists):
        save_model(clf, tmp_path / "m")


def test_missing_model_folder_is_not_found(tmp_path):
    from modelyard.errors import NotFound

    with pytest.raises(NotFound):
        load_model(tmp_path / "nothing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(NotFound, match=r"no model\.yaml"):
        load_model(tmp_path / "empty")


def test_model_without_example_has_no_signature_and_predicts(tmp_path, clf, table):
    X, _ = table
    config = save_model(clf, tmp_path / "m")
    assert config.signature is None
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # written by this process: no unsafe warning
        np.testing.assert_array_equal(load_predictor(tmp_path / "m").predict(X), clf.predict(X))


def test_unknown_serialization_is_refused(tmp_path, clf):
    with pytest.raises(InvalidArgument, match="Unknown sklearn serialization 'yaml'"):
        save_model(clf, tmp_path / "m", serialization="yaml")


def test_registered_model_name_registers_a_version(run, clf):
    registry = pytest.importorskip("modelyard.registry", reason="the model registry is not in this build")
    if not hasattr(registry, "register_model"):
        pytest.skip("modelyard.registry has no register_model yet")
    info = log_model(clf, "model", registered_model_name="churn")
    assert info.registered_model_version is not None
    assert str(info.registered_model_version.version) == "1"
    loaded = load_model("models:/churn/1")
    assert type(loaded) is type(clf)


def test_log_model_keeps_a_path_like_name(run, clf):
    info = log_model(clf, "models/churn")
    assert info.artifact_path == "models/churn"
    assert Path(run.client.download_artifacts(run.run_id, "models/churn/model.yaml")).is_file()
