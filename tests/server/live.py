"""A real `modelyard server` process on a free loopback port, for integration tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    def __init__(
        self,
        backend_uri: str,
        artifacts: str | Path,
        port: int | None = None,
        workers: int = 1,
        extra_args: tuple[str, ...] = (),
    ) -> None:
        self.backend_uri, self.artifacts, self.workers = backend_uri, artifacts, workers
        self.extra_args = extra_args
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 20.0) -> LiveServer:
        cli = Path(sys.executable).with_name("modelyard")
        self.process = subprocess.Popen(
            [str(cli), "server", "--port", str(self.port), "--workers", str(self.workers),
             "--backend-store-uri", self.backend_uri, "--artifacts-uri", str(self.artifacts), *self.extra_args],
            stdout=self._log(), stderr=subprocess.STDOUT, env={**os.environ},
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}:\n{self.log_text()}")
            try:
                if httpx.get(self.url + "/ready", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("server did not become ready")

    def _log(self) -> Any:
        """Server output goes to a file: a pipe nobody reads would block a chatty server."""
        self.log_path = Path(tempfile.mkstemp(prefix="modelyard-server-", suffix=".log")[1])
        return open(self.log_path, "wb")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")[-4000:]

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None


def backend_for(request: Any, tmp: Path) -> str:
    """The database a module's live server uses: `request.param` is "sqlite" or "postgres" (reset first)."""
    if request.param == "postgres":
        from tests.store.conftest import _reset_postgres

        url: str = request.getfixturevalue("postgres_url")
        _reset_postgres(url)
        return url
    return f"sqlite:///{tmp / 'server.db'}"


def start_module_server(request: Any, tmp: Path) -> LiveServer:
    """A live server on `backend_for(request)`, with a home of its own under `tmp`."""
    import pytest

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MODELYARD_HOME", str(tmp / "home"))
        return LiveServer(backend_for(request, tmp), tmp / "artifacts").start()


MLFLOW_CLIENT_ENV = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",  # a failure fails now, not after backoffs
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "30",
    "MLFLOW_DISABLE_TELEMETRY": "true",
    "DO_NOT_TRACK": "true",
}
