"""Webhooks in the tracking database: subscriptions, and the queue and log of their deliveries.

Events are never pushed by the write that causes them: every registry change and run end already writes a
`registry_events` row in its own transaction, and the dispatcher (modelyard.registry.webhooks) turns those
rows into deliveries later. So a webhook can never block, slow down or fail a registry write.

The dispatcher's primitives are safe with several server workers (or processes) on one database:

- `enqueue()` moves each webhook's cursor (`last_event_id`) and inserts its pending deliveries in one
  transaction that locks the webhook's row (SELECT ... FOR UPDATE on PostgreSQL; SQLite serialises
  writers with BEGIN IMMEDIATE), so an event becomes at most one delivery per webhook.
- `claim()` leases a due delivery with a conditional UPDATE on the `next_attempt_time` it was read with:
  of two workers that read the same row, only one changes it; the other skips it.
- `record_attempt()` logs an attempt and schedules the retry with exponential backoff, or ends it.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, delete, func, insert, select, update

from modelyard.errors import InvalidArgument, NotFound
from modelyard.schemas.registry import RegistryEvent
from modelyard.schemas.webhooks import (
    EVENT_TYPES,
    TEST_EVENT,
    DeliveryState,
    NewWebhook,
    Webhook,
    WebhookDelivery,
)
from modelyard.store.sql.attached import AttachedStore
from modelyard.store.sql.model_registry import event_from_row
from modelyard.store.sql.store import SqlTrackingStore, now_ms
from modelyard.store.sql.tables import registered_models, registry_events, webhook_deliveries, webhooks
from modelyard.store.validation import is_http_url

MAX_ATTEMPTS = 8
BACKOFF_BASE_MS = 1_000  # 1 s, 2 s, 4 s, ... between attempts
BACKOFF_CAP_MS = 300_000  # never more than 5 minutes
LEASE_MS = 60_000  # a claimed delivery is due again after this if its worker died mid-attempt
SETTLE_MS = 2_000  # how long an event id gap may be a transaction still in flight (PostgreSQL sequences)
SECRET_PREFIX = "whsec_"
_PREFIXES = sorted({t.split(".")[0] for t in EVENT_TYPES})
_RUN_TYPES = ("run.finished", "run.failed", "run.killed")


@dataclass(frozen=True)
class DueDelivery:
    """A delivery to attempt now, with what the dispatcher needs to send it."""

    delivery_id: int
    webhook_id: str
    url: str
    secret: str
    event: RegistryEvent
    attempts: int
    next_attempt_time: int


def validate_url(url: str) -> str:
    url = (url or "").strip()
    if not is_http_url(url):
        raise InvalidArgument(
            f"Invalid webhook URL {url[:200]!r}: give an http:// or https:// URL with a host, "
            "e.g. https://hooks.example.com/modelyard."
        )
    if any(c.isspace() for c in url):
        raise InvalidArgument(f"Invalid webhook URL {url[:200]!r}: it contains white space.")
    return url


def validate_events(events: Iterable[str] | None) -> list[str]:
    """Known event types, 'prefix.*' (e.g. model_version.*) or '*'; in their given order, without repeats."""
    found: list[str] = []
    for raw in events if events is not None else ["*"]:
        event = str(raw).strip()
        known = event == "*" or event in EVENT_TYPES or (event.endswith(".*") and event[:-2] in _PREFIXES)
        if not known:
            raise InvalidArgument(
                f"Unknown event type {event[:100]!r}: use '*', one of {', '.join(p + '.*' for p in _PREFIXES)}, "
                f"or one of {', '.join(EVENT_TYPES)}."
            )
        if event not in found:
            found.append(event)
    if not found:
        raise InvalidArgument("Give at least one event type, or '*' for all of them.")
    return ["*"] if "*" in found else found


def matches(patterns: Iterable[str], event_type: str) -> bool:
    for pattern in patterns:
        if pattern == "*" or pattern == event_type:
            return True
        if pattern.endswith(".*") and event_type.startswith(pattern[:-1]):
            return True
    return False


def backoff_ms(attempts: int, base_ms: int = BACKOFF_BASE_MS, cap_ms: int = BACKOFF_CAP_MS) -> int:
    """The wait after the `attempts`-th failed attempt: base, 2 x base, 4 x base, ... at most cap."""
    return int(min(base_ms * 2 ** max(attempts - 1, 0), cap_ms))


def _webhook(row: Any) -> Webhook:
    return Webhook(
        webhook_id=row.webhook_id,
        url=row.url,
        events=[e for e in (row.events or "*").split(",") if e],
        model_name=row.model_name,
        experiment_id=row.experiment_id,
        description=row.description or "",
        active=bool(row.active),
        created_time=row.created_time,
    )


def _test_event(webhook: Webhook, now: int) -> RegistryEvent:
    return RegistryEvent(
        event_id=0,
        time=now,
        type=TEST_EVENT,
        name=webhook.model_name,
        experiment_id=webhook.experiment_id,
        payload={"message": "A test delivery from Modelyard: your endpoint receives and verifies webhooks."},
    )


_DELIVERY_COLUMNS = (*webhook_deliveries.c, registry_events.c.type.label("event_type"))


def _delivery(row: Any) -> WebhookDelivery:
    state = DeliveryState(row.state)
    return WebhookDelivery(
        delivery_id=row.delivery_id,
        webhook_id=row.webhook_id,
        event_id=row.event_id,
        event_type=row.event_type or (TEST_EVENT if row.event_id == 0 else None),
        state=state,
        attempts=row.attempts,
        last_status=row.last_status,
        last_error=row.last_error,
        last_duration_ms=row.last_duration_ms,
        created_time=row.created_time,
        next_attempt_time=row.next_attempt_time if state is DeliveryState.PENDING else None,
        delivered_time=row.delivered_time,
    )


class SqlWebhookStore(AttachedStore):
    """Webhooks and their deliveries, sharing the tracking store's engines and transactions."""

    def __init__(
        self,
        tracking: SqlTrackingStore,
        max_attempts: int = MAX_ATTEMPTS,
        backoff_base_ms: int = BACKOFF_BASE_MS,
        backoff_cap_ms: int = BACKOFF_CAP_MS,
    ) -> None:
        super().__init__(tracking)
        self._postgres = tracking._write.dialect.name == "postgresql"
        self.max_attempts, self.backoff_base_ms, self.backoff_cap_ms = (
            max_attempts,
            backoff_base_ms,
            backoff_cap_ms,
        )

    # webhooks --------------------------------------------------------------------------------------------
    def create_webhook(
        self,
        url: str,
        events: Iterable[str] | None = None,
        model_name: str | None = None,
        experiment_id: str | None = None,
        description: str = "",
        secret: str | None = None,
    ) -> NewWebhook:
        """Subscribe `url` to the events of one registered model, one experiment's runs, or (neither) all.
        Only events after its creation are delivered."""
        url, kinds = validate_url(url), validate_events(events)
        if model_name is not None and experiment_id is not None:
            raise InvalidArgument("A webhook follows one registered model or one experiment, not both.")
        if experiment_id is not None:
            experiment_id = self._tracking.get_experiment(experiment_id).experiment_id  # exists; canonical
            if any(k not in ("*", "run.*", *_RUN_TYPES) for k in kinds):
                raise InvalidArgument(
                    "An experiment's webhook receives run events only (run.finished, run.failed, run.killed)."
                )
        if model_name is not None and any(k.startswith("run.") for k in kinds):
            raise InvalidArgument(
                "A registered model's webhook receives no run events; subscribe to the experiment instead."
            )
        if len(description or "") > 5000:
            raise InvalidArgument("A webhook description has at most 5000 characters.")
        if secret is not None and not 16 <= len(secret) <= 256:
            raise InvalidArgument("A webhook secret has 16 to 256 characters (default: a random one).")
        secret = secret or SECRET_PREFIX + secrets.token_urlsafe(32)
        row: dict[str, Any] = {
            "webhook_id": secrets.token_hex(8),
            "url": url,
            "secret": secret,
            "events": ",".join(kinds),
            "model_name": model_name,
            "experiment_id": experiment_id,
            "description": description or "",
            "active": True,
            "created_time": now_ms(),
        }
        with self._tx() as conn:
            if model_name is not None:
                found = conn.execute(
                    select(registered_models.c.name).where(registered_models.c.name == model_name)
                ).first()
                if found is None:
                    raise NotFound(
                        f"No registered model named {model_name!r}. See them with: modelyard models list"
                    )
            head = conn.execute(select(func.max(registry_events.c.event_id))).scalar() or 0
            conn.execute(insert(webhooks).values(last_event_id=head, **row))
        return NewWebhook(**{k: v for k, v in row.items() if k != "events"}, events=kinds)

    def _row(self, conn: Connection, webhook_id: str, lock: bool = False) -> Any:
        query = select(webhooks).where(webhooks.c.webhook_id == str(webhook_id))
        if lock and self._postgres:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"No webhook with id {webhook_id!r}. See them with: modelyard webhooks list")
        return row

    def get_webhook(self, webhook_id: str) -> Webhook:
        with self._ro() as conn:
            return _webhook(self._row(conn, webhook_id))

    def webhook_secret(self, webhook_id: str) -> str:
        with self._ro() as conn:
            return str(self._row(conn, webhook_id).secret)

    def list_webhooks(self, model_name: str | None = None, experiment_id: str | None = None) -> list[Webhook]:
        query = select(webhooks)
        if model_name is not None:
            query = query.where(webhooks.c.model_name == model_name)
        if experiment_id is not None:
            query = query.where(webhooks.c.experiment_id == str(experiment_id))
        with self._ro() as conn:
            rows = conn.execute(query.order_by(webhooks.c.created_time, webhooks.c.webhook_id)).all()
        return [_webhook(r) for r in rows]

    def update_webhook(
        self,
        webhook_id: str,
        active: bool | None = None,
        url: str | None = None,
        events: Iterable[str] | None = None,
        description: str | None = None,
    ) -> Webhook:
        """Change a webhook. One turned back on skips the events that happened while it was off."""
        changes: dict[str, Any] = {}
        if url is not None:
            changes["url"] = validate_url(url)
        if events is not None:
            changes["events"] = ",".join(validate_events(events))
        if description is not None:
            if len(description) > 5000:
                raise InvalidArgument("A webhook description has at most 5000 characters.")
            changes["description"] = description
        with self._tx() as conn:
            row = self._row(conn, webhook_id, lock=True)
            if "events" in changes:
                kinds = changes["events"].split(",")
                runs_only = all(k in ("*", "run.*", *_RUN_TYPES) for k in kinds)
                if row.experiment_id is not None and not runs_only:
                    raise InvalidArgument("An experiment's webhook receives run events only.")
                if row.model_name is not None and any(k.startswith("run.") for k in kinds):
                    raise InvalidArgument("A registered model's webhook receives no run events.")
            if active is not None:
                changes["active"] = bool(active)
                if active and not row.active:
                    head = conn.execute(select(func.max(registry_events.c.event_id))).scalar() or 0
                    changes["last_event_id"] = max(head, row.last_event_id)
            if changes:
                conn.execute(
                    update(webhooks).where(webhooks.c.webhook_id == row.webhook_id).values(**changes)
                )
            return _webhook(self._row(conn, webhook_id))

    def delete_webhook(self, webhook_id: str) -> None:
        with self._tx() as conn:
            row = self._row(conn, webhook_id, lock=True)
            # Explicit, not only ON DELETE CASCADE: SQLite enforces foreign keys only per connection pragma.
            conn.execute(delete(webhook_deliveries).where(webhook_deliveries.c.webhook_id == row.webhook_id))
            conn.execute(delete(webhooks).where(webhooks.c.webhook_id == row.webhook_id))

    # the delivery log ------------------------------------------------------------------------------------
    def list_deliveries(
        self, webhook_id: str, limit: int = 50, state: DeliveryState | None = None
    ) -> list[WebhookDelivery]:
        """The webhook's deliveries, newest first."""
        if not 1 <= int(limit) <= 10_000:
            raise InvalidArgument(f"limit must be between 1 and 10000, got {limit}.")
        query = (
            select(*_DELIVERY_COLUMNS)
            .select_from(webhook_deliveries)
            .outerjoin(registry_events, registry_events.c.event_id == webhook_deliveries.c.event_id)
            .where(webhook_deliveries.c.webhook_id == str(webhook_id))
        )
        if state is not None:
            query = query.where(webhook_deliveries.c.state == DeliveryState(state).value)
        query = query.order_by(webhook_deliveries.c.delivery_id.desc()).limit(int(limit))
        with self._ro() as conn:
            self._row(conn, webhook_id)
            return [_delivery(r) for r in conn.execute(query)]

    def get_delivery(self, delivery_id: int) -> WebhookDelivery:
        query = (
            select(*_DELIVERY_COLUMNS)
            .select_from(webhook_deliveries)
            .outerjoin(registry_events, registry_events.c.event_id == webhook_deliveries.c.event_id)
            .where(webhook_deliveries.c.delivery_id == int(delivery_id))
        )
        with self._ro() as conn:
            row = conn.execute(query).first()
        if row is None:
            raise NotFound(f"No webhook delivery {delivery_id}.")
        return _delivery(row)

    # dispatcher primitives -------------------------------------------------------------------------------
    def enqueue(self, now: int | None = None, batch: int = 500) -> int:
        """Turn new events into pending deliveries, for every active webhook; the number queued."""
        now = now_ms() if now is None else now
        with self._ro() as conn:
            head = conn.execute(select(func.max(registry_events.c.event_id))).scalar() or 0
            behind = conn.execute(
                select(webhooks.c.webhook_id).where(
                    webhooks.c.active.is_(True), webhooks.c.last_event_id < head
                )
            ).scalars().all()  # fmt: skip
        return sum(self._enqueue_one(webhook_id, now, batch) for webhook_id in behind)

    def _enqueue_one(self, webhook_id: str, now: int, batch: int) -> int:
        with self._tx() as conn:
            query = select(webhooks).where(webhooks.c.webhook_id == webhook_id)
            hook = conn.execute(query.with_for_update() if self._postgres else query).first()
            if hook is None or not hook.active:
                return 0
            rows = conn.execute(
                select(registry_events)
                .where(registry_events.c.event_id > hook.last_event_id)
                .order_by(registry_events.c.event_id)
                .limit(batch)
            ).all()
            seen, upto = [], hook.last_event_id
            for row in rows:
                # A gap in the ids may be a transaction that took its id but has not committed yet: wait for
                # it a little (it is a rolled-back one once the events after it are old enough).
                if row.event_id != upto + 1 and row.time > now - SETTLE_MS:
                    break
                seen.append(row)
                upto = row.event_id
            if not seen:
                return 0
            patterns = [e for e in (hook.events or "*").split(",") if e]
            names = {hook.model_name}
            for row in seen:  # a renamed model keeps its webhooks (and its old events carry its new name)
                if row.type == "registered_model.renamed":
                    old = json.loads(row.payload or "{}").get("old_name")
                    if old in names:
                        names.add(row.name)

            def wanted(row: Any) -> bool:
                if not matches(patterns, row.type):
                    return False
                if hook.model_name is not None:
                    return row.name in names
                if hook.experiment_id is not None:
                    return row.experiment_id == hook.experiment_id
                return True

            deliveries = [
                {
                    "webhook_id": hook.webhook_id,
                    "event_id": row.event_id,
                    "state": DeliveryState.PENDING.value,
                    "attempts": 0,
                    "next_attempt_time": now,
                    "created_time": now,
                }
                for row in seen
                if wanted(row)
            ]
            if deliveries:
                conn.execute(insert(webhook_deliveries), deliveries)
            changes: dict[str, Any] = {"last_event_id": upto}
            renamed_to = [r.name for r in seen if r.type == "registered_model.renamed" and r.name in names]
            if hook.model_name is not None and renamed_to:
                changes["model_name"] = renamed_to[-1]
            conn.execute(update(webhooks).where(webhooks.c.webhook_id == hook.webhook_id).values(**changes))
            return len(deliveries)

    def due(self, now: int | None = None, limit: int = 100) -> list[DueDelivery]:
        """Pending deliveries of active webhooks whose next attempt is due, oldest first."""
        now = now_ms() if now is None else now
        query = (
            select(
                webhook_deliveries.c.delivery_id,
                webhook_deliveries.c.webhook_id,
                webhook_deliveries.c.attempts,
                webhook_deliveries.c.next_attempt_time,
                webhooks.c.url,
                webhooks.c.secret,
                webhooks.c.model_name.label("hook_model_name"),
                webhooks.c.experiment_id.label("hook_experiment_id"),
                registry_events.c.event_id,
                registry_events.c.time,
                registry_events.c.type,
                registry_events.c.name,
                registry_events.c.version,
                registry_events.c.experiment_id,
                registry_events.c.run_id,
                registry_events.c.user,
                registry_events.c.payload,
            )
            .select_from(webhook_deliveries)
            .join(webhooks, webhooks.c.webhook_id == webhook_deliveries.c.webhook_id)
            .outerjoin(registry_events, registry_events.c.event_id == webhook_deliveries.c.event_id)
            .where(
                webhook_deliveries.c.state == DeliveryState.PENDING.value,
                webhook_deliveries.c.next_attempt_time <= now,
                webhooks.c.active.is_(True),
            )
            .order_by(webhook_deliveries.c.next_attempt_time, webhook_deliveries.c.delivery_id)
            .limit(int(limit))
        )
        with self._ro() as conn:
            rows = conn.execute(query).all()
        found = []
        for r in rows:
            if r.event_id is not None:
                event = event_from_row(r)
            else:  # a test delivery whose worker died before it could record its attempt
                hook = Webhook(
                    webhook_id=r.webhook_id, url=r.url, model_name=r.hook_model_name,
                    experiment_id=r.hook_experiment_id, created_time=0,
                )  # fmt: skip
                event = _test_event(hook, now)
            found.append(
                DueDelivery(
                    delivery_id=r.delivery_id, webhook_id=r.webhook_id, url=r.url, secret=r.secret, event=event,
                    attempts=r.attempts, next_attempt_time=r.next_attempt_time,
                )
            )  # fmt: skip
        return found

    def claim(self, delivery: DueDelivery, now: int | None = None, lease_ms: int = LEASE_MS) -> bool:
        """Lease a due delivery for one attempt: True for exactly one of the workers that try."""
        now = now_ms() if now is None else now
        with self._tx() as conn:
            claimed = conn.execute(
                update(webhook_deliveries)
                .where(
                    webhook_deliveries.c.delivery_id == delivery.delivery_id,
                    webhook_deliveries.c.state == DeliveryState.PENDING.value,
                    webhook_deliveries.c.next_attempt_time == delivery.next_attempt_time,
                )
                .values(next_attempt_time=now + lease_ms)
            ).rowcount
        return claimed == 1

    def record_attempt(
        self,
        delivery_id: int,
        status: int | None,
        error: str | None,
        duration_ms: int,
        delivered: bool,
        retry: bool = True,
        now: int | None = None,
    ) -> WebhookDelivery:
        """Log one attempt: delivered, retried after a backoff, or (attempts used up, or `retry` off) failed."""
        now = now_ms() if now is None else now
        with self._tx() as conn:
            row = conn.execute(
                select(webhook_deliveries).where(webhook_deliveries.c.delivery_id == int(delivery_id))
            ).first()
            if row is None:
                raise NotFound(f"No webhook delivery {delivery_id} (was its webhook deleted?).")
            attempts = row.attempts + 1
            changes: dict[str, Any] = {
                "attempts": attempts,
                "last_status": status,
                "last_error": (error or None) and error[:2000],
                "last_duration_ms": int(duration_ms),
            }
            if delivered:
                changes.update(state=DeliveryState.DELIVERED.value, delivered_time=now)
            elif not retry or attempts >= self.max_attempts:
                changes.update(state=DeliveryState.FAILED.value)
            else:
                wait = backoff_ms(attempts, self.backoff_base_ms, self.backoff_cap_ms)
                changes.update(state=DeliveryState.PENDING.value, next_attempt_time=now + wait)
            conn.execute(
                update(webhook_deliveries)
                .where(webhook_deliveries.c.delivery_id == row.delivery_id)
                .values(**changes)
            )
        return self.get_delivery(delivery_id)

    def start_test_delivery(self, webhook_id: str, now: int | None = None) -> DueDelivery:
        """A delivery row for a `webhook.test` event, already claimed by the caller, who sends it now."""
        now = now_ms() if now is None else now
        with self._tx() as conn:
            row = self._row(conn, webhook_id)
            delivery_id = conn.execute(
                insert(webhook_deliveries)
                .values(
                    webhook_id=row.webhook_id, event_id=0, state=DeliveryState.PENDING.value, attempts=0,
                    next_attempt_time=now + LEASE_MS, created_time=now,
                )
                .returning(webhook_deliveries.c.delivery_id)
            ).scalar_one()  # fmt: skip
        return DueDelivery(
            delivery_id=delivery_id, webhook_id=row.webhook_id, url=row.url, secret=row.secret,
            event=_test_event(_webhook(row), now), attempts=0, next_attempt_time=now + LEASE_MS,
        )  # fmt: skip

    def pending_count(self) -> int:
        """Deliveries still waiting for an attempt or a retry (of active webhooks)."""
        with self._ro() as conn:
            return int(
                conn.execute(
                    select(func.count())
                    .select_from(webhook_deliveries)
                    .join(webhooks, webhooks.c.webhook_id == webhook_deliveries.c.webhook_id)
                    .where(
                        webhook_deliveries.c.state == DeliveryState.PENDING.value, webhooks.c.active.is_(True)
                    )
                ).scalar_one()
            )

    def backlog(self) -> int:
        """Events not yet turned into deliveries, for the webhook furthest behind."""
        with self._ro() as conn:
            head = conn.execute(select(func.max(registry_events.c.event_id))).scalar() or 0
            low = conn.execute(
                select(func.min(webhooks.c.last_event_id)).where(webhooks.c.active.is_(True))
            ).scalar()
        return 0 if low is None else max(0, head - low)


__all__ = [
    "MAX_ATTEMPTS",
    "DueDelivery",
    "SqlWebhookStore",
    "backoff_ms",
    "matches",
    "validate_events",
    "validate_url",
]
