"""The deployment record store interface, and the rules every implementation shares: ids, endpoints,
traffic splits, states and event kinds.

Two implementations: `sql.deployments.SqlDeploymentStore` on the tracking database (what the server uses,
and the SDK pointed at a database) and `rest_deployments.RestDeploymentStore` over a running server's
/api/v1/deployments.

Traffic rules: at least one entry with role `primary`; the primary and canary shares add up to 100 (a
shadow's share is the part of the requests mirrored to it, 0 to 100, and is not counted); a registered
model version appears at most once. A STOPPED deployment is final: its traffic and state no longer change
(notes may still be added); a FAILED one may recover.
"""

from __future__ import annotations

import abc
import json
import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from pydantic import ValidationError

from modelyard.errors import InvalidArgument
from modelyard.schemas.deployments import (
    Deployment,
    DeploymentEvent,
    DeploymentState,
    DeploymentTarget,
    EventKind,
    TrafficEntry,
    TrafficRole,
)
from modelyard.store.validation import is_http_url

_ID_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
MAX_JSON = 64_000  # characters of `info` or `details` as JSON
MAX_MESSAGE = 5000
MAX_LIMIT = 10_000
# Kinds that only an update (which changes what they say changed) records; add_event refuses them.
UPDATE_KINDS = (EventKind.TRAFFIC_CHANGED, EventKind.STOPPED, EventKind.FAILED)
TOLERANCE = 0.01  # percent points the primary and canary shares may miss 100 by (rounding)


def validate_id(deployment_id: object) -> str:
    if not isinstance(deployment_id, str) or not _ID_RE.match(deployment_id):
        raise InvalidArgument(
            f"Invalid deployment id {deployment_id!r}: use 1-64 letters, digits, '_', '.' or '-', starting "
            "with a letter or digit."
        )
    return deployment_id


def validate_name(name: object) -> str:
    text = name.strip() if isinstance(name, str) else ""
    if not text or len(text) > 256 or not text.isprintable():
        raise InvalidArgument(
            f"Invalid deployment name {name!r}: give the served model's name (1-256 printable characters)."
        )
    return text


def validate_endpoint(endpoint: object) -> str:
    url = endpoint.strip() if isinstance(endpoint, str) else ""
    if not is_http_url(url) or " " in url:
        raise InvalidArgument(
            f"Invalid deployment endpoint {str(endpoint)[:200]!r}: give the http:// or https:// URL clients "
            "call, e.g. http://10.0.0.5:8080."
        )
    return url


def validate_message(message: object) -> str:
    text = "" if message is None else str(message)
    if len(text) > MAX_MESSAGE:
        raise InvalidArgument(f"An event message has at most {MAX_MESSAGE} characters, got {len(text)}.")
    if "\x00" in text:
        raise InvalidArgument("An event message cannot hold a NUL character.")
    return text


def validate_json(what: str, value: Mapping[str, Any] | None) -> dict[str, Any]:
    """A JSON object (no NaN or infinity) of at most MAX_JSON characters."""
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) for k in value):
        raise InvalidArgument(f"The deployment's {what} must be an object with string keys.")
    try:
        text = json.dumps(dict(value), allow_nan=False, default=str)
    except (TypeError, ValueError) as exc:
        raise InvalidArgument(f"The deployment's {what} must be JSON (no NaN or infinity): {exc}.") from None
    if len(text) > MAX_JSON:
        raise InvalidArgument(f"The deployment's {what} takes at most {MAX_JSON} characters as JSON.")
    if "\\u0000" in text:
        raise InvalidArgument(f"The deployment's {what} cannot hold a NUL character.")
    return json.loads(text)  # type: ignore[no-any-return]


def _describe(entry: TrafficEntry) -> str:
    version = f" v{entry.version}" if entry.version is not None else ""
    return f"{entry.role.value} {entry.model_name}{version} {entry.percent:g}%"


