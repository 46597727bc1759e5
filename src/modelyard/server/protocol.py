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
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - depends on the environment
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base  # type: ignore[assignment]


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
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            with suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        super().connection_made(_OneSendTransport(transport, self.loop))  # type: ignore[arg-type]
