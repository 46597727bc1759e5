"""Who may do what: roles per experiment and per registered model, checked at the interfaces every route goes
through, the tracking store and the model registry.

With auth on, each request's routes see an `AuthorizedStore`: the real store behind a check per method, so
the REST API v1, the MLflow-compatible API and the artifact proxies enforce the same rules without any
route knowing them. Admins may do everything; anyone else holds the role granted to them on the resource,
or the server's default role (MLflow's default: READ). Creating an experiment makes its creator its manager;
only admins choose its artifact location freely (see `locations`).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from modelyard.errors import PermissionDenied
from modelyard.schemas import (
    BatchSequence,
    DatasetInput,
    Experiment,
    Metric,
    MetricHistory,
    Param,
    Run,
    RunInfo,
    RunStatus,
    RunTag,
    SearchRunsPage,
    ViewType,
)
from modelyard.schemas.accounts import ResourceType, Role
from modelyard.schemas.registry import (
    GateCheck,
    GatePolicy,
    ModelVersion,
    ModelVersionsPage,
    RegisteredModel,
    RegisteredModelsPage,
    RegistryEvent,
    Stage,
    StageTransition,
)
from modelyard.store.base import TrackingStore
from modelyard.store.model_registry import ModelRegistryStore

if TYPE_CHECKING:
    from modelyard.server.locations import LocationPolicy
    from modelyard.store.sql.accounts import SqlAccountStore

CACHE_TTL_S = 5.0  # how long a worker trusts what it read about a token or a grant (revocation delay)
EXPERIMENT = ResourceType.EXPERIMENT
_ALL_EXPERIMENTS = 50_000  # the most experiments the store lists at once


@dataclass(frozen=True)
class Principal:
    user_id: int
    username: str
    is_admin: bool


@dataclass
class _TtlCache:
    ttl: float = CACHE_TTL_S
    _items: dict[object, tuple[float, object]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def get(self, key: object) -> object:
        item = self._items.get(key)
        return item[1] if item is not None and item[0] > time.monotonic() else _MISS

    def put(self, key: object, value: object) -> None:
        with self._lock:
            if len(self._items) > 100_000:
                self._items.clear()
            self._items[key] = (time.monotonic() + self.ttl, value)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


_MISS = object()


class Authorizer:
    """Role look-ups for one server process, cached for a few seconds (grants change rarely, checks are hot)."""

    def __init__(
        self,
        accounts: SqlAccountStore,
        store: TrackingStore,
        default_role: Role | None,
        locations: LocationPolicy,
    ) -> None:
        self.accounts, self.store, self.default_role = accounts, store, default_role
        self.locations = locations  # where non-admins may put an experiment's artifacts
        self._roles = _TtlCache()
        self._tokens = _TtlCache()
        self._touched: dict[str, float] = {}
        self._run_experiment: dict[str, str] = {}  # a run never changes experiment

    def cached_principal(self, token: str) -> Principal | None:
        found = self._tokens.get(token)
        return None if found is _MISS else found  # type: ignore[return-value]

    def authenticate(self, token: str) -> Principal:
        """The token's user (Unauthenticated, saying why, otherwise); records when each token was last used."""
        principal = self.cached_principal(token)
        if principal is None:
            user, token_id = self.accounts.authenticate(token)
            principal = Principal(user.user_id, user.username, user.is_admin)
            self._tokens.put(token, principal)
            now = time.time()
            if now - self._touched.get(token_id, 0.0) > 60:  # at most one write per token a minute
                self._touched[token_id] = now
                self.accounts.touch_token(token_id, int(now * 1000))
        return principal

    def role(self, who: Principal, resource_type: ResourceType, resource_id: str) -> Role | None:
        if who.is_admin:
            return Role.MANAGE
        key = (who.user_id, resource_type, resource_id)
        role = self._roles.get(key)
        if role is _MISS:
            role = self.accounts.role_of(who.user_id, resource_type, resource_id) or self.default_role
            self._roles.put(key, role)
        return role  # type: ignore[return-value]

    def require(self, who: Principal, resource_type: ResourceType, resource_id: str, needed: Role) -> None:
        role = self.role(who, resource_type, resource_id)
        if role is None or not role.allows(needed):
            kind = resource_type.value.replace("_", " ")
            has = f"the {role.value} role" if role else "no role"
            raise PermissionDenied(
                f"User {who.username!r} has {has} on {kind} {resource_id}; this needs {needed.value}. "
                f"Ask its manager or an admin to run: modelyard permissions grant {who.username} "
                f"{resource_type.value} {resource_id} {needed.value}"
            )

    def granted(self, who: Principal, resource_type: ResourceType) -> set[str]:
        return self.accounts.granted_ids(who.user_id, resource_type)

    def forget(self) -> None:
        """Drop what this process cached, after it changed a grant, a token or a user itself."""
        self._roles.clear()
        self._tokens.clear()

    def experiment_of_run(self, run_id: str) -> str:
        eid = self._run_experiment.get(run_id)
        if eid is None:
            eid = self.store.get_run(run_id).info.experiment_id
            if len(self._run_experiment) > 100_000:
                self._run_experiment.clear()
            self._run_experiment[run_id] = eid
        return eid