def validate_traffic(traffic: Iterable[TrafficEntry | Mapping[str, Any]] | None) -> list[TrafficEntry]:
    """The traffic split checked: shares in range, primary + canary = 100, a version listed once."""
    if traffic is None or isinstance(traffic, (str, bytes, Mapping)):
        raise InvalidArgument("Give the traffic as a list of {model_name, version, percent, role} entries.")
    entries: list[TrafficEntry] = []
    for i, raw in enumerate(traffic):
        try:
            entry = raw if isinstance(raw, TrafficEntry) else TrafficEntry.model_validate(raw)
            entry = TrafficEntry.model_validate(entry.model_dump())  # re-check an entry built unvalidated
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or 'entry'}: {e['msg']}" for e in exc.errors()[:3]
            )
            raise InvalidArgument(f"Invalid traffic entry {i + 1}: {problems}.") from None
        if not math.isfinite(entry.percent):
            raise InvalidArgument(f"Invalid traffic entry {i + 1}: percent must be between 0 and 100.")
        if not entry.model_name.strip() or not entry.model_name.isprintable():
            raise InvalidArgument(f"Invalid traffic entry {i + 1}: model_name {entry.model_name!r}.")
        entries.append(entry)
    if not entries:
        raise InvalidArgument(
            "A deployment serves at least one model: give a traffic entry with role primary."
        )
    if len(entries) > 64:
        raise InvalidArgument(f"A traffic split has at most 64 entries, got {len(entries)}.")
    if not any(e.role is TrafficRole.PRIMARY for e in entries):
        raise InvalidArgument(
            "The traffic split has no primary: give one entry with role 'primary' (canaries and shadows "
            "run beside a primary)."
        )
    seen: set[tuple[str, int]] = set()
    for e in entries:
        if e.version is not None:
            if (e.model_name, e.version) in seen:
                raise InvalidArgument(
                    f"Version {e.version} of {e.model_name!r} is listed twice in the traffic split; "
                    "list it once."
                )
            seen.add((e.model_name, e.version))
    answering = [e for e in entries if e.role is not TrafficRole.SHADOW]
    total = sum(e.percent for e in answering)
    if abs(total - 100.0) > TOLERANCE:
        parts = ", ".join(_describe(e) for e in answering)
        raise InvalidArgument(
            f"The primary and canary shares must add up to 100%, got {total:g}% ({parts}). Shadows are not "
            "counted: their percent is the share of requests mirrored to them."
        )
    return entries


def validate_limit(limit: object) -> int:
    if isinstance(limit, bool) or not isinstance(limit, int) or not 1 <= limit <= MAX_LIMIT:
        raise InvalidArgument(f"limit must be between 1 and {MAX_LIMIT}, got {limit!r}.")
    return limit


def parse_state(state: DeploymentState | str) -> DeploymentState:
    try:
        return DeploymentState(str(getattr(state, "value", state)).strip().upper())
    except ValueError:
        raise InvalidArgument(
            f"Unknown deployment state {state!r}: use one of {', '.join(s.value for s in DeploymentState)}."
        ) from None


def parse_target(target: DeploymentTarget | str) -> DeploymentTarget:
    try:
        return DeploymentTarget(str(getattr(target, "value", target)).strip().lower())
    except ValueError:
        raise InvalidArgument(
            f"Unknown deployment target {target!r}: use one of "
            f"{', '.join(t.value for t in DeploymentTarget)}."
        ) from None


def parse_kind(kind: EventKind | str) -> EventKind:
    try:
        return EventKind(str(getattr(kind, "value", kind)).strip().lower())
    except ValueError:
        raise InvalidArgument(
            f"Unknown deployment event kind {kind!r}: use one of {', '.join(k.value for k in EventKind)}."
        ) from None


def update_kind(
    kind: EventKind | str | None,
    state: DeploymentState | None,
    traffic_changed: bool,
) -> tuple[EventKind, DeploymentState | None]:
    """The event kind an update records, and the state it sets (a `stopped` or `failed` kind implies it)."""
    if kind is not None:
        chosen = parse_kind(kind)
        if chosen is EventKind.STARTED:
            raise InvalidArgument("A deployment's `started` event is recorded when it is created.")
        implied = {EventKind.STOPPED: DeploymentState.STOPPED, EventKind.FAILED: DeploymentState.FAILED}.get(
            chosen
        )
        if implied is not None:
            if state is not None and state is not implied:
                raise InvalidArgument(
                    f"A `{chosen.value}` event sets the state {implied.value}, not {state.value}."
                )
            state = implied
        if chosen is EventKind.TRAFFIC_CHANGED and not traffic_changed:
            raise InvalidArgument("A `traffic_changed` event needs the new traffic.")
        return chosen, state
    if state is DeploymentState.STOPPED:
        return EventKind.STOPPED, state
    if state is DeploymentState.FAILED:
        return EventKind.FAILED, state
    return (EventKind.TRAFFIC_CHANGED if traffic_changed else EventKind.NOTE), state


