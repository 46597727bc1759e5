"""Running a model server for `modelyard serve` and `modelyard rollout`: the listening socket is bound first
(a busy port is one error line before anything is loaded, announced or recorded), then uvicorn serves on it
while the deployment is recorded in the tracking store."""

from __future__ import annotations

import errno
import gc
import signal
import socket
import threading
from dataclasses import dataclass
from typing import Any

BACKLOG = 2048  # uvicorn's default


@dataclass
class Listener:
    """A bound, listening socket and the address it was asked for."""

    sock: socket.socket
    host: str
    port: int

    @property
    def url(self) -> str:
        return f"http://[{self.host}]:{self.port}" if ":" in self.host else f"http://{self.host}:{self.port}"

    def close(self) -> None:
        self.sock.close()


def listen(host: str, port: int) -> Listener:
    """Bind and listen on host:port now, or raise a one-line error. Listening at once keeps the port ours
    while the model loads (a client that connects meanwhile waits in the backlog instead of being refused)."""
    from modelyard.errors import InvalidArgument, Unavailable

    family = socket.AF_INET6 if ":" in host else socket.AF_INET  # as uvicorn picks it
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # rebinding right after a restart (TIME_WAIT)
    try:
        sock.bind((host, port))
        sock.listen(BACKLOG)
    except OSError as exc:
        sock.close()
        where = f"Cannot serve on {host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            raise Unavailable(
                f"{where}: the port is in use (another server?). Stop it, or pick another port with --port."
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise InvalidArgument(f"{where}: {host} is not an address of this machine (--host).") from None
        if exc.errno == errno.EACCES:
            raise InvalidArgument(f"{where}: permission denied (ports below 1024 need privileges).") from None
        if isinstance(exc, socket.gaierror):
            raise InvalidArgument(f"{where}: unknown host {host!r} (--host).") from None
        raise Unavailable(f"{where}: {exc.strerror or exc}.") from None
    return Listener(sock, host, port)


def run_recorded(
    app: Any,
    deployment: Any,
    name: str,
    listener: Listener,
    *,
    record: bool,
    info: dict[str, Any] | None = None,
    started: Any = None,
) -> None:
    """`run_server`, with the deployment of `name` recorded in the tracking store (`record`) from start to
    stop, every change of its routing in between (see serving/recording.py)."""
    if not record:
        return run_server(app, listener, started)
    from modelyard.serving.recording import DeploymentLog, endpoint_for

    log = DeploymentLog.start(deployment, name, endpoint_for(listener.host, listener.port), info)
    try:
        run_server(app, listener, started)
    except SystemExit:
        log.failed(f"could not serve on {listener.host}:{listener.port}")
        raise
    finally:
        log.stop()


def run_server(app: Any, listener: Listener, started: Any = None) -> None:
    """Serve `app` with uvicorn on `listener` until SIGINT/SIGTERM, or until `server.should_exit` is set: one
    worker with TCP_NODELAY (see DESIGN: pitfalls), 30 s to answer what is in flight at shutdown. `started`
    is given the uvicorn `Server` before it runs (to stop it from a background task)."""
    import uvicorn

    from modelyard.server.protocol import NoDelayHttpProtocol

    config = uvicorn.Config(
        app,
        host=listener.host,
        port=listener.port,
        http=NoDelayHttpProtocol,
        log_level="warning",
        access_log=False,
        proxy_headers=False,  # no access log and no client addresses used: one middleware less per request
        timeout_graceful_shutdown=30,
        backlog=BACKLOG,
    )
    server = uvicorn.Server(config)
    if started is not None:
        started(server)
    # The model and its libraries are loaded: keep them out of the collector's full passes, which otherwise
    # walk them again and again under load (pauses of up to 350 ms measured with a torch model).
    gc.collect()
    gc.freeze()
    # uvicorn re-raises SIGTERM once it has shut down gracefully, which would end the process before the
    # command's own clean-up (the deployment record's stop): the handler it restores and re-raises to only
    # asks the server to exit, as uvicorn's own does.
    main = threading.current_thread() is threading.main_thread()
    previous = (
        signal.signal(signal.SIGTERM, lambda *_: setattr(server, "should_exit", True)) if main else None
    )
    try:
        server.run(sockets=[listener.sock])
    except KeyboardInterrupt:
        pass
    finally:
        if main:
            signal.signal(signal.SIGTERM, previous)
        listener.close()
    if not server.started:
        raise SystemExit(3)  # uvicorn logged why
