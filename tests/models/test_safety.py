"""UnsafeModelWarning for code-executing formats from untrusted sources, and the ways to trust a source."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest

from modelyard.models import UnsafeModelWarning, load_model, load_predictor, log_model, safety, save_model

sklearn = pytest.importorskip(
    "sklearn", reason="scikit-learn is not installed (pip install 'modelyard[sklearn]')"
)
from sklearn.linear_model import LinearRegression  # noqa: E402


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    model = LinearRegression().fit(np.arange(10.0).reshape(5, 2), np.arange(5.0))
    save_model(model, tmp_path / "m", serialization="pickle")  # the default, skops, loads without warning
    safety.forget_written()  # load as another process would
    return tmp_path / "m"


def test_pickle_from_an_untrusted_source_warns(saved):
    with pytest.warns(UnsafeModelWarning, match="can run arbitrary code") as record:
        load_model(saved)
    message = str(record[0].message)
    assert "ONNX" in message and "safetensors" in message and "skops" in message
    assert "MODELYARD_TRUSTED_MODEL_SOURCES" in message
    assert record[0].filename == __file__  # points at the caller's line, not at modelyard internals


def test_trusted_flag_silences(saved):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsafeModelWarning)
        load_model(saved, trusted=True)
        load_predictor(saved, trusted=True)


@pytest.mark.parametrize("prefix", ["{parent}", "{parent}/", "file://{parent}", "other,{parent}"])
def test_env_prefix_silences(saved, monkeypatch, prefix):
    monkeypatch.setenv(safety.ENV_TRUSTED_SOURCES, prefix.format(parent=saved.parent))
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsafeModelWarning)
        load_model(saved)


def test_env_prefix_matches_whole_folders_only(saved, monkeypatch):
    monkeypatch.setenv(safety.ENV_TRUSTED_SOURCES, str(saved) + "-other")
    with pytest.warns(UnsafeModelWarning):
        load_model(saved)


def test_runs_uri_prefix(run, monkeypatch):
    model = LinearRegression().fit(np.arange(10.0).reshape(5, 2), np.arange(5.0))
    info = log_model(model, "model", serialization="pickle")
    safety.forget_written()
    monkeypatch.setenv(safety.ENV_TRUSTED_SOURCES, f"runs:/{run.run_id}/")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsafeModelWarning)
        load_model(info.model_uri)


def test_files_written_by_this_process_are_trusted_until_changed(tmp_path):
    model = LinearRegression().fit(np.arange(10.0).reshape(5, 2), np.arange(5.0))
    save_model(model, tmp_path / "m", serialization="pickle")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsafeModelWarning)
        load_model(tmp_path / "m")
    other = LinearRegression().fit(np.arange(10.0).reshape(5, 2), np.arange(5.0) * 2)
    save_model(
        other, tmp_path / "other", trusted=False, serialization="pickle"
    )  # not remembered: its bytes are new
    (tmp_path / "m" / "model.pkl").write_bytes((tmp_path / "other" / "model.pkl").read_bytes())
    with pytest.warns(UnsafeModelWarning):
        load_model(tmp_path / "m")


def test_skops_with_only_safe_types_does_not_warn(tmp_path):
    pytest.importorskip("skops", reason="skops is not installed (pip install 'modelyard[sklearn]')")
    model = LinearRegression().fit(np.arange(10.0).reshape(5, 2), np.arange(5.0))
    save_model(model, tmp_path / "m", serialization="skops")
    safety.forget_written()
    with warnings.catch_warnings():
        warnings.simplefilter("error", UnsafeModelWarning)
        loaded = load_model(tmp_path / "m")
    np.testing.assert_allclose(loaded.coef_, model.coef_)


def test_python_function_warns(tmp_path):
    save_model(lambda inputs: inputs, tmp_path / "m", flavor="python_function")
    safety.forget_written()
    with pytest.warns(UnsafeModelWarning, match="cloudpickled python_function"):
        load_predictor(tmp_path / "m")


def test_pytorch_program_warns_and_names_the_weights_only_path(tmp_path):
    torch = pytest.importorskip("torch", reason="torch is not installed (pip install 'modelyard[torch]')")
    save_model(torch.nn.Linear(2, 1), tmp_path / "m", input_example=np.ones((1, 2), np.float32))
    safety.forget_written()
    with pytest.warns(UnsafeModelWarning, match="module=YourModule"):
        load_model(tmp_path / "m")
