"""Model URIs: artifact URIs of any artifact store, runs:/ parsing, and bad URIs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from modelyard.artifacts import base as artifact_base
from modelyard.artifacts.local import LocalArtifactStore
from modelyard.errors import InvalidArgument, NotFound
from modelyard.models import load_predictor, read_model_config, save_model
from modelyard.models.uris import local_folder, parse_runs_uri


class FakeRemoteStore(LocalArtifactStore):
    """`fake://<path>`: a "remote" scheme whose files happen to be local, to exercise the download path."""

    def __init__(self, root_uri: str) -> None:
        super().__init__(root_uri[len("fake://") :])
        self.root_uri = root_uri


def _double(inputs):
    return np.asarray(inputs) * 2


def test_any_artifact_store_uri_is_downloaded_and_cleaned_up(tmp_path, monkeypatch):
    monkeypatch.setitem(artifact_base._BUILTIN, "fake", f"{__name__}:FakeRemoteStore")
    save_model(_double, tmp_path / "m", input_example=np.ones((1, 2)))
    uri = f"fake://{tmp_path / 'm'}"
    with local_folder(uri) as (folder, resolved):
        assert resolved == uri
        assert folder != tmp_path / "m" and (folder / "model.yaml").is_file()
        downloaded = folder
    assert not downloaded.exists()
    assert read_model_config(uri).flavors["python_function"]["files"] == ["python_model.pkl"]
    np.testing.assert_array_equal(load_predictor(uri).predict(np.ones((1, 2))), [[2.0, 2.0]])


def test_runs_uri_parsing():
    assert parse_runs_uri("runs:/abc/model") == ("abc", "model")
    assert parse_runs_uri("runs:/abc/a/b/") == ("abc", "a/b")
    with pytest.raises(InvalidArgument, match="runs:/<run_id>"):
        parse_runs_uri("runs:/")
    with pytest.raises(InvalidArgument, match=r"contains '\.\.'"):
        parse_runs_uri("runs:/abc/../../etc")


def test_bad_uris(tmp_path: Path):
    with pytest.raises(InvalidArgument, match="non-empty string"):
        read_model_config("")
    with pytest.raises(NotFound, match="No model folder"):
        read_model_config(tmp_path / "missing")
    with pytest.raises(InvalidArgument, match="Unsupported artifact URI"):
        read_model_config("nosuch://bucket/model")
