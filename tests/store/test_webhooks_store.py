"""Webhooks on the SQL store (SQLite and PostgreSQL): a real HTTP receiver on 127.0.0.1 checks signatures
and payloads of the deliveries that registry changes and finished runs cause; retries, the delivery log,
filters, test deliveries, and two dispatchers sharing one database."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from sqlalchemy import delete

from modelyard.errors import InvalidArgument, NotFound
from modelyard.registry.webhooks import WebhookDispatcher, sign, signed_request, verify_signature
from modelyard.schemas import RunStatus
from modelyard.schemas.webhooks import DeliveryState, WebhookPayload
from modelyard.store.sql.model_registry import SqlModelRegistryStore
from modelyard.store.sql.store import SqlTrackingStore
from modelyard.store.sql.tables import webhook_deliveries, webhooks
from modelyard.store.sql.webhooks import SqlWebhookStore, backoff_ms, validate_events

SECRET = "s3cret-s3cret-s3cret"


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    time: float

    @property
    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Receiver:
    """A real HTTP endpoint on 127.0.0.1: records every POST, answers with `plan` statuses in turn (then 200),
    optionally after `delay` seconds."""

    plan: list[int] = field(default_factory=list)
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)

    def __post_init__(self) -> None:
        receiver = self
        self._lock = threading.Lock()

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver._lock:
                    receiver.received.append(Received(self.path, dict(self.headers), body, time.monotonic()))
                    status = receiver.plan.pop(0) if receiver.plan else 200
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(status)
                self.send_header("Content-Type", "text/plain")
                self.end_headers()
                self.wfile.write(b"ok" if status < 300 else b"receiver broke")

            def log_message(self, *_: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while len(self.received) < count and time.monotonic() < deadline:
            time.sleep(0.02)
        return list(self.received)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def free_port_url() -> str:
    """A URL nothing listens on (connection refused at once)."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/down"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver()
    yield r
    r.close()


@pytest.fixture
def tracking(store_uri: str, tmp_path: Any) -> Iterator[SqlTrackingStore]:
    t = SqlTrackingStore(store_uri, default_artifact_root=(tmp_path / "artifacts").as_uri())
    with t._tx() as conn:  # the shared PostgreSQL test database keeps other tests' webhooks
        conn.execute(delete(webhook_deliveries))
        conn.execute(delete(webhooks))
    yield t
    t.close()


@pytest.fixture
def hooks(tracking: SqlTrackingStore) -> SqlWebhookStore:
    return SqlWebhookStore(tracking)


@pytest.fixture
def registry(tracking: SqlTrackingStore) -> SqlModelRegistryStore:
    return SqlModelRegistryStore(tracking)


def check_signed(r: Received, secret: str = SECRET) -> dict[str, Any]:
    assert r.headers["Content-Type"] == "application/json"
    assert verify_signature(secret, r.body, r.headers)
    assert not verify_signature("another-secret-value", r.body, r.headers)
    assert not verify_signature(secret, r.body + b" ", r.headers)
    payload = r.json
    assert r.headers["X-Modelyard-Event"] == payload["event"]["type"]
    assert r.headers["X-Modelyard-Delivery"] == str(payload["delivery_id"])
    WebhookPayload.model_validate(payload)
    return payload  # type: ignore[no-any-return]


# -- validation ----------------------------------------------------------------------------------------------


