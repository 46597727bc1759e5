from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import modelyard as my
from modelyard.models import safety


@pytest.fixture(autouse=True)
def fresh_trust(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No trusted prefixes, and no file remembered as written by this process, unless a test says so."""
    monkeypatch.delenv(safety.ENV_TRUSTED_SOURCES, raising=False)
    safety.forget_written()
    yield
    safety.forget_written()


@pytest.fixture
def run() -> Iterator[my.ActiveRun]:
    with my.start_run(capture=False) as active:
        yield active


@pytest.fixture
def table() -> tuple[object, np.ndarray]:
    """A small classification table (DataFrame X, label array y)."""
    pd = pytest.importorskip("pandas")
    rng = np.random.default_rng(0)
    X = pd.DataFrame({"age": rng.integers(18, 80, 60), "income": rng.random(60) * 1000.0})
    y = (X["income"] > 500).astype(int).to_numpy()
    return X, y
