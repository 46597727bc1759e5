"""Pipeline schedules in the tracking database, with the primitives of the server's scheduler.

Safe with several server processes on one database: a due schedule is claimed with one conditional UPDATE
on the `next_run_time` it was read with (and moved to the expression's next time after now), so of several
schedulers that saw it due, exactly one launches the run. A schedule whose times passed while no server
ran is due once: its next time is computed from now, never from the missed one.
"""

from __future__ import annotations

import json
import secrets
from typing import Any

from sqlalchemy import delete, insert, select, update
from sqlalchemy.exc import IntegrityError

from modelyard.errors import AlreadyExists, InvalidArgument, NotFound
from modelyard.schemas.pipelines import PipelineSchedule
from modelyard.store.pipeline_schedules import (
    PipelineScheduleStore,
    next_run_time,
    validate_cron,
    validate_name,
    validate_params,
    validate_target,
    validate_timezone,
)
from modelyard.store.sql.attached import AttachedStore
from modelyard.store.sql.store import now_ms
from modelyard.store.sql.tables import pipeline_schedules as table

MAX_ERROR = 7000


def _schedule(row: Any) -> PipelineSchedule:
    return PipelineSchedule(
        schedule_id=row.schedule_id,
        name=row.name,
        target=row.target,
        params=json.loads(row.params or "{}"),
        experiment=row.experiment,
        cron=row.cron,
        timezone=row.timezone,
        enabled=bool(row.enabled),
        next_run_time=row.next_run_time if row.enabled else None,
        last_run_time=row.last_run_time,
        last_run_id=row.last_run_id,
        last_status=row.last_status,
        last_error=row.last_error,
        created_by=row.created_by,
        created_time=row.created_time,
    )


def _not_found(name: str) -> NotFound:
    return NotFound(f"No pipeline schedule named {name!r}. See them with: modelyard pipelines schedules list")