class AuthorizedStore(TrackingStore):
    """The tracking store as one request's principal may use it. `targets` collects what the request
    touched, for its audit-log entry."""

    def __init__(self, inner: TrackingStore, who: Principal, authz: Authorizer, targets: list[str]) -> None:
        self.inner, self.who, self.authz, self.targets = inner, who, authz, targets

    # checks ----------------------------------------------------------------------------------------------
    def require_experiment(self, experiment_id: str, needed: Role) -> None:
        experiment_id = str(experiment_id)
        if experiment_id.isdigit():
            experiment_id = str(int(experiment_id))  # grants name the canonical id: '07' is experiment 7
        self._note(f"experiment:{experiment_id}")
        self.authz.require(self.who, EXPERIMENT, str(experiment_id), needed)

    def require_run(self, run_id: str, needed: Role) -> None:
        self._note(f"run:{run_id}")
        self.require_experiment(self.authz.experiment_of_run(run_id), needed)

    def require_admin(self, action: str) -> None:
        if not self.who.is_admin:
            raise PermissionDenied(f"Only an admin may {action}; {self.who.username!r} is not one.")

    def _note(self, target: str) -> None:
        if target not in self.targets:
            self.targets.append(target)

    # experiments -----------------------------------------------------------------------------------------
    def create_experiment(
        self, name: str, artifact_location: str | None = None, tags: dict[str, str] | None = None
    ) -> str:
        if artifact_location and not self.who.is_admin:  # the server writes there: see `locations`
            self.authz.locations.check(self.who.username, artifact_location, self._artifact_locations)
        experiment_id = self.inner.create_experiment(name, artifact_location, tags)
        self._note(f"experiment:{experiment_id}")
        if not self.who.is_admin:
            self.authz.accounts.set_permission(self.who.username, EXPERIMENT, experiment_id, Role.MANAGE)
            self.authz.forget()
        return experiment_id

    def _artifact_locations(self) -> list[str]:
        """Every experiment's artifact location, deleted ones included (their files are still there)."""
        found = self.inner.search_experiments(ViewType.ALL, None, _ALL_EXPERIMENTS)
        if len(found) >= _ALL_EXPERIMENTS:  # cannot tell whether the location is free: refuse
            raise PermissionDenied(
                f"This server holds over {_ALL_EXPERIMENTS} experiments, too many to check that a chosen "
                "artifact location is free. Leave artifact_location out, or ask an admin to create the "
                "experiment."
            )
        return [e.artifact_location for e in found]

    def get_experiment(self, experiment_id: str) -> Experiment:
        experiment = self.inner.get_experiment(experiment_id)
        self.require_experiment(experiment.experiment_id, Role.READ)
        return experiment

    def get_experiment_by_name(self, name: str) -> Experiment | None:
        experiment = self.inner.get_experiment_by_name(name)
        if experiment is not None:
            self.require_experiment(experiment.experiment_id, Role.READ)
        return experiment

    def search_experiments(
        self,
        view_type: ViewType = ViewType.ACTIVE_ONLY,
        name_like: str | None = None,
        max_results: int = 1000,
    ) -> list[Experiment]:
        if self.who.is_admin or self.authz.default_role is not None:
            return self.inner.search_experiments(view_type, name_like, max_results)
        visible = self.authz.granted(self.who, EXPERIMENT)
        found = self.inner.search_experiments(view_type, name_like, 50_000)
        return [e for e in found if e.experiment_id in visible][:max_results]

    def rename_experiment(self, experiment_id: str, new_name: str) -> None:
        self.require_experiment(experiment_id, Role.EDIT)
        self.inner.rename_experiment(experiment_id, new_name)

    def delete_experiment(self, experiment_id: str) -> None:
        self.require_experiment(experiment_id, Role.MANAGE)
        self.inner.delete_experiment(experiment_id)

    def restore_experiment(self, experiment_id: str) -> None:
        self.require_experiment(experiment_id, Role.MANAGE)
        self.inner.restore_experiment(experiment_id)

    def purge_experiment(self, experiment_id: str) -> None:
        self.require_experiment(experiment_id, Role.MANAGE)
        self.inner.purge_experiment(experiment_id)
        self.authz.forget()

    def set_experiment_tag(self, experiment_id: str, key: str, value: str) -> None:
        self.require_experiment(experiment_id, Role.EDIT)
        self.inner.set_experiment_tag(experiment_id, key, value)

    def delete_experiment_tag(self, experiment_id: str, key: str) -> None:
        self.require_experiment(experiment_id, Role.EDIT)
        self.inner.delete_experiment_tag(experiment_id, key)

    # runs ------------------------------------------------------------------------------------------------
    def create_run(
        self,
        experiment_id: str,
        run_name: str | None = None,
        start_time: int | None = None,
        parent_run_id: str | None = None,
        tags: dict[str, str] | None = None,
        params: dict[str, str] | None = None,
        description: str | None = None,
    ) -> Run:
        self.require_experiment(experiment_id, Role.EDIT)
        run = self.inner.create_run(
            experiment_id, run_name, start_time, parent_run_id, tags, params, description
        )
        self._note(f"run:{run.run_id}")
        return run

    def get_run(self, run_id: str) -> Run:
        run = self.inner.get_run(run_id)
        self._note(f"run:{run_id}")
        self.require_experiment(run.info.experiment_id, Role.READ)
        return run

    def update_run(
        self,
        run_id: str,
        status: RunStatus | None = None,
        end_time: int | None = None,
        run_name: str | None = None,
        description: str | None = None,
    ) -> RunInfo:
        self.require_run(run_id, Role.EDIT)
        return self.inner.update_run(run_id, status, end_time, run_name, description)

    def end_run(
        self,
        run_id: str,
        status: RunStatus,
        end_time: int | None = None,
        metrics: Sequence[Metric] = (),
        sequence: BatchSequence | None = None,
    ) -> RunInfo:
        self.require_run(run_id, Role.EDIT)
        return self.inner.end_run(run_id, status, end_time, metrics, sequence)

    def delete_run(self, run_id: str) -> None:
        self.require_run(run_id, Role.MANAGE)
        self.inner.delete_run(run_id)

    def restore_run(self, run_id: str) -> None:
        self.require_run(run_id, Role.MANAGE)
        self.inner.restore_run(run_id)

    def purge_run(self, run_id: str) -> None:
        self.require_run(run_id, Role.MANAGE)
        self.inner.purge_run(run_id)

    def deleted_runs(self, older_than: int | None = None) -> list[Run]:
        self.require_admin("list deleted runs for garbage collection")
        return self.inner.deleted_runs(older_than)

    # logging ---------------------------------------------------------------------------------------------
    def log_batch(
        self,
        run_id: str,
        metrics: Sequence[Metric] = (),
        params: Sequence[Param] = (),
        tags: Sequence[RunTag] = (),
        sequence: BatchSequence | None = None,
    ) -> None:
        self.require_run(run_id, Role.EDIT)
        self.inner.log_batch(run_id, metrics, params, tags, sequence)

    def delete_tag(self, run_id: str, key: str) -> None:
        self.require_run(run_id, Role.EDIT)
        self.inner.delete_tag(run_id, key)

    def log_inputs(self, run_id: str, inputs: Sequence[DatasetInput]) -> None:
        self.require_run(run_id, Role.EDIT)
        self.inner.log_inputs(run_id, inputs)

    def get_metric_history(self, run_id: str, key: str) -> MetricHistory:
        self.require_run(run_id, Role.READ)
        return self.inner.get_metric_history(run_id, key)

    def get_latest_metrics(self, run_id: str) -> list[Metric]:
        self.require_run(run_id, Role.READ)
        return self.inner.get_latest_metrics(run_id)

    # search ----------------------------------------------------------------------------------------------
    def search_runs(
        self,
        experiment_ids: Sequence[str],
        filter_string: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
        page_token: str | None = None,
        view_type: ViewType = ViewType.ACTIVE_ONLY,
    ) -> SearchRunsPage:
        for experiment_id in experiment_ids:
            self.require_experiment(experiment_id, Role.READ)
        return self.inner.search_runs(
            experiment_ids, filter_string, order_by, max_results, page_token, view_type
        )


