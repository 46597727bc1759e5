"""Webhook deliveries: signed HTTP POSTs of registry and run events, sent by a background dispatcher.

Every delivery is a JSON body (see `WebhookPayload`) with these headers:

    X-Modelyard-Event: model_version.stage_changed
    X-Modelyard-Delivery: 42
    X-Modelyard-Timestamp: 1718000000            (Unix seconds, when this attempt was sent)
    X-Modelyard-Signature: sha256=<hex>          (HMAC-SHA256 of "<timestamp>.<raw body>" with the secret)

Receivers check them with `verify_signature(secret, body, headers)`: it recomputes the HMAC over the raw
bytes received and refuses timestamps older than 5 minutes, so a captured request cannot be replayed later.

The dispatcher never runs inside a write: it reads the events that writes left in the database, so a slow
or unreachable receiver never blocks or fails a registry change. The tracking server runs one per worker;
with the embedded store (no server) run `modelyard webhooks deliver` (or `drain()`) to send what is queued.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING

from modelyard import __version__, config
from modelyard.errors import NotFound
from modelyard.schemas.webhooks import WebhookDelivery, WebhookPayload

if TYPE_CHECKING:
    import httpx

    from modelyard.store.rest_webhooks import RestWebhookStore
    from modelyard.store.sql.webhooks import DueDelivery, SqlWebhookStore

log = logging.getLogger("modelyard.webhooks")

SIGNATURE_HEADER = "X-Modelyard-Signature"
TIMESTAMP_HEADER = "X-Modelyard-Timestamp"
EVENT_HEADER = "X-Modelyard-Event"
DELIVERY_HEADER = "X-Modelyard-Delivery"
TOLERANCE_S = 300  # how old a signed timestamp may be when it is verified


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The X-Modelyard-Signature value: 'sha256=' + hex HMAC-SHA256 of b'<timestamp>.' + body."""
    digest = hmac.new(secret.encode(), f"{int(timestamp)}.".encode() + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def verify_signature(
    secret: str,
    body: bytes,
    headers: Mapping[str, str],
    tolerance_s: float = TOLERANCE_S,
    now: float | None = None,
) -> bool:
    """True when `body` (the raw bytes received) was signed with `secret` within `tolerance_s` seconds.

    `headers` may be any mapping (e.g. a framework's case-insensitive headers, or a plain dict).

        from modelyard.registry.webhooks import verify_signature

        if not verify_signature(SECRET, request_body_bytes, request.headers):
            return 401
    """
    lower = {str(k).lower(): str(v) for k, v in headers.items()}
    signature = lower.get(SIGNATURE_HEADER.lower(), "")
    stamp = lower.get(TIMESTAMP_HEADER.lower(), "")
    if not signature.startswith("sha256=") or not stamp.isdigit():
        return False
    now = time.time() if now is None else now
    if abs(now - int(stamp)) > tolerance_s:
        return False
    return hmac.compare_digest(sign(secret, body, int(stamp)), signature)


def signed_request(
    secret: str, payload: WebhookPayload, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    """(body, headers) of one delivery attempt."""
    body = payload.model_dump_json().encode()
    stamp = int(time.time()) if timestamp is None else int(timestamp)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": f"modelyard-webhooks/{__version__}",
        EVENT_HEADER: str(payload.event.get("type", "")),
        DELIVERY_HEADER: str(payload.delivery_id),
        TIMESTAMP_HEADER: str(stamp),
        SIGNATURE_HEADER: sign(secret, body, stamp),
    }
    return body, headers


@dataclass
class DrainStats:
    delivered: int = 0
    failed: int = 0  # gave up (every attempt failed)
    retrying: int = 0  # attempts that failed and will be retried
    pending: int = 0  # still queued when drain() returned


class WebhookDispatcher:
    """Sends due deliveries from a background thread, polling the database every `interval_s` seconds.

    Nothing it does raises into its caller: failures of the database or of receivers are logged, and the
    deliveries they concern are retried. Several dispatchers (server workers, processes) may share one
    database: each delivery is claimed by one of them per attempt.
    """

    def __init__(
        self,
        store: SqlWebhookStore,
        interval_s: float = 0.5,
        timeout_s: float = 5.0,
        concurrency: int = 4,
        client: httpx.Client | None = None,
    ) -> None:
        self.store, self.interval_s, self.timeout_s = store, interval_s, timeout_s
        self._concurrency = max(1, concurrency)
        self._client = client  # made on the first delivery when not given: a server starts without httpx
        self._owns_http = client is None
        self._pool: ThreadPoolExecutor | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._drain_s = 5.0
        self._lock = threading.Lock()
        self.stats = DrainStats()

    @property
    def _http(self) -> httpx.Client:
        with self._lock:
            if self._client is None:
                import httpx

                limits = httpx.Limits(
                    max_connections=4 * self._concurrency, max_keepalive_connections=self._concurrency
                )
                self._client = httpx.Client(timeout=self.timeout_s, follow_redirects=False, limits=limits)
            return self._client

    # one delivery ----------------------------------------------------------------------------------------
    def attempt(self, due: DueDelivery, retry: bool = True) -> WebhookDelivery | None:
        """Send one signed attempt and log it; the delivery as recorded (None if that failed too)."""
        payload = WebhookPayload(
            delivery_id=due.delivery_id, webhook_id=due.webhook_id, event=due.event.model_dump(mode="json")
        )
        body, headers = signed_request(due.secret, payload)
        status: int | None = None
        error: str | None = None
        started = time.perf_counter()
        import httpx

        try:
            response = self._http.post(due.url, content=body, headers=headers, timeout=self.timeout_s)
            status = response.status_code
            if not response.is_success:
                error = f"HTTP {status}: {response.text[:300]}".strip()
        except httpx.HTTPError as exc:
            error = f"{type(exc).__name__}: {exc}"[:1000] or type(exc).__name__
        except Exception as exc:  # a malformed URL stored before validation existed, ...
            error = f"{type(exc).__name__}: {exc}"[:1000]
        took = int((time.perf_counter() - started) * 1000)
        delivered = status is not None and 200 <= status < 300
        recorded = None
        for pause in (0.2, 1.0, None):  # the database may be busy for a moment; the lease covers a crash
            try:
                recorded = self.store.record_attempt(
                    due.delivery_id, status, error, took, delivered, retry=retry
                )
                break
            except NotFound:  # the webhook was deleted meanwhile
                return None
            except Exception:
                if pause is None:
                    log.exception("Could not log webhook delivery %s", due.delivery_id)
                    return None
                time.sleep(pause)
        if recorded is None:  # pragma: no cover - the loop returns or breaks
            return None
        with self._lock:
            if recorded.state.value == "delivered":
                self.stats.delivered += 1
            elif recorded.state.value == "failed":
                self.stats.failed += 1
                log.warning("Webhook delivery %s to %s failed for good: %s", due.delivery_id, due.url, error)
            else:
                self.stats.retrying += 1
        return recorded

    def send_test(self, webhook_id: str) -> WebhookDelivery:
        """One synchronous, signed delivery of a `webhook.test` event, logged (and not retried)."""
        due = self.store.start_test_delivery(webhook_id)
        recorded = self.attempt(due, retry=False)
        return recorded if recorded is not None else self.store.get_delivery(due.delivery_id)

    # the queue -------------------------------------------------------------------------------------------
    def run_once(self, limit: int = 100) -> int:
        """Queue new events, then attempt every due delivery this dispatcher can claim; the attempts made."""
        self.store.enqueue()
        claimed = [d for d in self.store.due(limit=limit) if self.store.claim(d)]
        if not claimed:
            return 0
        by_webhook: dict[str, list[DueDelivery]] = {}
        for due in claimed:  # one webhook's deliveries in order, several webhooks in parallel
            by_webhook.setdefault(due.webhook_id, []).append(due)
        queues = [sorted(q, key=lambda d: (d.event.event_id, d.delivery_id)) for q in by_webhook.values()]
        if len(queues) == 1 or self._concurrency == 1:
            for queue in queues:
                self._attempt_all(queue)
            return len(claimed)
        pool = self._pool or ThreadPoolExecutor(self._concurrency, thread_name_prefix="modelyard-webhook")
        try:
            wait([pool.submit(self._attempt_all, queue) for queue in queues])
        finally:
            if pool is not self._pool:
                pool.shutdown(wait=True)
        return len(claimed)

    def _attempt_all(self, queue: list[DueDelivery]) -> None:
        for due in queue:
            self.attempt(due)

    def _safe_run_once(self) -> int:
        try:
            return self.run_once()
        except Exception:  # the database may be down for a while: log, and try again next tick
            log.exception("Webhook dispatcher: cannot read or update the delivery queue")
            return 0

    def drain(
        self,
        max_s: float | None = None,
        progress: Callable[[DrainStats], None] | None = None,
        wait_for_retries: bool = True,
    ) -> DrainStats:
        """Deliver until nothing is queued (waiting out retry backoffs when `wait_for_retries`), or `max_s`
        seconds have passed. For the embedded store, which has no server to run the dispatcher."""
        deadline = None if max_s is None else time.monotonic() + max_s
        while True:
            made = self._safe_run_once()
            try:
                pending = self.store.pending_count() + self.store.backlog()
            except Exception:
                log.exception("Webhook dispatcher: cannot count the queue")
                pending = 0
            self.stats.pending = pending
            if progress is not None:
                progress(self.stats)
            if pending == 0 or (made == 0 and not wait_for_retries):
                return self.stats
            if deadline is not None and time.monotonic() >= deadline:
                return self.stats
            if made == 0:
                time.sleep(self.interval_s)

    # the background thread -------------------------------------------------------------------------------
    def start(self) -> WebhookDispatcher:
        if self._thread is None:
            if self._owns_http and self._client is not None and self._client.is_closed:
                self._client = None  # started again after a stop(): a new client on the next delivery
            self._stop.clear()
            self._pool = ThreadPoolExecutor(self._concurrency, thread_name_prefix="modelyard-webhook")
            self._thread = threading.Thread(target=self._loop, name="modelyard-webhooks", daemon=True)
            self._thread.start()
        return self

    def _loop(self) -> None:
        while not self._stop.wait(self.interval_s):
            self._safe_run_once()
        deadline = time.monotonic() + self._drain_s  # stopping: send what is due now, for a little while
        while time.monotonic() < deadline and self._safe_run_once():
            pass

    def stop(self, drain_s: float = 5.0) -> None:
        """Stop polling after sending what is due, for at most `drain_s` seconds (plus one request's timeout)."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._drain_s = drain_s
            self._stop.set()
            thread.join(drain_s + self.timeout_s + 1.0)
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None
        if self._owns_http and self._client is not None and (thread is None or not thread.is_alive()):
            self._client.close()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()


# for the SDK and CLI -----------------------------------------------------------------------------------------
def webhook_store_for(tracking_uri: str | None = None) -> SqlWebhookStore | RestWebhookStore:
    """Webhooks in the database itself, or through a server's REST API (as MODELYARD_TOKEN's user)."""
    uri = tracking_uri or config.tracking_uri()
    if uri.startswith(("http://", "https://")):
        from modelyard.store.rest_webhooks import RestWebhookStore

        return RestWebhookStore(uri)
    from modelyard.store.sql.webhooks import SqlWebhookStore

    return SqlWebhookStore.open(uri)


def send_test(
    store: SqlWebhookStore | RestWebhookStore, webhook_id: str, timeout_s: float = 5.0
) -> WebhookDelivery:
    """A signed `webhook.test` delivery, sent now (by the server, when `store` is a server's)."""
    from modelyard.store.rest_webhooks import RestWebhookStore

    if isinstance(store, RestWebhookStore):
        return store.send_test(webhook_id)
    dispatcher = WebhookDispatcher(store, timeout_s=timeout_s, concurrency=1)
    try:
        return dispatcher.send_test(webhook_id)
    finally:
        dispatcher.stop()


__all__ = [
    "DELIVERY_HEADER",
    "EVENT_HEADER",
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "DrainStats",
    "WebhookDispatcher",
    "send_test",
    "sign",
    "signed_request",
    "verify_signature",
    "webhook_store_for",
]