def test_create_validates_and_shows_the_secret_only_once(
    hooks: SqlWebhookStore, registry: SqlModelRegistryStore, tracking: SqlTrackingStore
) -> None:
    registry.create_registered_model("churn")
    for url in ("ftp://x/y", "http://", "not a url", "https://host:99999/", "javascript:alert(1)"):
        with pytest.raises(InvalidArgument, match="webhook URL"):
            hooks.create_webhook(url)
    with pytest.raises(InvalidArgument, match="Unknown event type"):
        hooks.create_webhook("https://example.com/h", ["model_version.exploded"])
    with pytest.raises(InvalidArgument, match="not both"):
        hooks.create_webhook("https://example.com/h", model_name="churn", experiment_id="0")
    with pytest.raises(NotFound, match="registered model"):
        hooks.create_webhook("https://example.com/h", model_name="nope")
    with pytest.raises(NotFound):
        hooks.create_webhook("https://example.com/h", experiment_id="4242")
    with pytest.raises(InvalidArgument, match="run events only"):
        hooks.create_webhook("https://example.com/h", ["model_version.created"], experiment_id="0")
    with pytest.raises(InvalidArgument, match="no run events"):
        hooks.create_webhook("https://example.com/h", ["run.finished"], model_name="churn")
    with pytest.raises(InvalidArgument, match="16 to 256"):
        hooks.create_webhook("https://example.com/h", secret="short")

    made = hooks.create_webhook(
        "https://example.com/h", ["model_version.*", "model_alias.set"], model_name="churn"
    )
    assert made.secret.startswith("whsec_") and len(made.secret) > 30
    got = hooks.get_webhook(made.webhook_id)
    assert got.events == ["model_version.*", "model_alias.set"] and got.model_name == "churn" and got.active
    assert "secret" not in got.model_dump() and "secret" not in hooks.list_webhooks()[0].model_dump()
    assert hooks.webhook_secret(made.webhook_id) == made.secret
    assert validate_events(["*", "run.failed"]) == ["*"]
    exp = tracking.create_experiment("nightly")
    on_exp = hooks.create_webhook("https://example.com/e", ["run.*"], experiment_id=exp)
    assert [h.webhook_id for h in hooks.list_webhooks(experiment_id=exp)] == [on_exp.webhook_id]
    assert [h.webhook_id for h in hooks.list_webhooks(model_name="churn")] == [made.webhook_id]
    hooks.delete_webhook(made.webhook_id)
    with pytest.raises(NotFound, match="webhooks list"):
        hooks.get_webhook(made.webhook_id)


def test_signatures_cover_the_timestamp_and_expire() -> None:
    payload = WebhookPayload(delivery_id=7, webhook_id="abc", event={"type": "run.finished"})
    body, headers = signed_request(SECRET, payload, timestamp=1_700_000_000)
    assert headers["X-Modelyard-Signature"] == sign(SECRET, body, 1_700_000_000)
    assert verify_signature(SECRET, body, headers, now=1_700_000_100)
    assert not verify_signature(SECRET, body, headers, now=1_700_000_000 + 301)  # replayed later
    moved = {**headers, "X-Modelyard-Timestamp": "1700000050"}  # a new timestamp breaks the signature
    assert not verify_signature(SECRET, body, moved, now=1_700_000_100)
    lower = {k.lower(): v for k, v in headers.items()}
    assert verify_signature(SECRET, body, lower, now=1_700_000_000)
    assert not verify_signature(SECRET, body, {}, now=1_700_000_000)
    assert [backoff_ms(n) for n in (1, 2, 3, 4)] == [1000, 2000, 4000, 8000] and backoff_ms(30) == 300_000


# -- deliveries ----------------------------------------------------------------------------------------------


def test_registry_changes_and_run_ends_are_delivered_signed(
    hooks: SqlWebhookStore, registry: SqlModelRegistryStore, tracking: SqlTrackingStore, receiver: Receiver
) -> None:
    registry.create_registered_model("churn")
    registry.create_registered_model("other")
    exp = tracking.create_experiment("nightly")
    on_model = hooks.create_webhook(receiver.url + "/model", model_name="churn", secret=SECRET)
    on_exp = hooks.create_webhook(receiver.url + "/exp", ["run.*"], experiment_id=exp, secret=SECRET)
    only_stages = hooks.create_webhook(
        receiver.url + "/stages", ["model_version.stage_changed"], secret=SECRET
    )

    run = tracking.create_run(exp, run_name="fit")
    registry.create_model_version("churn", f"runs:/{run.info.run_id}/model", run_id=run.info.run_id)
    registry.create_model_version("other", "file:///tmp/other")  # filtered out by the model webhook
    registry.transition_stage("churn", 1, "Staging")
    tracking.end_run(run.info.run_id, RunStatus.FINISHED)
    other_run = tracking.create_run("0")
    tracking.end_run(other_run.info.run_id, RunStatus.FAILED)  # another experiment: filtered out

    stats = WebhookDispatcher(hooks).drain(max_s=20)
    assert stats.pending == 0 and stats.failed == 0
    by_path: dict[str, list[dict[str, Any]]] = {}
    for r in sorted(receiver.wait_for(4), key=lambda r: r.json["event"]["event_id"]):
        by_path.setdefault(r.path, []).append(check_signed(r))
    model_events = [p["event"] for p in by_path["/hook/model"]]
    assert [e["type"] for e in model_events] == ["model_version.created", "model_version.stage_changed"]
    assert model_events[0]["name"] == "churn" and model_events[0]["version"] == 1
    assert model_events[1]["payload"]["to_stage"] == "Staging" or "Staging" in json.dumps(model_events[1])
    assert all(p["webhook_id"] == on_model.webhook_id for p in by_path["/hook/model"])
    (finished,) = by_path["/hook/exp"]
    assert finished["event"]["type"] == "run.finished" and finished["event"]["run_id"] == run.info.run_id
    assert finished["event"]["experiment_id"] == exp and finished["webhook_id"] == on_exp.webhook_id
    assert [p["event"]["type"] for p in by_path["/hook/stages"]] == ["model_version.stage_changed"]
    assert len(receiver.received) == 4
    log = hooks.list_deliveries(only_stages.webhook_id)
    assert [(d.state, d.attempts, d.last_status, d.event_type) for d in log] == [
        (DeliveryState.DELIVERED, 1, 200, "model_version.stage_changed")
    ]
    assert log[0].delivered_time is not None and log[0].last_duration_ms is not None
    assert WebhookDispatcher(hooks).run_once() == 0  # nothing is sent twice


