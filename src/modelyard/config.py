"""Typed settings in one place. Each is read from its `MODELYARD_*` variable when asked for, never at import."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class Setting:
    name: str
    type: Callable[[str], Any]
    default: Callable[[], Any]
    help: str

    @property
    def env(self) -> str:
        return "MODELYARD_" + self.name.upper()

    def read(self) -> Any:
        raw = os.environ.get(self.env)
        return self.default() if raw in (None, "") else self.type(raw)


def _home() -> Path:
    return Path(os.environ.get("MODELYARD_HOME") or Path.home() / ".modelyard").expanduser()


SETTINGS: dict[str, Setting] = {
    s.name: s
    for s in (
        Setting(
            "home", lambda v: Path(v).expanduser(), _home, "Folder for the embedded store and artifacts."
        ),
        Setting(
            "tracking_uri",
            str,
            lambda: f"sqlite:///{_home() / 'modelyard.db'}",
            "Metadata store: sqlite:///path or postgresql+psycopg://user@host/db.",
        ),
        Setting(
            "artifact_uri",
            str,
            lambda: (_home() / "artifacts").as_uri(),
            "Root for new experiments' artifacts: a folder, file:///..., s3://bucket/prefix or gs://bucket/prefix.",
        ),
        Setting(
            "s3_endpoint_url",
            str,
            lambda: os.environ.get("AWS_ENDPOINT_URL") or None,
            "S3 endpoint for MinIO/SeaweedFS (falls back to AWS_ENDPOINT_URL).",
        ),
        Setting(
            "gcs_endpoint_url",
            str,
            lambda: os.environ.get("STORAGE_EMULATOR_HOST") or None,
            "GCS endpoint for an emulator such as fake-gcs-server (falls back to STORAGE_EMULATOR_HOST).",
        ),
        Setting(
            "gcs_token",
            str,
            lambda: None,
            "GCS credentials: google_default (Application Default Credentials: GOOGLE_APPLICATION_CREDENTIALS, "
            "gcloud auth application-default login, the metadata server), anon, or a service-account JSON "
            "file. Default: anon when an endpoint is set, else google_default.",
        ),
        Setting("token", str, lambda: None, "API token sent to a Modelyard server."),
        Setting(
            "flush_interval", float, lambda: 1.0, "Seconds between background flushes of buffered metrics."
        ),
        Setting(
            "progress_threshold_mb", float, lambda: 50.0, "Show a progress bar for files larger than this."
        ),
    )
}


def get(name: str) -> Any:
    """The current value of setting `name` (see `SETTINGS`)."""
    return SETTINGS[name].read()


def home() -> Path:
    return get("home")  # type: ignore[no-any-return]


def tracking_uri() -> str:
    return get("tracking_uri")  # type: ignore[no-any-return]


def artifact_uri() -> str:
    return get("artifact_uri")  # type: ignore[no-any-return]
