"""uvicorn's HTTP protocol with TCP_NODELAY on every accepted connection, and one send per response.

With more than one worker, uvicorn hands the workers a listening socket created without IPPROTO_TCP, so
asyncio does not set TCP_NODELAY on accepted connections: each small keep-alive response then waits ~40 ms
for the client's delayed ACK (measured here: 0.6 ms per request with 1 worker, 44 ms with 2).

uvicorn writes a response's head and its body separately: two sends, two packets (TCP_NODELAY), and the
client woken twice. `_OneSendTransport` gathers the writes made in one turn of the event loop (a small
response's head and body are written without the handler yielding in between) and sends them together at
the end of that turn, or as soon as they reach `FLUSH_BYTES` (a big body streams as before, under the
transport's own flow control)."""

from __future__ import annotations

import asyncio
import socket
from contextlib import suppress
from typing import Any

try:  # the faster parser when installed (uvicorn[standard]), the pure-Python one otherwise
    from uvicorn.protocols.http.httptools_impl import STATUS_LINE
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - depends on the environment
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base  # type: ignore[assignment]

    STATUS_LINE = {}
from uvicorn.protocols.http.flow_control import (
    HIGH_WATER_LIMIT as _BODY_LIMIT,  # bodies that never pause reads
)

FLUSH_BYTES = 64 * 1024


class _OneSendTransport:
    """A transport that sends what was written in one event-loop turn at the end of it, in one write."""

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport, self._loop = transport, loop
        self._pending: list[bytes] = []
        self._size = 0

    def write(self, data: bytes) -> None:
        if not self._pending:
            self._loop.call_soon(self._flush)
        self._pending.append(data)
        self._size += len(data)
        if self._size >= FLUSH_BYTES:
            self._flush()

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _flush(self) -> None:
        if self._pending:
            data = b"".join(self._pending) if len(self._pending) > 1 else self._pending[0]
            self._pending.clear()
            self._size = 0
            if not self._transport.is_closing():
                self._transport.write(data)

    def close(self) -> None:
        self._flush()
        self._transport.close()

    def write_eof(self) -> None:
        self._flush()
        self._transport.write_eof()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size() + self._size

    def __getattr__(self, name: str) -> Any:  # everything else as the real transport does it
        return getattr(self._transport, name)


class NoDelayHttpProtocol(_Base):
    """Also: a small log-batch POST that the app's front (`hot_routes.HotRoutes.run_to_log_now`) can store
    without the ASGI app is stored when its body is complete and answered here: no task, scope messages,
    Request or Response (about a third of a one-point request's server time, measured). If storing raises,
    the request goes to the app as uvicorn would send it, and the app answers it, errors included (the
    store rolled the batch back). Requests behind another (pipelined) and `Expect: 100-continue` ones take
    uvicorn's path; so does everything on a uvicorn without the `_start_asgi_task` hook."""

    _deferred: tuple[Any, Any, str] | None = None  # (cycle, app, run id) waiting for its body

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(_OneSendTransport(transport, self.loop))  # type: ignore[arg-type]

    def _start_asgi_task(self, cycle: Any, app: Any) -> None:
        find = getattr(app, "run_to_log_now", None)
        run_id = find(cycle.scope, _BODY_LIMIT) if find is not None else None
        if run_id is None or cycle.waiting_for_100_continue or self.pipeline:
            super()._start_asgi_task(cycle, app)
        elif cycle.more_body:
            self._deferred = (cycle, app, run_id)  # answered once its body is complete
        else:
            self._log_now(cycle, app, run_id)  # a pipelined request, read whole while it waited

    def on_message_complete(self) -> None:
        super().on_message_complete()
        deferred, self._deferred = self._deferred, None
        if deferred is not None:
            self._log_now(*deferred)

    def _log_now(self, cycle: Any, app: Any, run_id: str) -> None:
        try:
            body = app.log_now(run_id, cycle.body)
        except Exception:
            super()._start_asgi_task(cycle, app)  # the app answers (the same error, in its own format)
            return
        head = [STATUS_LINE[200], *(b"%s: %s\r\n" % pair for pair in self.server_state.default_headers)]
        head.append(b"content-length: %d\r\ncontent-type: application/json\r\n" % len(body))
        if not cycle.keep_alive:
            head.append(b"connection: close\r\n")
        self.transport.write(b"".join((*head, b"\r\n", body)))
        cycle.response_started = cycle.response_complete = True
        if not cycle.keep_alive:
            self.transport.close()
        self.on_response_complete()  # as the cycle does after a response: keep-alive timer, next request
