"""Webhooks over a running server's /api/v1/webhooks, with the caller's token (MODELYARD_TOKEN): the server
checks the caller's rights, keeps the delivery queue and runs the dispatcher."""

from __future__ import annotations

from collections.abc import Iterable

from modelyard.schemas.webhooks import (
    CreateWebhook,
    DeliveryState,
    NewWebhook,
    UpdateWebhook,
    Webhook,
    WebhookDelivery,
    WebhookDeliveryList,
    WebhookList,
)
from modelyard.store.rest_resource import RestResource, segment


class RestWebhookStore(RestResource):
    def create_webhook(
        self,
        url: str,
        events: Iterable[str] | None = None,
        model_name: str | None = None,
        experiment_id: str | None = None,
        description: str = "",
        secret: str | None = None,
    ) -> NewWebhook:
        body = CreateWebhook(
            url=url,
            events=list(events) if events is not None else ["*"],
            model_name=model_name,
            experiment_id=experiment_id,
            description=description,
            secret=secret,
        )
        return NewWebhook.model_validate(self._call("POST", "/webhooks", body))

    def list_webhooks(self, model_name: str | None = None, experiment_id: str | None = None) -> list[Webhook]:
        params = {"model_name": model_name, "experiment_id": experiment_id}
        return WebhookList.model_validate(self._call("GET", "/webhooks", params=params)).webhooks

    def get_webhook(self, webhook_id: str) -> Webhook:
        return Webhook.model_validate(self._call("GET", f"/webhooks/{segment(webhook_id)}"))

    def update_webhook(
        self,
        webhook_id: str,
        active: bool | None = None,
        url: str | None = None,
        events: Iterable[str] | None = None,
        description: str | None = None,
    ) -> Webhook:
        body = UpdateWebhook(
            active=active,
            url=url,
            events=list(events) if events is not None else None,
            description=description,
        )
        return Webhook.model_validate(self._call("PATCH", f"/webhooks/{segment(webhook_id)}", body))

    def delete_webhook(self, webhook_id: str) -> None:
        self._call("DELETE", f"/webhooks/{segment(webhook_id)}")

    def list_deliveries(
        self, webhook_id: str, limit: int = 50, state: DeliveryState | None = None
    ) -> list[WebhookDelivery]:
        params = {"limit": limit, "state": DeliveryState(state).value if state else None}
        found = self._call("GET", f"/webhooks/{segment(webhook_id)}/deliveries", params=params)
        return WebhookDeliveryList.model_validate(found).deliveries

    def send_test(self, webhook_id: str) -> WebhookDelivery:
        """The server sends a signed `webhook.test` delivery now and answers with its log entry."""
        return WebhookDelivery.model_validate(self._call("POST", f"/webhooks/{segment(webhook_id)}/test"))


__all__ = ["RestWebhookStore"]
