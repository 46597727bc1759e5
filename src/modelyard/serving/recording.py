"""A model server's deployment, kept in the tracking store: its traffic split when it starts, every change
while it serves (a canary's share, a promotion, an alias followed, a rollout's steps and outcome) and its
stop, as a `DeploymentRecorder` writes them (in the background, never failing the server). See
docs/deployments.md; `modelyard deployments list` and a model version's lineage show them."""

from __future__ import annotations

import os
import socket
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelyard.registry.deployments import DeploymentRecorder
    from modelyard.schemas.deployments import TrafficEntry
    from modelyard.serving.deployment import Deployment, ServedModel


def traffic_of(deployment: Deployment, name: str) -> list[TrafficEntry]:
    """The split of `name` now: primary and canary shares (adding up to 100), shadows at 100 (mirrored)."""
    from modelyard.schemas.deployments import TrafficEntry, TrafficRole

    split = deployment.split(name)
    canary = split.percent if split.canary is not None else 0.0
    served = [(split.primary, 100.0 - canary, "primary")]
    if split.canary is not None:
        served.append((split.canary, canary, "canary"))
    served += [(shadow, 100.0, "shadow") for shadow in split.shadows if shadow is not split.canary]
    return [
        TrafficEntry(**_identity(model), percent=percent, role=TrafficRole(role))
        for model, percent, role in served
    ]


def endpoint_for(host: str, port: int) -> str:
    """The URL clients call: this machine's name when the server listens on every address."""
    if host in ("0.0.0.0", "::", ""):
        host = socket.gethostname()
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


class DeploymentLog:
    """Records one served name of `deployment` from now on: created RUNNING with its traffic, then each change
    the deployment announces (`Deployment.changed`), until `stop` or `failed`."""

    def __init__(self, recorder: DeploymentRecorder, deployment: Deployment, name: str) -> None:
        self.recorder, self.deployment, self.name = recorder, deployment, name
        deployment.listeners.append(self._changed)

    @classmethod
    def start(
        cls, deployment: Deployment, name: str, endpoint: str, info: dict[str, Any] | None = None
    ) -> DeploymentLog:
        from modelyard.registry.deployments import DeploymentRecorder

        info = {"host": socket.gethostname(), "pid": os.getpid(), **(info or {})}
        traffic = traffic_of(deployment, name)
        recorder = DeploymentRecorder.start(
            name, traffic, endpoint, info=info, message="modelyard serve started"
        )
        return cls(recorder, deployment, name)

    @property
    def deployment_id(self) -> str:
        return self.recorder.deployment_id

    def stop(self, message: str = "modelyard serve stopped") -> None:
        self.recorder.stop(message)

    def failed(self, message: str) -> None:
        self.recorder.failed(message)

    def _changed(self, kind: str, message: str, details: dict[str, Any]) -> None:
        state = details.pop("state", None)
        if kind == "note":
            if state is not None:
                self.recorder.set_state(state, message, **details)
            else:
                self.recorder.event("note", message, **details)
            return
        outcome = kind if kind in ("promoted", "rolled_back") else None
        if outcome is not None and state is None:
            state = "RUNNING"  # a rollout ends, or an alias moved: one version serves again
        traffic = traffic_of(self.deployment, self.name)
        self.recorder.traffic_changed(traffic, message, kind=outcome, state=state, **details)


def _identity(model: ServedModel) -> dict[str, Any]:
    return identity(str(getattr(model.predictor, "uri", "") or ""), model.name)


def identity(uri: str, served_name: str) -> dict[str, Any]:
    """model_name, version and model_uri of a traffic entry: the registered ones for a pinned
    models:/NAME/VERSION, else the served name and no version."""
    from modelyard.errors import InvalidArgument
    from modelyard.registry.uris import parse_models_uri

    try:
        name, kind, version = parse_models_uri(uri)
    except InvalidArgument:
        kind = ""
    if kind != "version":
        return {"model_name": served_name, "version": None, "model_uri": uri or None}
    return {"model_name": name, "version": int(version), "model_uri": uri}
