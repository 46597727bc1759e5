"""`modelyard deployments`: where models are served (endpoint, traffic split, state) and each deployment's
rollout history, as model servers (`modelyard serve`, rollouts) recorded them."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator, Sequence

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
    key_value_grid,
    new_table,
    out,
    pass_state,
    print_json,
    tracking_uri_option,
)
from modelyard.schemas.deployments import Deployment, DeploymentState, TrafficEntry
from modelyard.store.deployments import DeploymentStore

STATE_STYLES = {
    "RUNNING": "green",
    "ROLLING_OUT": "yellow",
    "STARTING": "cyan",
    "FAILED": "red",
    "STOPPED": "dim",
}
KIND_STYLES = {
    "promoted": "green",
    "rolled_back": "yellow",
    "failed": "red",
    "stopped": "dim",
    "started": "cyan",
}


@contextlib.contextmanager
def _store(state: State) -> Iterator[DeploymentStore]:
    from modelyard.registry.deployments import deployment_store_for

    store = deployment_store_for(state.tracking_uri)
    try:
        yield store
    finally:
        store.close()


def _state(value: str) -> str:
    style = STATE_STYLES.get(value, "")
    return f"[{style}]{value}[/]" if style else value


def _live_state(deployment: Deployment, now: int) -> str:
    """The recorded state, and how long its model server has been silent when it missed its heartbeats
    (killed without recording its stop, or its machine lost)."""
    silent = deployment.silent_for(now)
    if silent is None:
        return _state(deployment.state.value)
    return f"{_state(deployment.state.value)} [red](silent {fmt_duration(silent * 1000)})[/]"


def fmt_traffic(traffic: Sequence[TrafficEntry]) -> str:
    """`iris v3 90%, canary iris v4 10%, shadow iris v5 100%` (roles other than primary are named)."""
    parts = []
    for t in traffic:
        role = "" if t.role.value == "primary" else f"{t.role.value} "
        version = f" v{t.version}" if t.version is not None else ""
        parts.append(f"{role}{t.model_name}{version} {t.percent:g}%")
    return ", ".join(parts)


@click.group("deployments")
def deployments() -> None:
    """See where models are served: endpoint, traffic split between versions, state, rollout history.

    Model servers record their deployments in the tracking store (through the server's REST API on
    http://...); a model version's lineage (`modelyard models lineage`) lists the deployments that served it.

    \b
    Example:
      modelyard deployments list --model iris --version 3
      modelyard deployments list --state RUNNING
      modelyard deployments show 3f9a1c2b7d10aa01
      modelyard deployments stop 3f9a1c2b7d10aa01 --message "host lost"
    """


@deployments.command("list")
@click.option("--model", "model_name", metavar="NAME", help="Only deployments that served this model.")
@click.option("--version", type=click.IntRange(min=1), help="... and this version of it (needs --model).")
@click.option(
    "--state",
    "state_name",
    metavar="STATE",
    help=f"Only deployments in this state: {', '.join(s.value for s in DeploymentState)}.",
)
@click.option("--name", help="Only deployments serving under this name.")
@click.option(
    "--limit", default=100, show_default=True, type=click.IntRange(1, 10_000), help="At most this many."
)
@tracking_uri_option
@json_option
@pass_state
def list_deployments(
    state: State,
    model_name: str | None,
    version: int | None,
    state_name: str | None,
    name: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List deployments, newest first, with their traffic split.

    --model/--version find the deployments whose traffic holds or held that model (version). A running
    deployment whose model server missed three heartbeats is shown as silent (it was probably killed
    without recording its stop).

    \b
    Example:
      modelyard deployments list
      modelyard deployments list --model iris --version 3 --state RUNNING
      modelyard deployments list --json
    """
    if version is not None and model_name is None:
        raise click.BadParameter("--version needs --model", param_hint="--version")
    with _store(state) as store:
        found = store.list_deployments(model_name, version, state_name, name, limit)
    if as_json:
        print_json(found)
        return
    if not found:
        err().print(
            "No deployments recorded" + (" for that filter." if model_name or state_name or name else " yet.")
        )
        return
    table = new_table("ID", "Name", "Endpoint", "Target", "State", "Traffic", "Updated", "By")
    table.columns[0].style = ID_STYLE
    now = int(time.time() * 1000)
    for d in found:
        table.add_row(
            d.deployment_id, esc(d.name), esc(d.endpoint), d.target.value, _live_state(d, now),
            esc(fmt_traffic(d.traffic)), fmt_time(d.updated_time, short=True), esc(d.created_by or ""),
        )  # fmt: skip
    out().print(table)
    if any(d.silent_for(now) is not None for d in found):
        err().print(
            "Silent: its model server missed three heartbeats. If that server is gone, record its stop with "
            "`modelyard deployments stop ID`."
        )


@deployments.command("show")
@click.argument("deployment_id", metavar="ID")
@click.option(
    "--limit", default=1000, show_default=True, type=click.IntRange(1, 10_000), help="Events shown."
)
@tracking_uri_option
@json_option
@pass_state
def show(state: State, deployment_id: str, limit: int, as_json: bool) -> None:
    """Show a deployment, its traffic split and its history (oldest event first).

    \b
    Example:
      modelyard deployments show 3f9a1c2b7d10aa01
      modelyard deployments show 3f9a1c2b7d10aa01 --json
    """
    with _store(state) as store:
        found = store.get_deployment(deployment_id)
        events = store.list_events(deployment_id, limit=limit)
    if as_json:
        print_json({"deployment": found, "events": events})
        return
    info = ", ".join(f"{k}={v}" for k, v in found.info.items())
    rows = [
        ("ID", f"[{ID_STYLE}]{found.deployment_id}[/]"),
        ("Name", esc(found.name)),
        ("Endpoint", esc(found.endpoint)),
        ("Target", found.target.value),
        ("State", _live_state(found, int(time.time() * 1000))),
        ("Info", esc(info) or f"[{DIM}]-[/]"),
        (
            "Created",
            f"{fmt_time(found.created_time)}" + (f" by {esc(found.created_by)}" if found.created_by else ""),
        ),
        ("Updated", fmt_time(found.updated_time)),
        *([("Heartbeat", fmt_time(found.heartbeat_time))] if found.heartbeat_time is not None else []),
    ]
    out().print(key_value_grid(rows))
    uris = any(t.model_uri for t in found.traffic)
    traffic = new_table("Model", "Version", "Role", "Percent", *(["URI"] if uris else []), title="Traffic")
    for t in found.traffic:
        traffic.add_row(
            esc(t.model_name), str(t.version) if t.version is not None else "-", t.role.value,
            f"{t.percent:g}%", *([esc(t.model_uri or "")] if uris else []),
        )  # fmt: skip
    out().print(traffic)
    history = new_table("Time", "Event", "State", "Traffic", "Message", "By", title="History")
    for e in events:
        style = KIND_STYLES.get(e.kind.value, "")
        details = ", ".join(f"{k}={v}" for k, v in e.details.items() if k not in ("endpoint", "target"))
        message = esc(e.message) + (f" [{DIM}]({esc(details)})[/]" if details else "")
        history.add_row(
            fmt_time(e.time), f"[{style}]{e.kind.value}[/]" if style else e.kind.value, _state(e.state.value),
            esc(fmt_traffic(e.traffic)), message, esc(e.user or ""),
        )  # fmt: skip
    out().print(history)


@deployments.command("stop")
@click.argument("deployment_id", metavar="ID")
@click.option("--message", "-m", default="", help="Why, kept in the history (default: stopped by hand).")
@tracking_uri_option
@json_option
@pass_state
def stop(state: State, deployment_id: str, message: str, as_json: bool) -> None:
    """Record that a deployment stopped, for a model server that could not record it itself (killed with
    SIGKILL, its machine lost: shown as silent). It only changes the record, it stops no server; a
    server still running records its own stop when you stop it (Ctrl-C, SIGTERM). A stopped record
    no longer changes.

    \b
    Example:
      modelyard deployments stop 3f9a1c2b7d10aa01
      modelyard deployments stop 3f9a1c2b7d10aa01 --message "node ml-7 lost"
    """
    from modelyard.registry.client import current_user

    with _store(state) as store:
        found = store.update_deployment(
            deployment_id, kind="stopped", message=message or "stopped by hand", user=current_user()
        )
    if as_json:
        print_json(found)
        return
    out().print(
        f"Deployment [{ID_STYLE}]{found.deployment_id}[/] ({esc(found.name)}) is now {_state(found.state.value)}."
    )
