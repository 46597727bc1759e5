"""/api/v1/webhooks: subscriptions to registry and run events, their delivery log and test deliveries.

Rights with auth on: a webhook on a registered model needs MANAGE on that model, one on an experiment
MANAGE on the experiment, and one on every event an admin; the same rights read, change, test or delete
it. With auth off every request may do everything. The server runs the dispatcher that sends deliveries
(`install`), one per worker process; they share the queue in the database."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request, Response

from modelyard.errors import InvalidArgument, PermissionDenied
from modelyard.schemas.accounts import ResourceType, Role
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
from modelyard.server.authz import Principal
from modelyard.server.routes import ok, reply, store
from modelyard.store.sql.webhooks import SqlWebhookStore

router = APIRouter(tags=["webhooks"])


def install(app: FastAPI, start_dispatcher: bool = True) -> None:
    """Keep webhooks in the app's SQL store and run their dispatcher while the app runs."""
    from modelyard.registry.webhooks import WebhookDispatcher

    hooks = SqlWebhookStore(app.state.store)
    dispatcher = WebhookDispatcher(hooks)
    app.state.webhooks, app.state.webhook_dispatcher = hooks, dispatcher
    if start_dispatcher:
        app.router.on_startup.append(dispatcher.start)
        app.router.on_shutdown.append(dispatcher.stop)


def _hooks(request: Request) -> SqlWebhookStore:
    hooks = getattr(request.app.state, "webhooks", None)
    if hooks is None:
        raise InvalidArgument("This server's store keeps no webhooks (they need a SQL backend store).")
    return hooks  # type: ignore[no-any-return]


def _caller(request: Request) -> Principal | None:
    return (request.scope.get("state") or {}).get("principal")


def _note(request: Request, target: str) -> None:
    state = request.scope.get("state") or {}
    if "audit_targets" in state:
        state["audit_targets"].append(target)


def _may_manage(request: Request, model_name: str | None, experiment_id: str | None) -> bool:
    who = _caller(request)
    if who is None or who.is_admin:
        return True
    if model_name is None and experiment_id is None:
        return False
    kind = ResourceType.REGISTERED_MODEL if model_name is not None else ResourceType.EXPERIMENT
    role = request.app.state.authorizer.role(
        who, kind, model_name if model_name is not None else experiment_id
    )
    return role is not None and role.allows(Role.MANAGE)


def _require(request: Request, model_name: str | None, experiment_id: str | None) -> None:
    """MANAGE on the webhook's model or experiment; an admin for a webhook on every event."""
    who = _caller(request)
    if who is None or who.is_admin:
        return
    authorizer = request.app.state.authorizer
    if model_name is not None:
        authorizer.require(who, ResourceType.REGISTERED_MODEL, model_name, Role.MANAGE)
    elif experiment_id is not None:
        authorizer.require(who, ResourceType.EXPERIMENT, experiment_id, Role.MANAGE)
    else:
        raise PermissionDenied(
            f"Only an admin may subscribe to every event; {who.username!r} is not one. "
            "Subscribe to a registered model or an experiment you manage instead."
        )


def _webhook(request: Request, webhook_id: str) -> Webhook:
    """The webhook, once the caller may manage it."""
    hook = _hooks(request).get_webhook(webhook_id)
    _require(request, hook.model_name, hook.experiment_id)
    _note(request, f"webhook:{hook.webhook_id}")
    return hook


@router.post("/webhooks", response_model=NewWebhook, status_code=201)
def create_webhook(body: CreateWebhook, request: Request) -> Response:
    """Subscribe a URL to one registered model's events, one experiment's run events, or (neither) all.
    The answer holds the signing secret, shown this once."""
    experiment_id = body.experiment_id
    if body.model_name is not None and experiment_id is not None:
        raise InvalidArgument("A webhook follows one registered model or one experiment, not both.")
    if experiment_id is not None:
        experiment_id = store(request).get_experiment(experiment_id).experiment_id  # 404 before 403
    _require(request, body.model_name, experiment_id)
    created = _hooks(request).create_webhook(
        body.url, body.events, body.model_name, experiment_id, body.description, body.secret
    )
    _note(request, f"webhook:{created.webhook_id}")
    return reply(created, 201)


@router.get("/webhooks", response_model=WebhookList)
def list_webhooks(
    request: Request, model_name: str | None = None, experiment_id: str | None = None
) -> Response:
    """The webhooks the caller may manage, optionally of one registered model or experiment."""
    found = _hooks(request).list_webhooks(model_name, experiment_id)
    return reply(
        WebhookList(webhooks=[h for h in found if _may_manage(request, h.model_name, h.experiment_id)])
    )


@router.get("/webhooks/{webhook_id}", response_model=Webhook)
def get_webhook(webhook_id: str, request: Request) -> Response:
    return reply(_webhook(request, webhook_id))


@router.patch("/webhooks/{webhook_id}", response_model=Webhook)
def update_webhook(webhook_id: str, body: UpdateWebhook, request: Request) -> Response:
    """Turn a webhook off or on (`active`), or change its URL, events or description."""
    if all(getattr(body, f) is None for f in UpdateWebhook.model_fields):
        raise InvalidArgument("Nothing to change: give active, url, events or description.")
    _webhook(request, webhook_id)
    updated = _hooks(request).update_webhook(webhook_id, body.active, body.url, body.events, body.description)
    return reply(updated)


@router.delete("/webhooks/{webhook_id}")
def delete_webhook(webhook_id: str, request: Request) -> dict[str, Any]:
    _webhook(request, webhook_id)
    _hooks(request).delete_webhook(webhook_id)
    return ok()


@router.post("/webhooks/{webhook_id}/test", response_model=WebhookDelivery)
def test_webhook(webhook_id: str, request: Request) -> Response:
    """Send a signed `webhook.test` delivery now and answer with its log entry (status, error, time)."""
    _webhook(request, webhook_id)
    dispatcher = getattr(request.app.state, "webhook_dispatcher", None)
    if dispatcher is not None:
        return reply(dispatcher.send_test(webhook_id))
    from modelyard.registry.webhooks import send_test

    return reply(send_test(_hooks(request), webhook_id))


@router.get("/webhooks/{webhook_id}/deliveries", response_model=WebhookDeliveryList)
def list_deliveries(
    webhook_id: str,
    request: Request,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 50,
    state: DeliveryState | None = None,
) -> Response:
    """The webhook's deliveries, newest first: state, attempts, the last status, error and duration."""
    _webhook(request, webhook_id)
    return reply(WebhookDeliveryList(deliveries=_hooks(request).list_deliveries(webhook_id, limit, state)))