class SqlPipelineScheduleStore(AttachedStore, PipelineScheduleStore):
    """Schedules by name, sharing the tracking store's engines and transactions."""

    def create_schedule(
        self,
        name: str,
        target: str,
        cron: str,
        params: dict[str, Any] | None = None,
        experiment: str | None = None,
        timezone: str = "UTC",
        enabled: bool = True,
        created_by: str | None = None,
        now: int | None = None,
    ) -> PipelineSchedule:
        now = now_ms() if now is None else now
        name, target = validate_name(name), validate_target(target)
        timezone = validate_timezone(timezone)
        cron = validate_cron(cron, timezone)
        values = validate_params(params)
        if experiment is not None and not (0 < len(experiment.strip()) <= 256 and experiment.isprintable()):
            raise InvalidArgument(
                "The experiment of a schedule is a name or id of 1 to 256 printable characters."
            )
        row = {
            "schedule_id": secrets.token_hex(8),
            "name": name,
            "target": target,
            "params": json.dumps(values),
            "experiment": experiment.strip() if experiment else None,
            "cron": cron,
            "timezone": timezone,
            "enabled": bool(enabled),
            "next_run_time": next_run_time(cron, timezone, now) if enabled else None,
            "created_by": created_by,
            "created_time": now,
        }
        try:
            with self._tx() as conn:
                conn.execute(insert(table).values(**row))
        except IntegrityError:
            raise AlreadyExists(
                f"A pipeline schedule named {name!r} exists already: give another --name, or change it with "
                f"modelyard pipelines schedules pause|resume|delete {name}"
            ) from None
        return self.get_schedule(name)

    def get_schedule(self, name: str) -> PipelineSchedule:
        with self._ro() as conn:
            row = conn.execute(select(table).where(table.c.name == str(name))).first()
        if row is None:
            raise _not_found(name)
        return _schedule(row)

    def list_schedules(self) -> list[PipelineSchedule]:
        with self._ro() as conn:
            return [_schedule(r) for r in conn.execute(select(table).order_by(table.c.name))]

    def update_schedule(
        self,
        name: str,
        enabled: bool | None = None,
        cron: str | None = None,
        params: dict[str, Any] | None = None,
        timezone: str | None = None,
        now: int | None = None,
    ) -> PipelineSchedule:
        now = now_ms() if now is None else now
        with self._tx() as conn:
            row = conn.execute(select(table).where(table.c.name == str(name))).first()
            if row is None:
                raise _not_found(name)
            changes: dict[str, Any] = {}
            zone = validate_timezone(timezone) if timezone is not None else row.timezone
            expression = validate_cron(cron, zone) if cron is not None else row.cron
            if params is not None:
                changes["params"] = json.dumps(validate_params(params))
            active = bool(row.enabled) if enabled is None else bool(enabled)
            changes.update(cron=expression, timezone=zone, enabled=active)
            retimed = cron is not None or timezone is not None or (active and not row.enabled)
            if not active:
                changes["next_run_time"] = None
            elif retimed or row.next_run_time is None:
                changes["next_run_time"] = next_run_time(expression, zone, now)
            conn.execute(update(table).where(table.c.schedule_id == row.schedule_id).values(**changes))
        return self.get_schedule(name)

    def delete_schedule(self, name: str) -> None:
        with self._tx() as conn:
            gone = conn.execute(delete(table).where(table.c.name == str(name))).rowcount
        if not gone:
            raise _not_found(name)

    # the scheduler's primitives --------------------------------------------------------------------------
    def due(self, now: int | None = None, limit: int = 100) -> list[PipelineSchedule]:
        """Enabled schedules whose next run time has come, earliest first."""
        now = now_ms() if now is None else now
        query = (
            select(table)
            .where(table.c.enabled.is_(True), table.c.next_run_time <= now)
            .order_by(table.c.next_run_time)
            .limit(limit)
        )
        with self._ro() as conn:
            return [_schedule(r) for r in conn.execute(query)]

    def claim(self, schedule: PipelineSchedule, now: int | None = None) -> PipelineSchedule | None:
        """Take a due schedule for one run: its next run time moves to the expression's next time after
        now, and it shows as RUNNING. None when another scheduler took it first (or it changed since)."""
        now = now_ms() if now is None else now
        try:
            following = next_run_time(schedule.cron, schedule.timezone, now)
        except InvalidArgument:
            following = None  # cannot happen for a validated expression; never fire again rather than loop
        with self._tx() as conn:
            won = conn.execute(
                update(table)
                .where(
                    table.c.schedule_id == schedule.schedule_id,
                    table.c.enabled.is_(True),
                    table.c.next_run_time == schedule.next_run_time,
                )
                .values(
                    next_run_time=following,
                    last_run_time=now,
                    last_run_id=None,
                    last_status="RUNNING",
                    last_error=None,
                )
            ).rowcount
        if won != 1:
            return None
        return schedule.model_copy(
            update={
                "next_run_time": following,
                "last_run_time": now,
                "last_run_id": None,
                "last_status": "RUNNING",
                "last_error": None,
            }
        )

    def start_now(self, name: str, now: int | None = None) -> PipelineSchedule:
        """Mark a schedule as RUNNING for a run started by hand (its next scheduled time stays)."""
        now = now_ms() if now is None else now
        with self._tx() as conn:
            found = conn.execute(
                update(table)
                .where(table.c.name == str(name))
                .values(last_run_time=now, last_run_id=None, last_status="RUNNING", last_error=None)
            ).rowcount
        if not found:
            raise _not_found(name)
        return self.get_schedule(name)

    def record_result(
        self,
        schedule_id: str,
        started: int,
        run_id: str | None,
        status: str,
        error: str | None = None,
    ) -> bool:
        """The outcome of the run that started at `started`; False when a later run (or a delete) replaced it."""
        with self._tx() as conn:
            done = conn.execute(
                update(table)
                .where(table.c.schedule_id == schedule_id, table.c.last_run_time == started)
                .values(
                    last_run_id=run_id,
                    last_status=status[:16],
                    last_error=error[-MAX_ERROR:] if error else None,
                )
            ).rowcount
        return bool(done)


__all__ = ["SqlPipelineScheduleStore"]
