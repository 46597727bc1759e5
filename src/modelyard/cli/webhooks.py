"""`modelyard webhooks`: subscribe URLs to registry and run events, read their delivery log, send tests.

Pointed at a server (--tracking-uri http://...) the server sends the deliveries, in the background. On the
embedded store or a database (sqlite:///..., postgresql://...) without a server running on it, nothing
sends them until `modelyard webhooks deliver` runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

import click

from modelyard.cli.common import (
    DIM,
    ID_STYLE,
    State,
    err,
    esc,
    fmt_duration,
    fmt_time,
    json_option,
    new_table,
    out,
    pass_state,
    print_json,
    resolve_experiment,
    tracking_uri_option,
)
from modelyard.errors import InvalidArgument
from modelyard.schemas.webhooks import DeliveryState, Webhook, WebhookDelivery

if TYPE_CHECKING:
    from modelyard.store.rest_webhooks import RestWebhookStore
    from modelyard.store.sql.webhooks import SqlWebhookStore

_STATE_STYLES = {"delivered": "green", "failed": "red", "pending": "yellow"}


@contextlib.contextmanager
def _store(state: State) -> Iterator[SqlWebhookStore | RestWebhookStore]:
    from modelyard.registry.webhooks import webhook_store_for

    store = webhook_store_for(state.tracking_uri)
    try:
        yield store
    finally:
        store.close()


def _scope(hook: Webhook) -> str:
    if hook.model_name is not None:
        return f"model {esc(hook.model_name)}"
    if hook.experiment_id is not None:
        return f"experiment {esc(hook.experiment_id)}"
    return "everything"


def _show_delivery(d: WebhookDelivery) -> None:
    style = _STATE_STYLES.get(d.state.value, "")
    status = d.last_status if d.last_status is not None else "no answer"
    err().print(
        f"Delivery {d.delivery_id} [{style}]{d.state.value}[/]: HTTP {status} in {fmt_duration(d.last_duration_ms)}"
        + (f" - {esc(d.last_error)}" if d.last_error and d.state.value != "delivered" else "")
    )


@click.group("webhooks")
def webhooks() -> None:
    """Send signed HTTP POSTs to a URL when registry events happen or runs end.

    A webhook follows one registered model (--model), one experiment's runs (--experiment) or everything
    (--all). Deliveries are signed with HMAC-SHA256 (header X-Modelyard-Signature), retried with backoff,
    and logged. A server sends them in the background; on the embedded store run `webhooks deliver`.

    \b
    Example:
      modelyard webhooks create --model churn --url https://hooks.example.com/ml --events model_version.*
      modelyard webhooks list
      modelyard webhooks deliveries 3f9a1c2b7d10aa01
    """


@webhooks.command("create")
@tracking_uri_option
@click.option("--url", required=True, help="Where to POST the events (http:// or https://).")
@click.option("--model", "model_name", metavar="NAME", help="Only this registered model's events.")
@click.option("--experiment", metavar="ID|NAME", help="Only this experiment's run events.")
@click.option("--all", "everything", is_flag=True, help="Every event (needs an admin on a server with auth).")
@click.option(
    "--events",
    default="*",
    show_default=True,
    help="Comma-separated event types, e.g. model_version.stage_changed,model_alias.*; '*' for all.",
)
@click.option("--description", default="", help="A note on what the webhook is for.")
@click.option("--secret", help="The signing secret (16+ characters; default: a random one, printed once).")
@json_option
@pass_state
def create(
    state: State,
    url: str,
    model_name: str | None,
    experiment: str | None,
    everything: bool,
    events: str,
    description: str,
    secret: str | None,
    as_json: bool,
) -> None:
    """Create a webhook; its signing secret is printed once, on stdout.

    \b
    Example:
      modelyard webhooks create --model churn --url https://hooks.example.com/ml
      modelyard webhooks create --experiment nightly --url http://127.0.0.1:9000/ --events run.failed
      modelyard webhooks create --all --url https://hooks.example.com/audit
    """
    if sum((model_name is not None, experiment is not None, everything)) != 1:
        raise click.BadParameter("give exactly one of --model, --experiment or --all", param_hint="--model")
    experiment_id = resolve_experiment(state.client, experiment).experiment_id if experiment else None
    kinds = [e.strip() for e in events.split(",") if e.strip()]
    with _store(state) as store:
        hook = store.create_webhook(url, kinds, model_name, experiment_id, description, secret)
    if as_json:
        print_json(hook)
        return
    err().print(
        f"Created webhook [{ID_STYLE}]{hook.webhook_id}[/] for {_scope(hook)}: {', '.join(hook.events)} "
        f"-> {esc(hook.url)}. Its signing secret is shown [bold]only now[/]:"
    )
    out().print(hook.secret, soft_wrap=True)
    err().print(f"[{DIM}]Check deliveries with: modelyard webhooks test {hook.webhook_id}[/]")


@webhooks.command("list")
@tracking_uri_option
@click.option("--model", "model_name", metavar="NAME", help="Only this registered model's webhooks.")
@click.option("--experiment", metavar="ID|NAME", help="Only this experiment's webhooks.")
@json_option
@pass_state
def list_webhooks(state: State, model_name: str | None, experiment: str | None, as_json: bool) -> None:
    """List webhooks (through a server: those you may manage).

    \b
    Example:
      modelyard webhooks list --model churn
    """
    experiment_id = resolve_experiment(state.client, experiment).experiment_id if experiment else None
    with _store(state) as store:
        found = store.list_webhooks(model_name, experiment_id)
    if as_json:
        print_json(found)
        return
    if not found:
        err().print("No webhooks. Create one with: modelyard webhooks create --model NAME --url URL")
        return
    table = new_table("Webhook id", "Follows", "Events", "URL", "State", "Created")
    table.columns[0].style = ID_STYLE
    for h in found:
        table.add_row(
            h.webhook_id,
            _scope(h),
            esc(", ".join(h.events)),
            esc(h.url),
            "[green]active[/]" if h.active else "[yellow]disabled[/]",
            fmt_time(h.created_time, short=True),
        )
    out().print(table)


@webhooks.command("deliveries")
@tracking_uri_option
@click.argument("webhook_id")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(1, 10_000), help="Most entries.")
@click.option("--state", "only", type=click.Choice([s.value for s in DeliveryState]), help="Only this state.")
@json_option
@pass_state
def deliveries(state: State, webhook_id: str, limit: int, only: str | None, as_json: bool) -> None:
    """Show a webhook's delivery log, newest first: state, attempts, last answer, error, duration.

    \b
    Example:
      modelyard webhooks deliveries 3f9a1c2b7d10aa01 --state failed
    """
    with _store(state) as store:
        found = store.list_deliveries(webhook_id, limit, DeliveryState(only) if only else None)
    if as_json:
        print_json(found)
        return
    if not found:
        err().print("No deliveries yet. Send one with: modelyard webhooks test " + esc(webhook_id))
        return
    table = new_table(
        "Delivery", "Event", "State", "Attempts", "Status", "Took", "Created", "Next / done", "Error"
    )
    for d in found:
        style = _STATE_STYLES.get(d.state.value, "")
        when = d.delivered_time if d.delivered_time else d.next_attempt_time
        table.add_row(
            str(d.delivery_id),
            esc(d.event_type or d.event_id),
            f"[{style}]{d.state.value}[/]",
            str(d.attempts),
            str(d.last_status) if d.last_status is not None else "-",
            fmt_duration(d.last_duration_ms),
            fmt_time(d.created_time, short=True),
            fmt_time(when, short=True) if when else "-",
            esc((d.last_error or "")[:80]),
        )
    out().print(table)


@webhooks.command("test")
@tracking_uri_option
@click.argument("webhook_id")
@json_option
@pass_state
def test(state: State, webhook_id: str, as_json: bool) -> None:
    """Send a signed `webhook.test` event to the webhook now, and show how its URL answered.

    Exits with status 1 when the URL did not answer with a 2xx status.

    \b
    Example:
      modelyard webhooks test 3f9a1c2b7d10aa01
    """
    from modelyard.registry.webhooks import send_test

    with _store(state) as store:
        delivery = send_test(store, webhook_id)
    if as_json:
        print_json(delivery)
    else:
        _show_delivery(delivery)
    if delivery.state is not DeliveryState.DELIVERED:
        raise click.exceptions.Exit(1)


@webhooks.command("delete")
@tracking_uri_option
@click.argument("webhook_id")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
@pass_state
def delete(state: State, webhook_id: str, yes: bool) -> None:
    """Delete a webhook and its delivery log.

    \b
    Example:
      modelyard webhooks delete 3f9a1c2b7d10aa01 --yes
    """
    if not yes:
        click.confirm(f"Delete webhook {webhook_id} and its delivery log?", abort=True, err=True)
    with _store(state) as store:
        store.delete_webhook(webhook_id)
    err().print(f"Deleted webhook {esc(webhook_id)}.")


def _set_active(state: State, webhook_id: str, active: bool) -> None:
    with _store(state) as store:
        hook = store.update_webhook(webhook_id, active=active)
    err().print(f"Webhook {hook.webhook_id} is {'active' if hook.active else 'disabled'}.")


@webhooks.command("disable")
@tracking_uri_option
@click.argument("webhook_id")
@pass_state
def disable(state: State, webhook_id: str) -> None:
    """Stop sending deliveries to a webhook (queued ones wait; new events are skipped until enabled).

    \b
    Example:
      modelyard webhooks disable 3f9a1c2b7d10aa01
    """
    _set_active(state, webhook_id, False)


@webhooks.command("enable")
@tracking_uri_option
@click.argument("webhook_id")
@pass_state
def enable(state: State, webhook_id: str) -> None:
    """Send deliveries to a disabled webhook again, for events from now on.

    \b
    Example:
      modelyard webhooks enable 3f9a1c2b7d10aa01
    """
    _set_active(state, webhook_id, True)


@webhooks.command("deliver")
@tracking_uri_option
@click.option(
    "--max-wait",
    default=300.0,
    show_default=True,
    type=click.FloatRange(0, 86_400),
    metavar="SECONDS",
    help="Give up after this long (retries back off: 1 s, 2 s, 4 s, ... up to 8 attempts).",
)
@click.option("--no-retry-wait", is_flag=True, help="Return once nothing is due, leaving retries for later.")
@pass_state
def deliver(state: State, max_wait: float, no_retry_wait: bool) -> None:
    """Send the queued deliveries of the embedded store (or a database no server runs on), until none is left.

    A server sends deliveries itself; the embedded store has no server, so its events wait in the database
    until this command runs (for example after a training script, or from cron).

    \b
    Example:
      modelyard webhooks deliver
      modelyard webhooks deliver --tracking-uri sqlite:///team.db --no-retry-wait
    """
    from modelyard.registry.webhooks import DrainStats, WebhookDispatcher
    from modelyard.store.sql.webhooks import SqlWebhookStore

    with _store(state) as store:
        if not isinstance(store, SqlWebhookStore):
            raise InvalidArgument(
                "A server sends its webhooks' deliveries itself; `deliver` is for a database."
            )
        dispatcher = WebhookDispatcher(store)
        console = err()
        with console.status("Delivering webhooks ...") as status:

            def progress(s: DrainStats) -> None:
                status.update(
                    f"Delivering webhooks: {s.delivered} delivered, {s.failed} failed, "
                    f"{s.retrying} retried, {s.pending} queued"
                )

            try:
                stats = dispatcher.drain(max_wait, progress, wait_for_retries=not no_retry_wait)
            finally:
                dispatcher.stop(drain_s=0)
    line = (
        f"{stats.delivered} delivered, {stats.failed} failed, {stats.retrying} attempts to retry, "
        f"{stats.pending} still queued."
    )
    err().print(("[yellow]" if stats.pending or stats.failed else "[green]") + line)
