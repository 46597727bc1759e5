"""Deployment records from the SDK: the store for a tracking URI, and `DeploymentRecorder`, which a model
server uses to record its deployment (traffic split, state, rollout history) without ever waiting on it.

    recorder = DeploymentRecorder.start(
        "iris", [{"model_name": "iris", "version": 3, "percent": 100}], "http://10.0.0.5:8080",
        info={"host": "10.0.0.5", "pid": os.getpid()},
    )
    recorder.traffic_changed([{"model_name": "iris", "version": 3, "percent": 90},
                              {"model_name": "iris", "version": 4, "percent": 10, "role": "canary"}],
                             "canary at 10%", state="ROLLING_OUT")
    recorder.event("promoted", "v4 passed its guards", error_rate=0.001)
    recorder.stop("SIGTERM")

On a database URI the records go straight to the tracking database; on http(s):// through the server's
REST API (as MODELYARD_TOKEN's user, who needs EDIT on the models served).
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from types import TracebackType
from typing import Any

from modelyard import config
from modelyard.errors import AlreadyExists, ModelyardError
from modelyard.schemas.deployments import (
    Deployment,
    DeploymentState,
    DeploymentTarget,
    EventKind,
    TrafficEntry,
)
from modelyard.store.deployments import (
    DeploymentStore,
    parse_kind,
    parse_state,
    parse_target,
    validate_traffic,
)

log = logging.getLogger("modelyard.deployments")
RECORDER_RETRIES = 2  # a REST recorder gives up on an unreachable server after ~1 s, not after a minute
QUEUE_SIZE = 10_000
HEARTBEAT_S = 30.0  # how often a running recorder says its model server is alive


def deployment_store_for(tracking_uri: str | None = None, retries: int | None = None) -> DeploymentStore:
    """Deployment records in the database itself (sharing this process's tracking store and its connection
    pool), or through a server's REST API (as MODELYARD_TOKEN's user). `retries`: of a REST call whose
    server cannot be reached (default: the REST client's)."""
    uri = tracking_uri or config.tracking_uri()
    if uri.startswith(("http://", "https://")):
        from modelyard.store.rest_deployments import RestDeploymentStore

        return RestDeploymentStore(uri, retries=retries)
    from modelyard.errors import InvalidArgument
    from modelyard.store.registry import tracking_store_for
    from modelyard.store.sql.deployments import SqlDeploymentStore
    from modelyard.store.sql.store import SqlTrackingStore

    tracking = tracking_store_for(uri)
    if not isinstance(tracking, SqlTrackingStore):
        raise InvalidArgument(f"The store at {uri!r} keeps no deployment records.")
    return SqlDeploymentStore(tracking)


_WRITE, _FLUSH, _STOP = "write", "flush", "stop"  # what the recorder's queue holds


class DeploymentRecorder:
    """Records one deployment, from a model server, in the background.

    Every method returns at once: it updates what the recorder holds (`traffic`, `state`) and queues the
    write for one daemon thread, which sends the writes in order. A write that fails (server down, no
    rights, a refused split) is logged as a warning and dropped; the recorder keeps going, and if the
    deployment itself could not be created yet, it tries again before the next write. The deployment's
    id is chosen here (`deployment_id`), so it is known at once and a retried create is harmless. The queue
    holds 10,000 writes; past that, writes are dropped with a warning rather than waiting.

    `stop()` and `failed()` record the end; `stop()` (and `close()`) then wait up to `timeout` seconds for
    the queued writes, so a server shutting down leaves its last state recorded. Use it as a context
    manager to stop on exit (failed, when an exception leaves the block).

    While it runs, the thread sends a heartbeat every `heartbeat_s` seconds (noted in the record's
    `info["heartbeat_s"]`): a server killed before it could record its stop leaves a record that
    `Deployment.silent_for` (and `modelyard deployments list`) shows as silent. `heartbeat_s=None`: none.

    `background=False` writes in the caller's thread instead (still logging, never raising, and without
    heartbeats), for scripts.
    """

    def __init__(
        self,
        name: str,
        traffic: Iterable[TrafficEntry | Mapping[str, Any]],
        endpoint: str,
        target: DeploymentTarget | str = DeploymentTarget.LOCAL,
        info: Mapping[str, Any] | None = None,
        state: DeploymentState | str = DeploymentState.RUNNING,
        message: str = "",
        tracking_uri: str | None = None,
        store: DeploymentStore | None = None,
        background: bool = True,
        deployment_id: str | None = None,
        heartbeat_s: float | None = HEARTBEAT_S,
    ) -> None:
        self.deployment_id = deployment_id or secrets.token_hex(8)
        self._heartbeat_s = heartbeat_s if background and heartbeat_s else None
        self.name, self.endpoint = name, endpoint
        self.traffic: list[TrafficEntry] = []
        self.state = DeploymentState.STARTING
        self._tracking_uri, self._store, self._owns_store = tracking_uri, store, store is None
        self._created = False
        self._create: dict[str, Any] = {}
        self._closed = False
        self._lock = threading.Lock()
        self._queue: queue.Queue[Any] | None = queue.Queue(QUEUE_SIZE) if background else None
        self._thread: threading.Thread | None = None
        try:
            self.traffic = validate_traffic(traffic)
            self.state = parse_state(state)
            details = dict(info or {})
            if self._heartbeat_s is not None:
                details["heartbeat_s"] = self._heartbeat_s
            self._create = {
                "name": name, "endpoint": endpoint, "traffic": self.traffic, "target": parse_target(target),
                "state": self.state, "info": details, "message": message,
                "deployment_id": self.deployment_id,
            }  # fmt: skip
        except ModelyardError as exc:
            log.warning("Not recording deployment %s of %r: %s", self.deployment_id, name, exc)
            self._closed = True
            return
        if self._queue is not None:
            self._thread = threading.Thread(
                target=self._work, name=f"modelyard-deployment-{self.deployment_id}", daemon=True
            )
            self._thread.start()
        self._submit(self._do_create)

    @classmethod
    def start(
        cls,
        name: str,
        traffic: Iterable[TrafficEntry | Mapping[str, Any]],
        endpoint: str,
        target: DeploymentTarget | str = DeploymentTarget.LOCAL,
        info: Mapping[str, Any] | None = None,
        **options: Any,
    ) -> DeploymentRecorder:
        """Record a new deployment of the served model `name` at `endpoint` (state RUNNING unless
        `state=` says otherwise). Options: state, message, tracking_uri, store, background, deployment_id,
        heartbeat_s."""
        return cls(name, traffic, endpoint, target, info, **options)

    # what a model server calls ---------------------------------------------------------------------------
    def traffic_changed(
        self,
        traffic: Iterable[TrafficEntry | Mapping[str, Any]],
        message: str = "",
        kind: EventKind | str | None = None,
        state: DeploymentState | str | None = None,
        **details: Any,
    ) -> None:
        """The split moved (kind traffic_changed, or promoted / rolled_back when a rollout says so)."""
        try:
            split = validate_traffic(traffic)
            new_state = parse_state(state) if state is not None else None
            chosen = parse_kind(kind) if kind is not None else None
        except ModelyardError as exc:
            log.warning("Not recording a traffic change of deployment %s: %s", self.deployment_id, exc)
            return
        self.traffic = split
        if new_state is not None:
            self.state = new_state
        self._update(traffic=split, state=new_state, message=message, kind=chosen, details=details)

    def set_state(self, state: DeploymentState | str, message: str = "", **details: Any) -> None:
        """E.g. RUNNING once the models answer, ROLLING_OUT while a rollout moves traffic."""
        try:
            self.state = parse_state(state)
        except ModelyardError as exc:
            log.warning("Not recording a state of deployment %s: %s", self.deployment_id, exc)
            return
        self._update(state=self.state, message=message, details=details)

    def event(self, kind: EventKind | str, message: str = "", **details: Any) -> None:
        """A note, or a promoted / rolled_back event (with no traffic change). `stopped` and `failed` end
        the deployment as `stop()` and `failed()` do; a traffic change goes through `traffic_changed`."""
        try:
            chosen = parse_kind(kind)
        except ModelyardError as exc:
            log.warning("Not recording an event of deployment %s: %s", self.deployment_id, exc)
            return
        if chosen is EventKind.STOPPED:
            self.stop(message, **details)
        elif chosen is EventKind.FAILED:
            self.failed(message, **details)
        elif chosen in (EventKind.STARTED, EventKind.TRAFFIC_CHANGED):
            log.warning(
                "Not recording a %s event of deployment %s: use traffic_changed() (or set_state()).",
                chosen.value,
                self.deployment_id,
            )
        else:
            self._submit(
                lambda store: store.add_event(self.deployment_id, chosen, message, details, self._user)
            )

    def failed(self, message: str = "", **details: Any) -> None:
        """The deployment cannot serve (it may recover: `set_state("RUNNING")`)."""
        self.state = DeploymentState.FAILED
        self._update(state=DeploymentState.FAILED, message=message, kind=EventKind.FAILED, details=details)

    def stop(self, message: str = "", timeout: float = 5.0, **details: Any) -> None:
        """Record the end (state STOPPED), then wait up to `timeout` s for the queued writes and finish."""
        if self._closed:
            return
        self.state = DeploymentState.STOPPED
        self._update(state=DeploymentState.STOPPED, message=message, kind=EventKind.STOPPED, details=details)
        self.close(timeout)

    def flush(self, timeout: float = 5.0) -> bool:
        """Wait up to `timeout` s until every queued write is done; whether they all are."""
        if self._queue is None or self._thread is None or not self._thread.is_alive():
            return True
        done = threading.Event()
        try:
            self._queue.put((_FLUSH, done), timeout=timeout)
        except queue.Full:
            return False
        return done.wait(timeout)

    def close(self, timeout: float = 5.0) -> None:
        """Finish the queued writes (up to `timeout` s) and end the thread; later calls record nothing."""
        if self._closed:
            return
        self._closed = True
        if self._queue is not None and self._thread is not None:
            try:
                self._queue.put((_STOP, None), timeout=timeout)
            except queue.Full:
                pass
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("Deployment %s: queued writes left unrecorded at close.", self.deployment_id)
                return  # the thread still uses the store; it dies with the process
        if self._store is not None and self._owns_store:
            self._store.close()

    def __enter__(self) -> DeploymentRecorder:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc is not None:
            self.failed(f"{type(exc).__name__}: {exc}"[:2000])
        self.stop("" if exc is None else "stopped after a failure")

    def __repr__(self) -> str:
        return f"DeploymentRecorder({self.deployment_id!r}, name={self.name!r}, state={self.state.value})"

    # the writes ------------------------------------------------------------------------------------------
    @property
    def _user(self) -> str | None:
        from modelyard.registry.client import current_user

        return current_user()

    def _update(self, **change: Any) -> None:
        details = change.pop("details", None) or {}
        self._submit(
            lambda store: store.update_deployment(
                self.deployment_id, details=details, user=self._user, **change
            )
        )

    def _submit(self, write: Callable[[DeploymentStore], Any]) -> None:
        if self._closed:
            log.debug("Deployment %s is closed; not recording more.", self.deployment_id)
            return
        if self._queue is None:
            self._run(write)
            return
        try:
            self._queue.put_nowait((_WRITE, write))
        except queue.Full:
            log.warning(
                "Deployment %s: %d writes queued already; dropping one.", self.deployment_id, QUEUE_SIZE
            )

    def _work(self) -> None:
        assert self._queue is not None
        interval = self._heartbeat_s
        beat_at = time.monotonic() + interval if interval is not None else None
        while True:
            try:
                wait = None if beat_at is None else max(0.0, beat_at - time.monotonic())
                what, item = self._queue.get(timeout=wait)
            except queue.Empty:  # time for a heartbeat (only while no write is queued: a write says as much)
                assert interval is not None
                if not self.state.is_final:
                    self._run(lambda store: store.heartbeat(self.deployment_id))
                beat_at = time.monotonic() + interval
                continue
            if what is _STOP:
                return
            if what is _FLUSH:
                item.set()
            else:
                self._run(item)

    def _run(self, write: Callable[[DeploymentStore], Any]) -> None:
        try:
            store = self._open()
            if write != self._do_create and not self._created:
                self._do_create(store)
            write(store)
        except Exception as exc:  # never let recording fail the model server
            reason = exc.message if isinstance(exc, ModelyardError) else repr(exc)
            log.warning("Could not record deployment %s of %r: %s", self.deployment_id, self.name, reason)

    def _open(self) -> DeploymentStore:
        with self._lock:
            if self._store is None:
                self._store = deployment_store_for(self._tracking_uri, retries=RECORDER_RETRIES)
            return self._store

    def _do_create(self, store: DeploymentStore) -> Deployment | None:
        if self._created:
            return None
        try:
            created = store.create_deployment(**self._create, user=self._user)
        except AlreadyExists:  # a create that reached the server before its answer was lost
            created = None
        self._created = True
        return created


__all__ = ["DeploymentRecorder", "deployment_store_for"]
