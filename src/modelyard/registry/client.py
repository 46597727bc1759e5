"""`RegistryClient`: register, find, promote and alias model versions, on the embedded store or a server.

client = RegistryClient()                       # MODELYARD_TRACKING_URI, or the local store
mv = client.register_model("runs:/9f0c.../model", "churn")
client.set_gates("churn", ["metrics.accuracy >= 0.9", "metrics.accuracy >= champion"])
client.transition_stage("churn", mv.version, "Production", archive_existing=True)
client.set_alias("churn", "champion", mv.version)
"""

from __future__ import annotations

import getpass
import os
from collections.abc import Sequence
from typing import Any

from modelyard.errors import AlreadyExists, InvalidArgument
from modelyard.schemas.registry import (
    GateCheck,
    GatePolicy,
    GateRule,
    ModelVersion,
    RegisteredModel,
    RegistryEvent,
    Stage,
    StageTransition,
)
from modelyard.store.model_registry import ModelRegistryStore


def registry_store_for(tracking_uri: str) -> ModelRegistryStore:
    if tracking_uri.startswith(("http://", "https://")):
        from modelyard.store.rest_registry import RestModelRegistryStore

        return RestModelRegistryStore(tracking_uri)
    from modelyard.store.registry import tracking_store_for
    from modelyard.store.sql.model_registry import SqlModelRegistryStore
    from modelyard.store.sql.store import SqlTrackingStore

    tracking = tracking_store_for(tracking_uri)  # shared with the tracking client: one connection pool
    if not isinstance(tracking, SqlTrackingStore):
        raise InvalidArgument(f"The store at {tracking_uri!r} has no model registry.")
    return SqlModelRegistryStore(tracking)


def run_id_of(model_uri: str) -> str | None:
    """The run of a `runs:/<run_id>/<path>` URI (None for other sources)."""
    if model_uri.startswith("runs:/"):
        run_id = model_uri[len("runs:/") :].split("/", 1)[0]
        if not run_id:
            raise InvalidArgument(f"{model_uri!r} names no run: write runs:/<run_id>/<path>.")
        return run_id
    return None


def current_user() -> str | None:
    """Who acts, for the registry's history on the embedded store (a server knows its callers itself)."""
    try:
        return os.environ.get("MODELYARD_USER") or getpass.getuser()
    except Exception:
        return None


class RegistryClient:
    def __init__(self, tracking_uri: str | None = None) -> None:
        from modelyard.tracking.fluent import get_tracking_uri

        self.tracking_uri = tracking_uri or get_tracking_uri()  # my.set_tracking_uri applies here too
        self._store: ModelRegistryStore | None = None

    @property
    def store(self) -> ModelRegistryStore:
        if self._store is None:
            self._store = registry_store_for(self.tracking_uri)
        return self._store

    def __repr__(self) -> str:
        return f"RegistryClient(tracking_uri={self.tracking_uri!r})"

    # models and versions ---------------------------------------------------------------------------------
    def create_registered_model(
        self, name: str, description: str = "", tags: dict[str, Any] | None = None
    ) -> RegisteredModel:
        return self.store.create_registered_model(name, description, _text(tags))

    def get_registered_model(self, name: str) -> RegisteredModel:
        return self.store.get_registered_model(name)

    def search_registered_models(
        self, filter_string: str | None = None, max_results: int = 1000
    ) -> list[RegisteredModel]:
        return _all_pages(
            lambda token: self.store.search_registered_models(filter_string, max_results, token),
            "registered_models",
        )

    def register_model(
        self,
        model_uri: str,
        name: str,
        description: str = "",
        tags: dict[str, Any] | None = None,
        signature: dict[str, Any] | None = None,
    ) -> ModelVersion:
        """A new version of `name` (created if new) whose source is `model_uri` (e.g. runs:/<run_id>/model)."""
        try:
            self.store.create_registered_model(name)
        except AlreadyExists:
            pass  # registering a new version of an existing model: the usual case
        return self.store.create_model_version(
            name, model_uri, run_id_of(model_uri), description, _text(tags), signature, current_user()
        )

    def get_model_version(self, name: str, version: int | str) -> ModelVersion:
        return self.store.get_model_version(name, version)

    def search_model_versions(
        self, filter_string: str | None = None, max_results: int = 1000
    ) -> list[ModelVersion]:
        return _all_pages(
            lambda token: self.store.search_model_versions(filter_string, max_results, token),
            "model_versions",
        )

    def get_latest_versions(self, name: str, stages: Sequence[str] | None = None) -> list[ModelVersion]:
        return self.store.get_latest_versions(name, stages)

    def delete_model_version(self, name: str, version: int | str, force: bool = False) -> None:
        self.store.delete_model_version(name, version, force)

    def delete_registered_model(self, name: str) -> None:
        self.store.delete_registered_model(name)

    def set_model_version_tag(self, name: str, version: int | str, key: str, value: Any) -> None:
        self.store.set_model_version_tag(name, version, key, str(value))

    def approve(
        self, name: str, version: int | str, user: str | None = None, comment: str = "approved"
    ) -> None:
        """Record an approval (the tag `approval.<user>`), which `approvals >= N` gate rules count."""
        from modelyard.store.gates import APPROVAL_PREFIX

        who = user or current_user()
        if not who:
            raise InvalidArgument("Say who approves: pass user=... or set MODELYARD_USER.")
        self.store.set_model_version_tag(name, version, APPROVAL_PREFIX + who, comment)

    # promotion -------------------------------------------------------------------------------------------
    def transition_stage(
        self, name: str, version: int | str, stage: str, archive_existing: bool = False, comment: str = ""
    ) -> ModelVersion:
        return self.store.transition_stage(
            name, version, Stage.parse(stage), archive_existing, comment, current_user()
        )

    def stage_history(self, name: str, version: int | str | None = None) -> list[StageTransition]:
        return self.store.stage_history(name, version)

    def set_alias(self, name: str, alias: str, version: int | str) -> ModelVersion:
        return self.store.set_alias(name, alias, version, current_user())

    def delete_alias(self, name: str, alias: str) -> None:
        self.store.delete_alias(name, alias, current_user())

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        return self.store.get_version_by_alias(name, alias)

    def set_gates(self, name: str, rules: Sequence[str | dict[str, Any] | GateRule]) -> GatePolicy:
        """Replace the model's promotion policy: rules such as `metrics.accuracy >= 0.9`."""
        parsed = [GateRule(rule=r) if isinstance(r, str) else GateRule.model_validate(r) for r in rules]
        return self.store.set_gate_policy(name, GatePolicy(rules=parsed))

    def get_gates(self, name: str) -> GatePolicy:
        return self.store.get_gate_policy(name)

    def check_gates(self, name: str, version: int | str, target: str) -> list[GateCheck]:
        return self.store.check_gates(name, version, target)

    def events(
        self, name: str | None = None, after_id: int = 0, max_results: int = 100
    ) -> list[RegistryEvent]:
        return self.store.list_events(name, after_id, max_results)

    def close(self) -> None:
        if self._store is not None and self.tracking_uri.startswith(("http://", "https://")):
            self._store.close()  # SQL stores share the cached tracking store's engines


def _text(tags: dict[str, Any] | None) -> dict[str, str] | None:
    return None if tags is None else {str(k): str(v) for k, v in tags.items()}


def _all_pages(fetch: Any, field: str) -> list[Any]:
    found: list[Any] = []
    token = None
    while True:
        page = fetch(token)
        found += getattr(page, field)
        token = page.next_page_token
        if not token:
            return found