def require(store: TrackingStore, experiment_id: str, needed: Role) -> None:
    """Check a role on an experiment for routes that act beside the store (artifacts); a no-op with auth off."""
    if isinstance(store, AuthorizedStore):
        store.require_experiment(experiment_id, needed)


MODEL = ResourceType.REGISTERED_MODEL


class AuthorizedRegistry(ModelRegistryStore):
    """The model registry as one request's principal may use it (roles per registered model), with every
    change attributed to that user."""

    def __init__(
        self, inner: ModelRegistryStore, who: Principal, authz: Authorizer, targets: list[str]
    ) -> None:
        self.inner, self.who, self.authz, self.targets = inner, who, authz, targets

    def require_model(self, name: str, needed: Role) -> None:
        target = f"model:{name}"
        if target not in self.targets:
            self.targets.append(target)
        self.authz.require(self.who, MODEL, name, needed)

    def _visible(self, names: list[str]) -> set[str] | None:
        """The names the caller may read, or None for all of them."""
        if self.who.is_admin or self.authz.default_role is not None:
            return None
        return self.authz.granted(self.who, MODEL) & set(names)

    # registered models -----------------------------------------------------------------------------------
    def create_registered_model(
        self, name: str, description: str = "", tags: dict[str, str] | None = None
    ) -> RegisteredModel:
        created = self.inner.create_registered_model(name, description, tags)
        self.targets.append(f"model:{name}")
        if not self.who.is_admin:
            self.authz.accounts.set_permission(self.who.username, MODEL, name, Role.MANAGE)
            self.authz.forget()
        return created

    def get_registered_model(self, name: str) -> RegisteredModel:
        self.require_model(name, Role.READ)
        return self.inner.get_registered_model(name)

    def search_registered_models(
        self, filter_string: str | None = None, max_results: int = 100, page_token: str | None = None
    ) -> RegisteredModelsPage:
        page = self.inner.search_registered_models(filter_string, max_results, page_token)
        visible = self._visible([m.name for m in page.registered_models])
        if visible is not None:
            page.registered_models = [m for m in page.registered_models if m.name in visible]
        return page

    def update_registered_model(self, name: str, description: str) -> RegisteredModel:
        self.require_model(name, Role.EDIT)
        return self.inner.update_registered_model(name, description)

    def rename_registered_model(self, name: str, new_name: str) -> RegisteredModel:
        self.require_model(name, Role.MANAGE)
        renamed = self.inner.rename_registered_model(name, new_name)
        for grant in self.authz.accounts.list_permissions(resource_type=MODEL, resource_id=name):
            self.authz.accounts.set_permission(grant.username, MODEL, new_name, grant.role)
            self.authz.accounts.delete_permission(grant.username, MODEL, name)
        self.authz.forget()
        return renamed

    def delete_registered_model(self, name: str) -> None:
        self.require_model(name, Role.MANAGE)
        self.inner.delete_registered_model(name)
        for grant in self.authz.accounts.list_permissions(resource_type=MODEL, resource_id=name):
            self.authz.accounts.delete_permission(grant.username, MODEL, name)
        self.authz.forget()

    def set_registered_model_tag(self, name: str, key: str, value: str) -> None:
        self.require_model(name, Role.EDIT)
        self.inner.set_registered_model_tag(name, key, value)

    def delete_registered_model_tag(self, name: str, key: str) -> None:
        self.require_model(name, Role.EDIT)
        self.inner.delete_registered_model_tag(name, key)

    # versions --------------------------------------------------------------------------------------------
    def create_model_version(
        self,
        name: str,
        source: str,
        run_id: str | None = None,
        description: str = "",
        tags: dict[str, str] | None = None,
        signature: dict[str, object] | None = None,
        user: str | None = None,
    ) -> ModelVersion:
        self.require_model(name, Role.EDIT)
        return self.inner.create_model_version(
            name, source, run_id, description, tags, signature, self.who.username
        )

    def get_model_version(self, name: str, version: int | str) -> ModelVersion:
        self.require_model(name, Role.READ)
        return self.inner.get_model_version(name, version)

    def search_model_versions(
        self, filter_string: str | None = None, max_results: int = 100, page_token: str | None = None
    ) -> ModelVersionsPage:
        page = self.inner.search_model_versions(filter_string, max_results, page_token)
        visible = self._visible([mv.name for mv in page.model_versions])
        if visible is not None:
            page.model_versions = [mv for mv in page.model_versions if mv.name in visible]
        return page

    def update_model_version(self, name: str, version: int | str, description: str) -> ModelVersion:
        self.require_model(name, Role.EDIT)
        return self.inner.update_model_version(name, version, description)

    def delete_model_version(self, name: str, version: int | str, force: bool = False) -> None:
        self.require_model(name, Role.MANAGE)
        self.inner.delete_model_version(name, version, force)

    def set_model_version_tag(self, name: str, version: int | str, key: str, value: str) -> None:
        self.require_model(name, Role.EDIT)
        self.inner.set_model_version_tag(name, version, key, value)

    def delete_model_version_tag(self, name: str, version: int | str, key: str) -> None:
        self.require_model(name, Role.EDIT)
        self.inner.delete_model_version_tag(name, version, key)

    def get_latest_versions(
        self, name: str, stages: Sequence[Stage | str] | None = None
    ) -> list[ModelVersion]:
        self.require_model(name, Role.READ)
        return self.inner.get_latest_versions(name, stages)

    # stages and aliases ----------------------------------------------------------------------------------
    def transition_stage(
        self,
        name: str,
        version: int | str,
        stage: Stage | str,
        archive_existing: bool = False,
        comment: str = "",
        user: str | None = None,
    ) -> ModelVersion:
        self.require_model(name, Role.EDIT)
        return self.inner.transition_stage(name, version, stage, archive_existing, comment, self.who.username)

    def stage_history(self, name: str, version: int | str | None = None) -> list[StageTransition]:
        self.require_model(name, Role.READ)
        return self.inner.stage_history(name, version)

    def set_alias(self, name: str, alias: str, version: int | str, user: str | None = None) -> ModelVersion:
        self.require_model(name, Role.EDIT)
        return self.inner.set_alias(name, alias, version, self.who.username)

    def delete_alias(self, name: str, alias: str, user: str | None = None) -> None:
        self.require_model(name, Role.EDIT)
        self.inner.delete_alias(name, alias, self.who.username)

    def get_version_by_alias(self, name: str, alias: str) -> ModelVersion:
        self.require_model(name, Role.READ)
        return self.inner.get_version_by_alias(name, alias)

    # gates and events ------------------------------------------------------------------------------------
    def set_gate_policy(self, name: str, policy: GatePolicy) -> GatePolicy:
        self.require_model(name, Role.MANAGE)
        return self.inner.set_gate_policy(name, policy)

    def get_gate_policy(self, name: str) -> GatePolicy:
        self.require_model(name, Role.READ)
        return self.inner.get_gate_policy(name)

    def check_gates(self, name: str, version: int | str, target: str) -> list[GateCheck]:
        self.require_model(name, Role.READ)
        return self.inner.check_gates(name, version, target)

    def list_events(
        self, name: str | None = None, after_id: int = 0, max_results: int = 100
    ) -> list[RegistryEvent]:
        if name is None:
            if not self.who.is_admin:
                raise PermissionDenied("Only an admin may read every model's events; name a model.")
        else:
            self.require_model(name, Role.READ)
        return self.inner.list_events(name, after_id, max_results)


def require_models(
    who: Principal | None,
    authz: Authorizer | None,
    names: Iterable[str],
    needed: Role,
    targets: list[str] | None = None,
) -> None:
    """Check a role on each registered model, for records kept beside the registry (deployments: EDIT on
    every model of the traffic split to write one, READ to read it); a no-op with auth off."""
    if who is None or authz is None:
        return
    for name in sorted(set(names)):
        if targets is not None and f"model:{name}" not in targets:
            targets.append(f"model:{name}")
        authz.require(who, MODEL, name, needed)


def may_read_models(who: Principal | None, authz: Authorizer | None, names: Iterable[str]) -> bool:
    """Whether the caller holds READ on every one of these registered models (always, with auth off)."""
    if who is None or authz is None or who.is_admin:
        return True
    for name in set(names):
        role = authz.role(who, MODEL, name)
        if role is None or not role.allows(Role.READ):
            return False
    return True
