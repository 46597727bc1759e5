"""Round trips of the ONNX, LightGBM, XGBoost, PyTorch and python_function flavors."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pytest

from modelyard.errors import InvalidArgument
from modelyard.models import (
    UnsafeModelWarning,
    flavor_for,
    load_model,
    load_predictor,
    log_model,
    read_model_config,
    save_model,
)


@contextmanager
def _no_unsafe_warning() -> Iterator[None]:
    """A block in which an UnsafeModelWarning fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsafeModelWarning)
        yield


# -- ONNX ------------------------------------------------------------------------------------------------


def _onnx_linear(onnx):
    """y = x @ W + b, with a symbolic batch dimension."""
    from onnx import TensorProto, helper, numpy_helper

    weights = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(3, 2), "W")
    bias = numpy_helper.from_array(np.array([1.0, -1.0], dtype=np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["xw"]), helper.make_node("Add", ["xw", "b"], ["y"])],
        "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 2])],
        initializer=[weights, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def test_onnx_round_trip_and_signature_from_the_graph(run):
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (pip install 'modelyard[onnx]')")
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (pip install 'modelyard[onnx]')")
    model = _onnx_linear(onnx)
    info = log_model(model, "model")
    assert info.flavor == "onnx"
    assert info.signature is not None and info.signature.inputs is not None
    assert info.signature.inputs.fields[0].model_dump() == {
        "name": "x",
        "dtype": "float32",
        "shape": (-1, 3),
        "optional": False,
    }
    x = np.ones((4, 3), dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a safe format: no warning, trusted or not
        assert isinstance(load_model(info.model_uri), onnx.ModelProto)
        predictor = load_predictor(info.model_uri)
    np.testing.assert_allclose(predictor.predict(x), x @ np.arange(6).reshape(3, 2) + [1.0, -1.0])
    np.testing.assert_allclose(predictor.predict({"x": x}), predictor.predict(x))
    with pytest.raises(InvalidArgument, match="Tensor 'x' has dtype float64"):
        predictor.predict(np.ones((4, 3)))
    with pytest.raises(InvalidArgument, match="dimension 1 is 2, expected 3"):
        predictor.predict(np.ones((4, 2), dtype=np.float32))


# -- LightGBM --------------------------------------------------------------------------------------------


@pytest.fixture
def lgb():
    return pytest.importorskip(
        "lightgbm", reason="lightgbm is not installed (pip install 'modelyard[lightgbm]')"
    )


def test_lightgbm_classifier_round_trip(run, lgb, table):
    X, y = table
    labels = np.where(y == 1, "high", "low")  # string classes must come back as they went in
    model = lgb.LGBMClassifier(n_estimators=5, verbose=-1).fit(X, labels)
    info = log_model(model, "model", input_example=X.head(2))
    assert info.flavor == "lightgbm"  # before sklearn, which would pickle it
    assert info.flavors["lightgbm"]["files"] == ["model.txt", "sklearn.json"]
    with _no_unsafe_warning():
        loaded = load_model(info.model_uri)
    assert type(loaded) is lgb.LGBMClassifier
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_allclose(loaded.predict_proba(X), model.predict_proba(X))
    np.testing.assert_array_equal(load_predictor(info.model_uri).predict(X), model.predict(X))


def test_lightgbm_regressor_and_booster(run, lgb, table):
    X, y = table
    regressor = lgb.LGBMRegressor(n_estimators=5, verbose=-1).fit(X, X["income"])
    info = log_model(regressor, "regressor")
    np.testing.assert_allclose(load_model(info.model_uri).predict(X), regressor.predict(X))
    booster = lgb.train({"objective": "binary", "verbose": -1}, lgb.Dataset(X, y), num_boost_round=3)
    info = log_model(booster, "booster")
    loaded = load_model(info.model_uri)
    assert isinstance(loaded, lgb.Booster)
    np.testing.assert_allclose(load_predictor(info.model_uri).predict(X), booster.predict(X))


# -- XGBoost ---------------------------------------------------------------------------------------------


def test_xgboost_round_trip(run, table):
    xgb = pytest.importorskip(
        "xgboost",
        reason="xgboost is not installed (about 700 MB with its NCCL wheel: pip install 'modelyard[xgboost]')",
    )
    X, y = table
    model = xgb.XGBClassifier(n_estimators=5, max_depth=2).fit(X, y)
    info = log_model(model, "model", input_example=X.head(2))
    assert info.flavor == "xgboost"
    with _no_unsafe_warning():
        loaded = load_model(info.model_uri)
    assert type(loaded) is xgb.XGBClassifier
    np.testing.assert_array_equal(loaded.predict(X), model.predict(X))
    np.testing.assert_array_equal(load_predictor(info.model_uri).predict(X), model.predict(X))

    booster = model.get_booster()
    info = log_model(booster, "booster")
    loaded = load_model(info.model_uri)
    assert isinstance(loaded, xgb.Booster)
    np.testing.assert_allclose(load_predictor(info.model_uri).predict(X), booster.predict(xgb.DMatrix(X)))


# -- PyTorch ---------------------------------------------------------------------------------------------


@pytest.fixture
def torch():
    return pytest.importorskip("torch", reason="torch is not installed (pip install 'modelyard[torch]')")


def _net(torch):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU(), torch.nn.Linear(8, 2))


@pytest.mark.parametrize("serialization", [None, "torchscript", "pickle"])
def test_pytorch_round_trip(run, torch, serialization):
    net = _net(torch)
    x = np.random.default_rng(0).random((3, 4), dtype=np.float32)
    options = {} if serialization is None else {"serialization": serialization}
    info = log_model(net, "model", input_example=x[:1], **options)
    config = info.flavors["pytorch"]
    assert config["program"] == serialization or (serialization is None and config["program"] == "export")
    expected = net(torch.from_numpy(x)).detach().numpy()

    loaded = load_model(info.model_uri)
    np.testing.assert_allclose(loaded(torch.from_numpy(x)).detach().numpy(), expected, rtol=1e-5)
    predictor = load_predictor(info.model_uri)
    np.testing.assert_allclose(predictor.predict(x), expected, rtol=1e-5)  # a batch of 3, exported with 1
    with pytest.raises(InvalidArgument, match="dimension 1 is 5, expected 4"):
        predictor.predict(np.zeros((2, 5), np.float32))


def test_pytorch_weights_into_your_module_without_warning(run, torch):
    pytest.importorskip("safetensors", reason="safetensors is not installed")
    from modelyard.models import safety

    net = _net(torch)
    info = log_model(net, "model")
    assert info.flavors["pytorch"]["weights"] == "weights.safetensors"
    assert any(r.startswith("safetensors==") for r in info.requirements)
    safety.forget_written()  # as if loaded by another process
    fresh = _net(torch)
    for p in fresh.parameters():
        torch.nn.init.zeros_(p)
    with _no_unsafe_warning():
        loaded = load_model(info.model_uri, module=fresh)
    assert loaded is fresh
    x = torch.ones(2, 4)
    torch.testing.assert_close(loaded(x), net(x))


def test_pytorch_dict_inputs(run, torch):
    class TwoInputs(torch.nn.Module):
        def forward(self, a, b):
            return a * 2 + b

    example = {"a": np.ones((2, 3), np.float32), "b": np.ones((2, 3), np.float32)}
    info = log_model(TwoInputs(), "model", input_example=example)
    assert info.signature is not None and info.signature.inputs is not None
    assert info.signature.inputs.type == "tensors"
    out = load_predictor(info.model_uri).predict(
        {"a": np.zeros((5, 3), np.float32), "b": np.ones((5, 3), np.float32)}
    )
    np.testing.assert_allclose(out, np.ones((5, 3)))


# -- python_function -------------------------------------------------------------------------------------


class Doubler:
    """A user model: anything with predict(inputs)."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def predict(self, inputs):
        return np.asarray(inputs) * self.factor


def test_python_function_class_round_trip(run):
    model = Doubler(2.0)
    assert flavor_for(model).name == "python_function"
    x = np.arange(6, dtype=np.float64).reshape(3, 2)
    info = log_model(model, "model", input_example=x)
    assert info.flavor == "python_function"
    assert info.flavors["python_function"]["python_class"].endswith("test_flavors.Doubler")
    assert any(r.startswith("cloudpickle==") for r in info.requirements)
    loaded = load_model(info.model_uri)
    assert isinstance(loaded, Doubler) and loaded.factor == 2.0
    np.testing.assert_array_equal(load_predictor(info.model_uri).predict(x), x * 2)


def test_python_function_plain_function(tmp_path):
    def score(inputs):
        return inputs["a"] + inputs["b"]

    save_model(score, tmp_path / "m", input_example={"a": np.ones(2), "b": np.ones(2)})
    out = load_predictor(tmp_path / "m").predict({"a": np.array([1.0]), "b": np.array([2.0])})
    np.testing.assert_array_equal(out, [3.0])


def test_output_signature_failure_warns_but_saves(tmp_path):
    class Broken:
        def predict(self, inputs):
            raise RuntimeError("boom")

    with pytest.warns(UserWarning, match="Could not infer the output signature.*boom"):
        config = save_model(Broken(), tmp_path / "m", input_example=np.ones((1, 2)))
    assert config.signature is not None and config.signature.outputs is None
    assert read_model_config(tmp_path / "m").signature == config.signature


def test_unknown_model_type_is_refused(tmp_path):
    with pytest.raises(InvalidArgument, match=r"No model flavor handles a builtins\.int"):
        save_model(42, tmp_path / "m")
    with pytest.raises(InvalidArgument, match="Unknown model flavor 'catboost'"):
        save_model(Doubler(1.0), tmp_path / "m2", flavor="catboost")


def test_a_failed_save_leaves_no_folder(tmp_path):
    class Unpicklable:
        def __init__(self) -> None:
            import threading

            self.lock = threading.Lock()

        def predict(self, inputs):
            return inputs

    with pytest.raises(InvalidArgument, match="Could not save the model with cloudpickle"):
        save_model(Unpicklable(), tmp_path / "m")
    assert not (tmp_path / "m").exists()
