"""Small v1 log-batch requests stored and answered inside the HTTP protocol (`NoDelayHttpProtocol`), in a
real uvicorn server: the same bytes on the wire as the ASGI app's answer, errors left to the app, and the
HTTP/1.1 cases that must take uvicorn's path (pipelining, Expect: 100-continue, Connection: close)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvicorn

from modelyard.server import ServerSettings, create_app
from modelyard.server.hot_routes import HotRoutes, hot_front
from modelyard.server.protocol import NoDelayHttpProtocol
from tests.server.live import free_port

POINT = {"key": "loss", "value": 0.5, "timestamp": 1, "step": 0}


class Served:
    """`hot_front(create_app(...))` served by uvicorn in a thread, with its front's `log_now` counted."""

    def __init__(self, tmp_path: Path) -> None:
        app = create_app(ServerSettings(backend_store_uri=f"sqlite:///{tmp_path / 'fast.db'}"))
        front = hot_front(app)
        assert isinstance(front, HotRoutes)
        self.front, self.store = front, app.state.store
        self.outcomes: list[str] = []  # "stored" or the exception's name, per request the protocol took
        log_now = front.log_now

        def counted(run_id: str, body: bytes) -> bytes:
            try:
                answer = log_now(run_id, body)
            except Exception as exc:
                self.outcomes.append(type(exc).__name__)
                raise
            self.outcomes.append("stored")
            return answer

        front.log_now = counted  # type: ignore[method-assign]
        self.port = free_port()
        config = uvicorn.Config(front, host="127.0.0.1", port=self.port, http=NoDelayHttpProtocol,
                                log_level="warning", access_log=False, proxy_headers=False)  # fmt: skip
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 30
        while not self.server.started:
            assert time.monotonic() < deadline and self.thread.is_alive(), "the server did not start"
            time.sleep(0.02)
        self.run_id = self.store.create_run("0").info.run_id

    def exchange(self, raw: bytes, answers: int = 1) -> list[tuple[int, dict[str, str], bytes]]:
        """Send `raw` on a new connection; read `answers` HTTP answers (status, headers, body)."""
        with socket.create_connection(("127.0.0.1", self.port), timeout=10) as sock:
            sock.sendall(raw)
            buffer, out = b"", []
            while len(out) < answers:
                while b"\r\n\r\n" not in buffer:
                    chunk = sock.recv(65536)
                    assert chunk, f"connection closed after {len(out)} answers: {buffer!r}"
                    buffer += chunk
                head, buffer = buffer.split(b"\r\n\r\n", 1)
                lines = head.decode("latin-1").split("\r\n")
                headers = dict(line.lower().split(": ", 1) for line in lines[1:])
                if int(lines[0].split()[1]) == 100:
                    continue
                size = int(headers["content-length"])
                while len(buffer) < size:
                    buffer += sock.recv(65536)
                out.append((int(lines[0].split()[1]), headers, buffer[:size]))
                buffer = buffer[size:]
            return out

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        self.store.close()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path)
    yield s
    s.stop()


def post(path: str, body: Any, *extra: str) -> bytes:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    head = [f"POST {path} HTTP/1.1", "Host: test", "Content-Type: application/json", *extra,
            f"Content-Length: {len(data)}"]  # fmt: skip
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


def test_small_batches_are_stored_in_the_protocol_with_the_apps_answer(served: Served) -> None:
    path = f"/api/v1/runs/{served.run_id}/log-batch"
    [fast] = served.exchange(post(path, {"metrics": [POINT]}))
    assert served.outcomes == ["stored"]
    served.front.run_to_log_now = lambda scope, limit: None  # type: ignore[method-assign]  # the app's way
    [slow] = served.exchange(post(path, {"metrics": [{**POINT, "step": 1}]}))
    assert served.outcomes == ["stored"]
    for answer in (fast, slow):
        answer[1].pop("date")
    assert fast == slow == (200, {"server": "uvicorn", "content-length": "2",
                                  "content-type": "application/json"}, b"{}")  # fmt: skip
    steps = served.store.get_metric_history(served.run_id, "loss").steps
    assert steps == [0, 1]


def test_errors_are_the_apps(served: Served) -> None:
    missing = "/api/v1/runs/" + "f" * 32 + "/log-batch"
    [(status, _, body)] = served.exchange(post(missing, {"metrics": [POINT]}))
    assert status == 404 and json.loads(body)["error_code"] == "RESOURCE_DOES_NOT_EXIST"
    path = f"/api/v1/runs/{served.run_id}/log-batch"
    [(status, _, body)] = served.exchange(post(path, b"{not json"))
    assert status == 400 and json.loads(body)["error_code"] == "INVALID_PARAMETER_VALUE"
    [(status, _, body)] = served.exchange(post(path, {"metrics": [{**POINT, "value": "high"}]}))
    assert status == 400 and "value" in json.loads(body)["message"]
    assert served.outcomes == ["NotFound", "RequestValidationError", "RequestValidationError"]
    assert served.store.get_metric_history(served.run_id, "loss").steps == []  # nothing half-stored


def test_a_value_past_the_float_range_is_the_apps_400(served: Served) -> None:
    path = f"/api/v1/runs/{served.run_id}/log-batch"
    for value in (b"1e400", b"1" + b"0" * 400):  # each would parse as infinity
        body = b'{"metrics": [{"key": "loss", "value": ' + value + b', "timestamp": 1}]}'
        [(status, _, answer)] = served.exchange(post(path, body))
        assert status == 400 and "float range" in json.loads(answer)["message"]
    assert served.outcomes == ["RequestValidationError"] * 2
    assert served.store.get_metric_history(served.run_id, "loss").steps == []


def test_pipelined_expect_continue_and_close(served: Served) -> None:
    path = f"/api/v1/runs/{served.run_id}/log-batch"
    three = b"".join(post(path, {"metrics": [{**POINT, "step": i}]}) for i in range(3))
    answers = served.exchange(three, answers=3)  # in one send: the 2nd and 3rd wait behind the 1st
    assert [(status, body) for status, _, body in answers] == [(200, b"{}")] * 3
    [(status, _, _)] = served.exchange(
        post(path, {"metrics": [{**POINT, "step": 3}]}, "Expect: 100-continue")
    )
    assert status == 200
    [(status, headers, _)] = served.exchange(
        post(path, {"metrics": [{**POINT, "step": 4}]}, "Connection: close")
    )
    assert status == 200 and headers["connection"] == "close"
    assert served.store.get_metric_history(served.run_id, "loss").steps == [0, 1, 2, 3, 4]
    assert served.outcomes == ["stored"] * 4  # the Expect: 100-continue one went to the app


def test_a_request_waiting_behind_one_the_app_answers(served: Served) -> None:
    missing = "/api/v1/runs/" + "f" * 32 + "/log-batch"
    path = f"/api/v1/runs/{served.run_id}/log-batch"
    both = post(missing, {"metrics": [POINT]}) + post(path, {"metrics": [POINT]})
    answers = served.exchange(both, answers=2)  # the 2nd is read whole while the app answers the 1st
    assert [status for status, _, _ in answers] == [404, 200]
    assert served.outcomes == ["NotFound", "stored"]
    assert served.store.get_metric_history(served.run_id, "loss").steps == [0]
