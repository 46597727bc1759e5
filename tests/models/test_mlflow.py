"""Models written by the real MLflow client (MLmodel format) load and predict through Modelyard."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from modelyard.errors import InvalidArgument
from modelyard.models import (
    UnsafeModelWarning,
    load_input_example,
    load_model,
    load_predictor,
    read_model_config,
)

pytest.importorskip("mlflow", reason="the mlflow client is not installed (pip install mlflow-skinny)")
pytest.importorskip("sklearn", reason="scikit-learn is not installed")
pd = pytest.importorskip("pandas")
import mlflow  # noqa: E402
import mlflow.artifacts  # noqa: E402
import mlflow.pyfunc  # noqa: E402
import mlflow.sklearn  # noqa: E402
from mlflow.models import infer_signature  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402

# Given explicitly: MLflow's own inference of requirements takes seconds per saved model.
REQUIREMENTS = ["scikit-learn", "cloudpickle"]


@pytest.fixture
def data():
    rng = np.random.default_rng(1)
    X = pd.DataFrame({"a": rng.random(40), "b": rng.random(40)})
    return X, (X["a"] > X["b"]).astype(int).to_numpy()


@pytest.fixture
def clf(data):
    X, y = data
    return LogisticRegression().fit(X, y)


class Adder(mlflow.pyfunc.PythonModel):
    """An MLflow python model: the row sums times a factor read in load_context."""

    def load_context(self, context):
        self.factor = float(Path(context.artifacts["factor"]).read_text())

    def predict(self, context, model_input, params=None):
        return (model_input["a"] + model_input["b"]) * self.factor


@pytest.mark.parametrize("serialization", ["skops", "cloudpickle", "pickle"])
def test_mlflow_sklearn_model(tmp_path, clf, data, serialization):
    if serialization == "skops":
        pytest.importorskip("skops", reason="skops is not installed (MLflow's default sklearn format)")
    X, _ = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # MLflow's own warnings about pickle formats
        mlflow.sklearn.save_model(
            clf,
            str(tmp_path / "m"),
            serialization_format=serialization,
            signature=infer_signature(X, clf.predict(X)),
            input_example=X.head(2),
            pip_requirements=REQUIREMENTS,
        )
    config = read_model_config(tmp_path / "m")
    assert config.flavors["sklearn"]["serialization"] == serialization
    assert config.signature is not None and config.signature.inputs is not None
    assert [(f.name, f.dtype) for f in config.signature.inputs.fields] == [("a", "float64"), ("b", "float64")]
    assert any(r.startswith("scikit-learn") for r in config.requirements)

    predictor = load_predictor(tmp_path / "m", trusted=True)
    np.testing.assert_array_equal(predictor.predict(X), clf.predict(X))
    np.testing.assert_array_equal(
        predictor.predict({"a": X["a"].to_numpy(), "b": X["b"].to_numpy()}), clf.predict(X)
    )
    with pytest.raises(InvalidArgument, match="missing column 'b'"):
        predictor.predict(X[["a"]])
    assert list(load_input_example(tmp_path / "m").columns) == ["a", "b"]


def test_mlflow_pickle_warns_unless_trusted(tmp_path, clf):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.sklearn.save_model(
            clf, str(tmp_path / "m"), serialization_format="cloudpickle", pip_requirements=REQUIREMENTS
        )
    with pytest.warns(UnsafeModelWarning):
        load_model(tmp_path / "m")


def test_mlflow_python_model(tmp_path, data):
    X, _ = data
    (tmp_path / "factor.txt").write_text("3")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mlflow.pyfunc.save_model(
            str(tmp_path / "m"),
            python_model=Adder(),
            artifacts={"factor": str(tmp_path / "factor.txt")},
            input_example=X.head(2),
            pip_requirements=REQUIREMENTS,
        )
    predictor = load_predictor(tmp_path / "m", trusted=True)
    assert predictor.flavor.name == "mlflow_python_model"
    np.testing.assert_allclose(np.asarray(predictor.predict(X)), (X["a"] + X["b"]) * 3)


@pytest.mark.slow
def test_model_logged_by_the_mlflow_client(tmp_path, clf, data, monkeypatch):
    """mlflow.sklearn.log_model into an MLflow tracking store, then loaded from its artifact folder."""
    X, _ = data
    monkeypatch.chdir(tmp_path)
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        experiment = mlflow.create_experiment("interop", artifact_location=(tmp_path / "mlruns").as_uri())
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with mlflow.start_run(experiment_id=experiment):
                info = mlflow.sklearn.log_model(
                    clf, name="model", input_example=X.head(2), pip_requirements=REQUIREMENTS
                )
            folder = mlflow.artifacts.download_artifacts(info.model_uri, dst_path=str(tmp_path / "download"))
    finally:
        mlflow.set_tracking_uri(None)
    predictor = load_predictor(folder, trusted=True)
    np.testing.assert_array_equal(predictor.predict(X), clf.predict(X))