def event_kind(kind: EventKind | str) -> EventKind:
    """A kind add_event may record: the others say a change happened, so only an update records them."""
    chosen = parse_kind(kind)
    if chosen is EventKind.STARTED or chosen in UPDATE_KINDS:
        raise InvalidArgument(
            f"A `{chosen.value}` event records a change: make the change with an update (PATCH "
            "/api/v1/deployments/ID with traffic or state), which records the event with it."
        )
    return chosen


class DeploymentStore(abc.ABC):
    """Deployment records and their event history. Through a server, writing needs EDIT on every registered
    model in the traffic split (before and after the change), reading needs READ on them."""

    @abc.abstractmethod
    def create_deployment(
        self,
        name: str,
        endpoint: str,
        traffic: Iterable[TrafficEntry | Mapping[str, Any]],
        target: DeploymentTarget | str = DeploymentTarget.LOCAL,
        state: DeploymentState | str = DeploymentState.STARTING,
        info: Mapping[str, Any] | None = None,
        message: str = "",
        deployment_id: str | None = None,
        user: str | None = None,
    ) -> Deployment:
        """A new record, with its `started` event. AlreadyExists if `deployment_id` is taken."""

    @abc.abstractmethod
    def get_deployment(self, deployment_id: str) -> Deployment:
        """NotFound if there is no such deployment."""

    @abc.abstractmethod
    def list_deployments(
        self,
        model_name: str | None = None,
        version: int | None = None,
        state: DeploymentState | str | None = None,
        name: str | None = None,
        limit: int = 100,
    ) -> list[Deployment]:
        """Newest first. `model_name` (and `version`): the deployments whose traffic ever held that model
        (version), now or earlier; `name`: the served name."""

    @abc.abstractmethod
    def update_deployment(
        self,
        deployment_id: str,
        traffic: Iterable[TrafficEntry | Mapping[str, Any]] | None = None,
        state: DeploymentState | str | None = None,
        message: str = "",
        kind: EventKind | str | None = None,
        details: Mapping[str, Any] | None = None,
        info: Mapping[str, Any] | None = None,
        user: str | None = None,
    ) -> Deployment:
        """Change traffic, state and/or info, and append the event that says so, in one transaction."""

    @abc.abstractmethod
    def add_event(
        self,
        deployment_id: str,
        kind: EventKind | str = EventKind.NOTE,
        message: str = "",
        details: Mapping[str, Any] | None = None,
        user: str | None = None,
    ) -> DeploymentEvent:
        """Append a note (or a promoted / rolled_back event that changed no traffic) to the history."""

    @abc.abstractmethod
    def list_events(self, deployment_id: str, after_id: int = 0, limit: int = 1000) -> list[DeploymentEvent]:
        """The history, oldest first, from after `after_id`."""

    @abc.abstractmethod
    def heartbeat(self, deployment_id: str) -> None:
        """The model server is alive: sets `heartbeat_time` (no event). InvalidState once STOPPED."""

    def deployments_of_version(self, model_name: str, version: int) -> list[Deployment]:
        """Every deployment that served (or serves) that model version, newest first (for lineage)."""
        return self.list_deployments(model_name=model_name, version=int(version), limit=MAX_LIMIT)

    @abc.abstractmethod
    def close(self) -> None: ...


__all__ = [
    "DeploymentStore",
    "event_kind",
    "parse_kind",
    "parse_state",
    "parse_target",
    "update_kind",
    "validate_endpoint",
    "validate_id",
    "validate_json",
    "validate_limit",
    "validate_message",
    "validate_name",
    "validate_traffic",
]
