"""Wire models of deployment records: where a model server serves which model versions, with what traffic
split, in what state, and the history of its rollout. Times are milliseconds since the epoch.

A deployment is recorded by whoever runs the model server (`modelyard serve`, a rollout, a KServe
submission) through the tracking server's /api/v1/deployments, and a model version's lineage links to the
deployments that served it."""

from __future__ import annotations

from enum import Enum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

SILENT_AFTER_BEATS = 3  # heartbeat intervals without one before a running deployment counts as silent


class DeploymentState(str, Enum):
    STARTING = "STARTING"  # loading models, not answering yet
    RUNNING = "RUNNING"  # answering requests
    ROLLING_OUT = "ROLLING_OUT"  # a rollout moves traffic between versions
    STOPPED = "STOPPED"  # shut down on purpose; final
    FAILED = "FAILED"  # crashed or cannot serve; may recover (back to RUNNING)

    @property
    def is_final(self) -> bool:
        return self is DeploymentState.STOPPED


class DeploymentTarget(str, Enum):
    LOCAL = "local"  # a `modelyard serve` process (info: host, pid, ...)
    KSERVE = "kserve"  # a KServe InferenceService (info: namespace, ...)


class TrafficRole(str, Enum):
    PRIMARY = "primary"  # answers the requests the canary does not take
    CANARY = "canary"  # answers `percent` of the requests
    SHADOW = "shadow"  # sees a copy of `percent` of the requests; never answers


class EventKind(str, Enum):
    STARTED = "started"
    TRAFFIC_CHANGED = "traffic_changed"
    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    STOPPED = "stopped"
    FAILED = "failed"
    NOTE = "note"


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TrafficEntry(_Model):
    """One served model in a deployment's traffic split. The primary and canary shares add up to 100; a
    shadow's `percent` is the share of requests mirrored to it (100: every request)."""

    model_name: str = Field(min_length=1, max_length=256)  # the registered model (or served folder) name
    version: int | None = Field(default=None, ge=1)  # the registered version; None: not a registered model
    percent: float = Field(ge=0, le=100)
    role: TrafficRole = TrafficRole.PRIMARY
    model_uri: str | None = Field(
        default=None, max_length=2000
    )  # what was asked for, e.g. models:/iris@champion


class Deployment(_Model):
    deployment_id: str
    name: str  # the served model name (in the server's URLs)
    endpoint: str  # the URL clients call, e.g. http://10.0.0.5:8080
    target: DeploymentTarget = DeploymentTarget.LOCAL
    state: DeploymentState
    traffic: list[TrafficEntry]
    info: dict[str, Any] = Field(default_factory=dict)  # free form: host, pid / namespace, image, ...
    created_by: str | None = None
    created_time: int
    updated_time: int  # the last change or event
    # The model server's last heartbeat; it sends one every `info["heartbeat_s"]` seconds while it runs.
    heartbeat_time: int | None = None

    def silent_for(self, now: int) -> float | None:
        """Seconds since the model server was last heard from (its last heartbeat, or the record's last
        change), when that is more than `SILENT_AFTER_BEATS` of its heartbeat intervals: a server killed
        without recording its stop (SIGKILL, a lost machine) leaves its record RUNNING, and this tells.
        None while it beats, once the deployment ended, and for records without heartbeats (KServe)."""
        interval = self.info.get("heartbeat_s")
        if self.state.is_final or isinstance(interval, bool) or not isinstance(interval, (int, float)):
            return None
        heard = max(self.heartbeat_time or 0, self.updated_time)
        silent = (now - heard) / 1000
        return silent if silent > SILENT_AFTER_BEATS * interval else None

    def share_of(self, model_name: str, version: int | None) -> TrafficEntry | None:
        """The traffic entry serving that version now (None: not in the current split)."""
        return next((t for t in self.traffic if t.model_name == model_name and t.version == version), None)


class DeploymentEvent(_Model):
    """One step of a deployment's history, with its state and traffic as they were after it."""

    event_id: int
    deployment_id: str
    time: int
    kind: EventKind
    message: str = ""
    state: DeploymentState
    traffic: list[TrafficEntry] = Field(default_factory=list)
    details: dict[str, Any] = Field(default_factory=dict)
    user: str | None = None


# request and response bodies of /api/v1/deployments --------------------------------------------------------
class CreateDeployment(_Model):
    name: str = Field(min_length=1, max_length=256)
    endpoint: str = Field(min_length=1, max_length=2000)
    traffic: list[TrafficEntry] = Field(min_length=1, max_length=64)
    target: DeploymentTarget = DeploymentTarget.LOCAL
    state: DeploymentState = DeploymentState.STARTING
    info: dict[str, Any] = Field(default_factory=dict)
    message: str = Field(default="", max_length=5000)  # of the `started` event
    # Given by the client (e.g. the model server) to know the id before the server answers and to make a
    # retried create harmless; default: a random one.
    deployment_id: str | None = Field(default=None, min_length=1, max_length=64)


class UpdateDeployment(_Model):
    """Change traffic and/or state; the change is recorded as one event (`kind`: by default traffic_changed,
    stopped or failed after what changed; promoted or rolled_back when a rollout says so)."""

    traffic: list[TrafficEntry] | None = Field(default=None, min_length=1, max_length=64)
    state: DeploymentState | None = None
    message: str = Field(default="", max_length=5000)
    kind: EventKind | None = None
    details: dict[str, Any] = Field(default_factory=dict)
    info: dict[str, Any] | None = None  # replaces the deployment's info


class NewDeploymentEvent(_Model):
    kind: EventKind = EventKind.NOTE
    message: str = Field(default="", max_length=5000)
    details: dict[str, Any] = Field(default_factory=dict)


class DeploymentList(_Model):
    deployments: list[Deployment]


class DeploymentEventList(_Model):
    events: list[DeploymentEvent]


__all__ = [
    "CreateDeployment",
    "Deployment",
    "DeploymentEvent",
    "DeploymentEventList",
    "DeploymentList",
    "DeploymentState",
    "DeploymentTarget",
    "EventKind",
    "NewDeploymentEvent",
    "TrafficEntry",
    "TrafficRole",
    "UpdateDeployment",
]
