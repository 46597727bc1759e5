"""RestStore's hot lane (log_batch over plain sockets) against a stub server: the headers httpx would send,
retries, errors as the server raised them, connections the server closed; when the lane stays off. And the
SQL store's background WAL checkpoints."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from modelyard.errors import NotFound, Unavailable
from modelyard.schemas import Metric
from modelyard.store.rest import HotLane, RestStore

RUN = "a" * 32


class Stub(ThreadingHTTPServer):
    """Answers POSTs from `answers` in turn (status, headers, body), recording each request; `close_after`:
    close the connection after each answer without saying so (as a server's keep-alive timeout does)."""

    daemon_threads = True

    def __init__(self) -> None:
        self.answers: list[tuple[int, dict[str, str], bytes]] = []
        self.raw_answers: list[bytes] = []  # written as they are, then the connection closes (say so in them)
        self.requests: list[tuple[str, dict[str, str], bytes]] = []
        self.close_after = False
        self.connections = 0
        super().__init__(("127.0.0.1", 0), Handler)


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Stub

    def setup(self) -> None:
        super().setup()
        self.server.connections += 1

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.requests.append((self.path, dict(self.headers.items()), body))
        if self.server.raw_answers:
            self.wfile.write(self.server.raw_answers.pop(0))
            self.close_connection = True
            return
        status, headers, content = self.server.answers.pop(0) if self.server.answers else (200, {}, b"{}")
        self.send_response(status)
        for name, value in {"Content-Type": "application/json", **headers}.items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)
        if self.server.close_after:
            self.close_connection = True

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub() -> Iterator[Stub]:
    server = Stub()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def _url(stub: Stub) -> str:
    return f"http://127.0.0.1:{stub.server_address[1]}"


POINTS = [Metric(key="loss", value=0.5, step=1, timestamp=7)]


def test_lane_sends_what_httpx_sends(stub: Stub, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_TOKEN", "secret")
    lane_store = RestStore(_url(stub))
    assert lane_store._lane is not None
    plain = RestStore(_url(stub), client=httpx.Client(base_url=_url(stub), headers=lane_store._http.headers))
    assert plain._lane is None
    lane_store.log_batch(RUN, metrics=POINTS)
    plain.log_batch(RUN, metrics=POINTS)
    (path1, headers1, body1), (path2, headers2, body2) = stub.requests
    assert path1 == path2 == f"/api/v1/runs/{RUN}/log-batch"
    assert body1 == body2 and json.loads(body1)["metrics"][0]["key"] == "loss"
    lane_headers = {k.lower(): v for k, v in headers1.items()}
    httpx_headers = {k.lower(): v for k, v in headers2.items()}
    httpx_headers.pop("accept-encoding")  # the lane asks for no compression
    assert lane_headers == httpx_headers
    assert (
        lane_headers["authorization"] == "Bearer secret" and lane_headers["user-agent"] == "modelyard-client"
    )


def test_lane_reuses_connections_and_replaces_closed_ones(stub: Stub) -> None:
    store = RestStore(_url(stub))
    for _ in range(5):
        store.log_batch(RUN, metrics=POINTS)
    assert stub.connections == 1  # keep-alive
    stub.close_after = True
    for _ in range(3):
        store.log_batch(RUN, metrics=POINTS)
        time.sleep(0.05)  # the close reaches the client: the idle connection turns readable
    assert len(stub.requests) == 8 and stub.connections == 3  # the first went over the kept connection


def test_lane_errors_and_retries_like_httpx(stub: Stub) -> None:
    store = RestStore(_url(stub), retries=2, backoff=0.01)
    error = json.dumps({"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "No run with id x."}).encode()
    stub.answers = [(404, {}, error)]
    with pytest.raises(NotFound, match="No run with id x"):
        store.log_batch(RUN, metrics=POINTS)
    stub.answers = [(503, {"Retry-After": "0"}, b"{}"), (200, {}, b"{}")]
    store.log_batch(RUN, metrics=POINTS)  # retried
    assert len(stub.requests) == 3
    stub.answers = [(503, {}, b'{"error_code": "X", "message": "busy"}')] * 3
    with pytest.raises(Unavailable, match="busy"):
        store.log_batch(RUN, metrics=POINTS)
    stub.answers = [(500, {}, b"oops")]
    with pytest.raises(Exception, match="HTTP 500") as info:
        store.log_batch(RUN, metrics=POINTS)
    assert type(info.value).__name__ != "Unavailable"


def test_lane_reads_chunked_and_close_delimited_answers(stub: Stub) -> None:
    store = RestStore(_url(stub), retries=1, backoff=0.01)
    error = b'{"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "No run with id y."}'
    stub.raw_answers = [
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        b"1\r\n{\r\n1;ext=1\r\n}\r\n0\r\nX-Trailer: 1\r\n\r\n",
        b"HTTP/1.0 404 Not Found\r\nContent-Type: application/json\r\n\r\n" + error,  # ends at close
    ]
    store.log_batch(RUN, metrics=POINTS)
    with pytest.raises(NotFound, match="No run with id y"):
        store.log_batch(RUN, metrics=POINTS)
    stub.raw_answers = [
        b"SSH-2.0-OpenSSH\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{}",
    ]
    store.log_batch(RUN, metrics=POINTS)  # garbage is retried like a connection error
    stub.raw_answers = [b"HTTP/1.1 200 OK\r\nContent-Length: 20\r\n\r\n{}"] * 2  # cut short
    with pytest.raises(Unavailable, match="closed the connection before it answered"):
        store.log_batch(RUN, metrics=POINTS)
    assert len(stub.requests) == 6


def test_lane_unreachable_server_is_unavailable() -> None:
    from tests.server.live import free_port

    store = RestStore(f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.01)
    assert store._lane is not None
    with pytest.raises(Unavailable, match="Cannot reach the Modelyard server"):
        store.log_batch(RUN, metrics=POINTS)


@pytest.mark.parametrize(
    ("uri", "env"),
    [
        ("https://127.0.0.1:1", {}),
        ("http://127.0.0.1:1", {"HTTP_PROXY": "http://proxy:3128"}),
        ("http://127.0.0.1:1", {"all_proxy": "http://proxy:3128"}),
    ],
)
def test_lane_stays_off_for_tls_and_proxies(
    uri: str, env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    assert RestStore(uri)._lane is None
    assert HotLane.for_client(httpx.Client(base_url=uri), 1.0) is None


def test_background_checkpoints_keep_the_wal_copied(tmp_path: Path) -> None:
    from modelyard.store.sql.store import SqlTrackingStore

    store = SqlTrackingStore(f"sqlite:///{tmp_path / 'c.db'}")
    store.checkpoint_in_background()
    checkpointer = store._raw._checkpointer
    assert checkpointer is not None
    db = tmp_path / "c.db"
    store.log_batch(store.create_run("0").info.run_id, metrics=[])  # the hot write connection opens
    assert store._raw._writer.driver_connection.execute("PRAGMA wal_autocheckpoint").fetchone()[0] == 16_000
    time.sleep(0.6)  # whatever setting up wrote is checkpointed
    before = db.stat().st_size
    run_id = store.create_run("0").info.run_id
    store.log_batch(
        run_id, metrics=[Metric(key="x", value=float(i), step=i, timestamp=i) for i in range(5000)]
    )
    deadline = time.monotonic() + 10
    while db.stat().st_size <= before and time.monotonic() < deadline:  # the WAL's pages reach the file
        time.sleep(0.05)
    assert db.stat().st_size > before + 100_000
    store.close()
    assert not checkpointer._thread.is_alive()
