"""Deployment records in the tracking database: the deployments, their event history, and the index of
every model version a deployment served (for "the deployments of a version" and lineage).

Every write is one transaction: creating a deployment writes its row, its `started` event and its versions;
an update changes the row, appends its event and adds the versions new to its traffic. Writers on one
database lose nothing: event ids come from the database (autoincrement / sequence), SQLite serialises
writers with BEGIN IMMEDIATE, and on PostgreSQL an update or event locks the deployment's row first
(SELECT ... FOR UPDATE), so each event's snapshot of state and traffic is the one its change produced.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Iterable, Mapping
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Connection, and_, insert, select, update
from sqlalchemy.exc import IntegrityError

from modelyard.errors import AlreadyExists, InvalidArgument, InvalidState, NotFound
from modelyard.schemas.deployments import (
    Deployment,
    DeploymentEvent,
    DeploymentState,
    DeploymentTarget,
    EventKind,
    TrafficEntry,
)
from modelyard.store.deployments import (
    DeploymentStore,
    event_kind,
    parse_state,
    parse_target,
    update_kind,
    validate_endpoint,
    validate_id,
    validate_json,
    validate_limit,
    validate_message,
    validate_name,
    validate_traffic,
)
from modelyard.store.sql.attached import AttachedStore
from modelyard.store.sql.store import SqlTrackingStore, now_ms
from modelyard.store.sql.tables import deployment_events, deployment_versions, deployments, model_versions

NO_VERSION = 0  # deployment_versions.version of a model that is not a registered version


def _traffic_json(traffic: list[TrafficEntry]) -> str:
    return json.dumps([t.model_dump(mode="json") for t in traffic])


def _traffic(text: str | None) -> list[TrafficEntry]:
    return [TrafficEntry.model_validate(t) for t in json.loads(text or "[]")]


def _deployment(row: Any) -> Deployment:
    return Deployment(
        deployment_id=row.deployment_id,
        name=row.name,
        endpoint=row.endpoint,
        target=DeploymentTarget(row.target),
        state=DeploymentState(row.state),
        traffic=_traffic(row.traffic),
        info=json.loads(row.info or "{}"),
        created_by=row.created_by,
        created_time=row.created_time,
        updated_time=row.updated_time,
        heartbeat_time=row.heartbeat_time,
    )


def _event(row: Any) -> DeploymentEvent:
    return DeploymentEvent(
        event_id=row.event_id,
        deployment_id=row.deployment_id,
        time=row.time,
        kind=EventKind(row.kind),
        message=row.message or "",
        state=DeploymentState(row.state),
        traffic=_traffic(row.traffic),
        details=json.loads(row.details or "{}"),
        user=row.user,
    )


def _not_found(deployment_id: str) -> NotFound:
    return NotFound(f"No deployment with id {deployment_id!r}. See them with: modelyard deployments list")


class SqlDeploymentStore(AttachedStore, DeploymentStore):
    """Deployment records, sharing the tracking store's engines and transactions."""

    def __init__(self, tracking: SqlTrackingStore) -> None:
        super().__init__(tracking)
        self._postgres = tracking._write.dialect.name == "postgresql"

    # helpers ---------------------------------------------------------------------------------------------
    def _row(self, conn: Connection, deployment_id: str, lock: bool = False) -> Any:
        query = select(deployments).where(deployments.c.deployment_id == str(deployment_id))
        if lock and self._postgres:
            query = query.with_for_update()
        row = conn.execute(query).first()
        if row is None:
            raise _not_found(deployment_id)
        return row

    @staticmethod
    def _check_versions(conn: Connection, traffic: list[TrafficEntry]) -> None:
        """Every registered version in the traffic exists (a folder or runs:/ model has no version)."""
        for entry in traffic:
            if entry.version is None:
                continue
            found = conn.execute(
                select(model_versions.c.version).where(
                    model_versions.c.name == entry.model_name, model_versions.c.version == entry.version
                )
            ).first()
            if found is None:
                raise NotFound(
                    f"No version {entry.version} of registered model {entry.model_name!r} (traffic entry "
                    f"{entry.role.value}). Give version null for a model that is not registered."
                )

    def _add_versions(
        self, conn: Connection, deployment_id: str, traffic: list[TrafficEntry], now: int
    ) -> None:
        rows = [
            {
                "deployment_id": deployment_id,
                "model_name": t.model_name,
                "version": t.version if t.version is not None else NO_VERSION,
                "first_time": now,
            }
            for t in traffic
        ]
        unique = list({(r["model_name"], r["version"]): r for r in rows}.values())
        stmt = self._upsert(deployment_versions).on_conflict_do_nothing(
            index_elements=["deployment_id", "model_name", "version"]
        )
        conn.execute(stmt, unique)

    @staticmethod
    def _append(
        conn: Connection,
        deployment_id: str,
        now: int,
        kind: EventKind,
        message: str,
        state: str,
        traffic: str,
        details: dict[str, Any],
        user: str | None,
    ) -> int:
        return int(
            conn.execute(
                insert(deployment_events)
                .values(
                    deployment_id=deployment_id, time=now, kind=kind.value, message=message, state=state,
                    traffic=traffic, details=json.dumps(details), user=user,
                )
                .returning(deployment_events.c.event_id)
            ).scalar_one()
        )  # fmt: skip

    # deployments -----------------------------------------------------------------------------------------
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
        now: int | None = None,
    ) -> Deployment:
        now = now_ms() if now is None else now
        deployment_id = validate_id(deployment_id) if deployment_id is not None else secrets.token_hex(8)
        name, endpoint = validate_name(name), validate_endpoint(endpoint)
        split, kind_of, begun = validate_traffic(traffic), parse_target(target), parse_state(state)
        if begun.is_final:
            raise InvalidArgument("A deployment cannot start STOPPED.")
        values, message = validate_json("info", info), validate_message(message)
        traffic_text = _traffic_json(split)
        row = {
            "deployment_id": deployment_id,
            "name": name,
            "endpoint": endpoint,
            "target": kind_of.value,
            "state": begun.value,
            "traffic": traffic_text,
            "info": json.dumps(values),
            "created_by": user,
            "created_time": now,
            "updated_time": now,
            "heartbeat_time": None,
        }
        try:
            with self._tx() as conn:
                self._check_versions(conn, split)
                conn.execute(insert(deployments).values(**row))
                self._add_versions(conn, deployment_id, split, now)
                details = {"endpoint": endpoint, "target": kind_of.value}
                self._append(conn, deployment_id, now, EventKind.STARTED, message, begun.value, traffic_text,
                             details, user)  # fmt: skip
        except IntegrityError:
            raise AlreadyExists(f"A deployment with id {deployment_id!r} exists already.") from None
        return _deployment(SimpleNamespace(**row))

    def get_deployment(self, deployment_id: str) -> Deployment:
        with self._ro() as conn:
            return _deployment(self._row(conn, deployment_id))

    def list_deployments(
        self,
        model_name: str | None = None,
        version: int | None = None,
        state: DeploymentState | str | None = None,
        name: str | None = None,
        limit: int = 100,
    ) -> list[Deployment]:
        limit = validate_limit(limit)
        query = select(deployments)
        if version is not None and model_name is None:
            raise InvalidArgument("A version filter needs the model's name too (model_name).")
        if model_name is not None:
            served = select(deployment_versions.c.deployment_id).where(
                deployment_versions.c.model_name == str(model_name)
            )
            if version is not None:
                if isinstance(version, bool) or not str(version).isdigit():
                    raise InvalidArgument(f"A model version is a number, got {version!r}.")
                served = served.where(deployment_versions.c.version == int(version))
            query = query.where(deployments.c.deployment_id.in_(served))
        if state is not None:
            query = query.where(deployments.c.state == parse_state(state).value)
        if name is not None:
            query = query.where(deployments.c.name == str(name))
        query = query.order_by(deployments.c.created_time.desc(), deployments.c.deployment_id.desc()).limit(
            limit
        )
        with self._ro() as conn:
            return [_deployment(r) for r in conn.execute(query)]

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
        now: int | None = None,
    ) -> Deployment:
        now = now_ms() if now is None else now
        split = validate_traffic(traffic) if traffic is not None else None
        new_state = parse_state(state) if state is not None else None
        chosen, new_state = update_kind(kind, new_state, split is not None)
        if split is None and new_state is None and info is None:
            raise InvalidArgument(
                "Nothing to change: give traffic, state or info (record a note with POST "
                "/api/v1/deployments/ID/events)."
            )
        message, extra = validate_message(message), validate_json("details", details)
        values = validate_json("info", info) if info is not None else None
        with self._tx() as conn:
            row = self._row(conn, deployment_id, lock=True)
            was = DeploymentState(row.state)
            if was.is_final:
                raise InvalidState(
                    f"Deployment {row.deployment_id!r} is STOPPED: its traffic and state no longer change. "
                    "A new model server records a new deployment."
                )
            changes: dict[str, Any] = {"updated_time": now}
            if split is not None:
                self._check_versions(conn, split)
                changes["traffic"] = _traffic_json(split)
                self._add_versions(conn, row.deployment_id, split, now)
            if new_state is not None:
                changes["state"] = new_state.value
                if new_state is not was:
                    extra = {"previous_state": was.value, **extra}
            if values is not None:
                changes["info"] = json.dumps(values)
            if not message and chosen is EventKind.NOTE and new_state is not None:
                message = f"{new_state.value} (was {was.value})"
            conn.execute(
                update(deployments).where(deployments.c.deployment_id == row.deployment_id).values(**changes)
            )
            self._append(conn, row.deployment_id, now, chosen, message, changes.get("state", row.state),
                         changes.get("traffic", row.traffic), extra, user)  # fmt: skip
            return _deployment(self._row(conn, row.deployment_id))

    def heartbeat(self, deployment_id: str, now: int | None = None) -> None:
        now = now_ms() if now is None else now
        with self._tx() as conn:
            row = self._row(conn, deployment_id)
            if DeploymentState(row.state).is_final:
                raise InvalidState(
                    f"Deployment {row.deployment_id!r} is STOPPED; a running model server records a new one."
                )
            conn.execute(
                update(deployments)
                .where(deployments.c.deployment_id == row.deployment_id)
                .values(heartbeat_time=now)
            )

    # events ----------------------------------------------------------------------------------------------
    def add_event(
        self,
        deployment_id: str,
        kind: EventKind | str = EventKind.NOTE,
        message: str = "",
        details: Mapping[str, Any] | None = None,
        user: str | None = None,
        now: int | None = None,
    ) -> DeploymentEvent:
        now = now_ms() if now is None else now
        chosen, message = event_kind(kind), validate_message(message)
        extra = validate_json("details", details)
        with self._tx() as conn:
            row = self._row(conn, deployment_id, lock=True)
            conn.execute(
                update(deployments)
                .where(deployments.c.deployment_id == row.deployment_id)
                .values(updated_time=now)
            )
            event_id = self._append(conn, row.deployment_id, now, chosen, message, row.state, row.traffic,
                                    extra, user)  # fmt: skip
            found = conn.execute(
                select(deployment_events).where(deployment_events.c.event_id == event_id)
            ).one()
            return _event(found)

    def list_events(self, deployment_id: str, after_id: int = 0, limit: int = 1000) -> list[DeploymentEvent]:
        limit = validate_limit(limit)
        if isinstance(after_id, bool) or not isinstance(after_id, int) or after_id < 0:
            raise InvalidArgument(f"after_id must be a non-negative event id, got {after_id!r}.")
        query = (
            select(deployment_events)
            .where(
                and_(
                    deployment_events.c.deployment_id == str(deployment_id),
                    deployment_events.c.event_id > after_id,
                )
            )
            .order_by(deployment_events.c.event_id)
            .limit(limit)
        )
        with self._ro() as conn:
            self._row(conn, deployment_id)
            return [_event(r) for r in conn.execute(query)]


__all__ = ["SqlDeploymentStore"]
