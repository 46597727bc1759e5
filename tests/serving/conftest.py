from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from modelyard.models import load_predictor, save_model
from modelyard.serving import BatchConfig, Deployment, ServedModel, create_serving_app


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Iris:
    """A LogisticRegression on iris, saved with a DataFrame input example (so it has a signature)."""

    def __init__(self, folder: Path) -> None:
        sklearn_datasets = pytest.importorskip("sklearn.datasets")
        from sklearn.linear_model import LogisticRegression

        self.X, self.y = sklearn_datasets.load_iris(return_X_y=True, as_frame=True)
        self.columns = list(self.X.columns)
        self.rows = self.X.to_numpy()
        self.model = LogisticRegression(max_iter=500).fit(self.X, self.y)
        self.expected = self.model.predict(self.X)
        self.folder = folder
        save_model(self.model, folder, input_example=self.X.head(3))
        self.predictor = load_predictor(folder, trusted=True)


@pytest.fixture(scope="session")
def iris(tmp_path_factory: pytest.TempPathFactory) -> Iris:
    return Iris(tmp_path_factory.mktemp("iris") / "model")


@pytest.fixture(scope="session")
def pyfunc(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., Any]:
    """Save a python_function model (once per name) and load it back as a Predictor."""
    cache: dict[str, Any] = {}

    def make(name: str, model: Any, input_example: Any = None, signature: Any = None) -> Any:
        if name not in cache:
            folder = tmp_path_factory.mktemp(name) / "model"
            save_model(model, folder, input_example=input_example, signature=signature)
            cache[name] = load_predictor(folder, trusted=True)
        return cache[name]

    return make


class ServingClient(httpx.AsyncClient):
    deployment: Deployment


@asynccontextmanager
async def serving(*models: ServedModel) -> AsyncIterator[ServingClient]:
    """An httpx client on the in-process app serving `models`; the deployment is drained afterwards."""
    deployment = Deployment(models)
    app = create_serving_app(deployment)
    transport = httpx.ASGITransport(app=app)
    try:
        async with ServingClient(transport=transport, base_url="http://serving.test") as client:
            client.deployment = deployment
            yield client
    finally:
        await deployment.close()


def oip(name: str, array: np.ndarray | list[Any], datatype: str, **extra: Any) -> dict[str, Any]:
    """One OIP v2 input tensor."""
    data = np.asarray(array)
    return {
        "name": name,
        "shape": list(data.shape),
        "datatype": datatype,
        "data": data.ravel().tolist(),
        **extra,
    }


def served(name: str, predictor: Any, **config: Any) -> ServedModel:
    return ServedModel(name, "1", predictor, BatchConfig(**config))


@asynccontextmanager
async def app_client(*models: ServedModel, **options: Any) -> AsyncIterator[httpx.AsyncClient]:
    """An httpx client on the app serving `models`, inside the app's lifespan: leaving it shuts the app
    down as uvicorn does (drain the queues, then write the payload log's buffer)."""
    app = create_serving_app(Deployment(models), **options)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serving.test") as client,
    ):
        client.app = app  # type: ignore[attr-defined]
        yield client
