from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

pytest_plugins = ["tests.s3_server", "tests.gcs_server", "tests.postgres"]


@pytest.fixture(autouse=True)
def modelyard_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """Every test gets its own MODELYARD_HOME: nothing touches ~/.modelyard, no test sees another's runs."""
    home = tmp_path / "modelyard-home"
    monkeypatch.setenv("MODELYARD_HOME", str(home))
    for var in ("MODELYARD_TRACKING_URI", "MODELYARD_ARTIFACT_URI", "MODELYARD_EXPERIMENT_NAME"):
        monkeypatch.delenv(var, raising=False)
    yield home
    from modelyard.tracking import fluent

    while fluent._active:  # a failing test must not leave its run active for the next one
        fluent._active.pop()
    fluent._client = None
    fluent._client_uri = None
    fluent._experiment_name = None