def test_a_failing_receiver_is_retried_with_backoff_and_logged_per_attempt(
    hooks: SqlWebhookStore, registry: SqlModelRegistryStore, receiver: Receiver
) -> None:
    receiver.plan = [500, 503]
    hook = hooks.create_webhook(receiver.url, secret=SECRET)
    registry.create_registered_model("churn")
    dispatcher = WebhookDispatcher(hooks, interval_s=0.05)
    assert dispatcher.run_once() == 1
    (first,) = hooks.list_deliveries(hook.webhook_id)
    assert (first.state, first.attempts, first.last_status) == (DeliveryState.PENDING, 1, 500)
    assert "receiver broke" in (first.last_error or "")
    assert first.next_attempt_time is not None and first.next_attempt_time - first.created_time >= 900
    assert dispatcher.run_once() == 0  # not due before its backoff
    stats = dispatcher.drain(max_s=20)
    assert stats.delivered == 1 and stats.retrying == 2
    (done,) = hooks.list_deliveries(hook.webhook_id)
    assert (done.state, done.attempts, done.last_status, done.last_error) == (
        DeliveryState.DELIVERED,
        3,
        200,
        None,
    )
    times = [r.time for r in receiver.wait_for(3)]
    assert len(times) == 3
    assert times[1] - times[0] >= 0.9 and times[2] - times[1] >= 1.9  # 1 s, then 2 s
    assert len({r.json["delivery_id"] for r in receiver.received}) == 1  # the same delivery, retried


def test_attempts_run_out_and_the_delivery_fails(
    tracking: SqlTrackingStore, registry: SqlModelRegistryStore
) -> None:
    hooks = SqlWebhookStore(tracking, max_attempts=3, backoff_base_ms=20)
    hook = hooks.create_webhook(free_port_url(), secret=SECRET)
    registry.create_registered_model("churn")
    stats = WebhookDispatcher(hooks, interval_s=0.02).drain(max_s=20)
    assert (stats.failed, stats.retrying, stats.pending) == (1, 2, 0)
    (gone,) = hooks.list_deliveries(hook.webhook_id)
    assert (gone.state, gone.attempts, gone.last_status) == (DeliveryState.FAILED, 3, None)
    assert gone.last_error and "Connect" in gone.last_error and gone.next_attempt_time is None


def test_an_unreachable_or_slow_receiver_never_slows_the_write(
    hooks: SqlWebhookStore, registry: SqlModelRegistryStore, tracking: SqlTrackingStore
) -> None:
    slow = Receiver(delay=2.0)
    try:
        hooks.create_webhook(free_port_url(), secret=SECRET)
        hooks.create_webhook(slow.url, secret=SECRET)
        dispatcher = WebhookDispatcher(hooks, interval_s=0.05, timeout_s=5.0).start()
        try:
            registry.create_registered_model("churn")
            slow.wait_for(1, timeout=5)  # the dispatcher is now stuck on the slow receiver
            for i in range(5):
                started = time.perf_counter()
                registry.set_registered_model_tag("churn", "k", str(i))
                run = tracking.create_run("0")
                tracking.end_run(run.info.run_id, RunStatus.FINISHED)
                assert time.perf_counter() - started < 1.0
            stopping = time.perf_counter()
        finally:
            dispatcher.stop(drain_s=1.0)
        assert time.perf_counter() - stopping < 1.0 + 5.0 + 1.5  # stop() is bounded too
    finally:
        slow.close()


