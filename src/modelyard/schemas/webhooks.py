"""Wire models of webhooks: subscriptions to registry and run events, and the log of their deliveries.
Times are milliseconds since the epoch."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

# Every event type a webhook can subscribe to (the `type` of a registry event), plus the test delivery.
EVENT_TYPES = (
    "registered_model.created",
    "registered_model.updated",
    "registered_model.renamed",
    "registered_model.deleted",
    "registered_model.tag_set",
    "registered_model.tag_deleted",
    "registered_model.gates_set",
    "model_version.created",
    "model_version.updated",
    "model_version.deleted",
    "model_version.tag_set",
    "model_version.tag_deleted",
    "model_version.stage_changed",
    "model_alias.set",
    "model_alias.moved",
    "model_alias.deleted",
    "run.finished",
    "run.failed",
    "run.killed",
)
TEST_EVENT = "webhook.test"


class DeliveryState(str, Enum):
    PENDING = "pending"  # waiting for its first attempt or its next retry
    DELIVERED = "delivered"  # the receiver answered 2xx
    FAILED = "failed"  # every attempt failed; no more retries


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Webhook(_Model):
    """A subscription, as listed: never its secret, which is shown once, when the webhook is created."""

    webhook_id: str
    url: str
    events: list[str] = Field(default_factory=lambda: ["*"])  # event types, 'prefix.*' or '*' (all)
    model_name: str | None = None  # only this registered model's events ...
    experiment_id: str | None = None  # ... or only this experiment's run events; neither: everything
    description: str = ""
    active: bool = True
    created_time: int


class NewWebhook(Webhook):
    """A webhook just created: `secret` (the HMAC-SHA256 key of its signatures) is shown this once."""

    secret: str


class WebhookDelivery(_Model):
    delivery_id: int
    webhook_id: str
    event_id: int  # 0 for a test delivery
    event_type: str | None = None
    state: DeliveryState
    attempts: int = 0
    last_status: int | None = None  # the receiver's HTTP status of the last attempt (None: no answer)
    last_error: str | None = None
    last_duration_ms: int | None = None
    created_time: int
    next_attempt_time: int | None = None  # pending deliveries: when the next attempt is due
    delivered_time: int | None = None


class WebhookPayload(_Model):
    """The JSON body of every delivery (signed; see docs/webhooks.md)."""

    delivery_id: int
    webhook_id: str
    event: dict[str, Any]  # a RegistryEvent: event_id, time, type, name, version, experiment_id, ...


# request and response bodies of /api/v1/webhooks -----------------------------------------------------------
class CreateWebhook(_Model):
    url: str = Field(max_length=2000)
    events: list[str] = Field(default_factory=lambda: ["*"], max_length=64)
    model_name: str | None = None
    experiment_id: str | None = None
    description: str = Field(default="", max_length=5000)
    secret: str | None = Field(default=None, min_length=16, max_length=256)  # default: a random one


class UpdateWebhook(_Model):
    url: str | None = Field(default=None, max_length=2000)
    events: list[str] | None = Field(default=None, max_length=64)
    description: str | None = Field(default=None, max_length=5000)
    active: bool | None = None


class WebhookList(_Model):
    webhooks: list[Webhook]


class WebhookDeliveryList(_Model):
    deliveries: list[WebhookDelivery]


__all__ = [
    "EVENT_TYPES",
    "TEST_EVENT",
    "CreateWebhook",
    "DeliveryState",
    "NewWebhook",
    "UpdateWebhook",
    "Webhook",
    "WebhookDelivery",
    "WebhookDeliveryList",
    "WebhookList",
    "WebhookPayload",
]
