"""What the tests of the unmodified `mlflow` client share: one live Modelyard server per backend for each
test module (each test works in experiments and models of its own), and the client pointed at it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from tests.server.live import MLFLOW_CLIENT_ENV, LiveServer, start_module_server

mlflow = pytest.importorskip("mlflow")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    live = start_module_server(request, tmp_path_factory.mktemp("mlflow-client"))
    yield live
    live.stop()


@pytest.fixture(autouse=True)
def mlflow_env(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server.url)
    for name, value in MLFLOW_CLIENT_ENV.items():
        monkeypatch.setenv(name, value)
    yield
    while mlflow.active_run() is not None:
        mlflow.end_run()


def unique_name(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"