def test_filters_on_event_types_and_renamed_models(
    hooks: SqlWebhookStore, registry: SqlModelRegistryStore, receiver: Receiver
) -> None:
    registry.create_registered_model("churn")
    aliases = hooks.create_webhook(receiver.url, ["model_alias.*"], model_name="churn", secret=SECRET)
    registry.create_model_version("churn", "file:///m")
    registry.set_alias("churn", "champion", 1)
    registry.rename_registered_model("churn", "churn-v2")
    registry.set_alias("churn-v2", "challenger", 1)
    WebhookDispatcher(hooks).drain(max_s=10)
    events = [check_signed(r)["event"] for r in receiver.wait_for(2)]
    assert [(e["type"], e["payload"].get("alias")) for e in events] == [
        ("model_alias.set", "champion"),
        ("model_alias.set", "challenger"),
    ]
    assert hooks.get_webhook(aliases.webhook_id).model_name == "churn-v2"  # it follows the model


def test_disabled_webhooks_skip_events_until_enabled(
    hooks: SqlWebhookStore, registry: SqlModelRegistryStore, receiver: Receiver
) -> None:
    hook = hooks.create_webhook(receiver.url, secret=SECRET)
    assert hooks.update_webhook(hook.webhook_id, active=False).active is False
    registry.create_registered_model("while-off")
    dispatcher = WebhookDispatcher(hooks)
    assert dispatcher.drain(max_s=5).pending == 0 and receiver.received == []
    hooks.update_webhook(
        hook.webhook_id, active=True, events=["registered_model.*"], url=receiver.url + "/v2"
    )
    registry.create_registered_model("while-on")
    dispatcher.drain(max_s=10)
    (got,) = receiver.wait_for(1)
    assert got.path == "/hook/v2" and check_signed(got)["event"]["name"] == "while-on"
    with pytest.raises(InvalidArgument):
        hooks.update_webhook(hook.webhook_id, url="gopher://x")


def test_test_delivery_is_sent_now_and_logged(hooks: SqlWebhookStore, receiver: Receiver) -> None:
    hook = hooks.create_webhook(receiver.url, secret=SECRET)
    dispatcher = WebhookDispatcher(hooks)
    done = dispatcher.send_test(hook.webhook_id)
    assert (done.state, done.attempts, done.last_status, done.event_type) == (
        DeliveryState.DELIVERED, 1, 200, "webhook.test",
    )  # fmt: skip
    (got,) = receiver.wait_for(1)
    payload = check_signed(got)
    assert payload["event"]["type"] == "webhook.test" and payload["delivery_id"] == done.delivery_id
    receiver.plan = [500]
    failed = dispatcher.send_test(hook.webhook_id)
    assert (failed.state, failed.attempts, failed.last_status) == (DeliveryState.FAILED, 1, 500)  # no retry
    assert [d.delivery_id for d in hooks.list_deliveries(hook.webhook_id)] == [
        failed.delivery_id,
        done.delivery_id,
    ]
    assert dispatcher.run_once() == 0
    with pytest.raises(NotFound):
        dispatcher.send_test("nope")


def test_two_dispatchers_on_one_database_deliver_each_event_once(
    store_uri: str, hooks: SqlWebhookStore, registry: SqlModelRegistryStore, receiver: Receiver
) -> None:
    hook = hooks.create_webhook(receiver.url, secret=SECRET)
    second = SqlWebhookStore(SqlTrackingStore(store_uri))  # its own engines, as another worker has
    one = WebhookDispatcher(hooks, interval_s=0.01).start()
    two = WebhookDispatcher(second, interval_s=0.01).start()
    try:
        for i in range(20):
            registry.create_registered_model(f"m{i}")
        got = receiver.wait_for(20, timeout=20)
        time.sleep(1.0)  # a duplicate would arrive within this
    finally:
        one.stop()
        two.stop()
        second._tracking.close()
    assert len(got) == 20 and len(receiver.received) == 20
    assert sorted(check_signed(r)["event"]["name"] for r in got) == sorted(f"m{i}" for i in range(20))
    log = hooks.list_deliveries(hook.webhook_id, limit=100)
    assert len(log) == 20 and all(d.state is DeliveryState.DELIVERED and d.attempts == 1 for d in log)
    assert one.stats.delivered + two.stats.delivered == 20


def test_deleting_a_webhook_drops_its_log(hooks: SqlWebhookStore, registry: SqlModelRegistryStore) -> None:
    hook = hooks.create_webhook(free_port_url(), secret=SECRET)
    registry.create_registered_model("churn")
    assert hooks.enqueue() == 1 and hooks.pending_count() == 1
    hooks.delete_webhook(hook.webhook_id)
    assert hooks.pending_count() == 0 and hooks.due() == []
    with pytest.raises(NotFound):
        hooks.list_deliveries(hook.webhook_id)
