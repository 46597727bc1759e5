"""Pipeline schedules over a running server's /api/v1/pipelines/schedules, with the caller's token
(MODELYARD_TOKEN; with auth on the server wants an admin): the server keeps them and its scheduler runs them."""

from __future__ import annotations

from typing import Any

from modelyard.schemas.pipelines import CreateSchedule, PipelineSchedule, ScheduleList, UpdateSchedule
from modelyard.store.pipeline_schedules import PipelineScheduleStore
from modelyard.store.rest_resource import RestResource, segment


class RestScheduleStore(RestResource, PipelineScheduleStore):
    def create_schedule(
        self,
        name: str,
        target: str,
        cron: str,
        params: dict[str, Any] | None = None,
        experiment: str | None = None,
        timezone: str = "UTC",
        enabled: bool = True,
    ) -> PipelineSchedule:
        body = CreateSchedule(
            name=name,
            target=target,
            cron=cron,
            params=params or {},
            experiment=experiment,
            timezone=timezone,
            enabled=enabled,
        )
        return PipelineSchedule.model_validate(self._call("POST", "/pipelines/schedules", body))

    def get_schedule(self, name: str) -> PipelineSchedule:
        return PipelineSchedule.model_validate(self._call("GET", f"/pipelines/schedules/{segment(name)}"))

    def list_schedules(self) -> list[PipelineSchedule]:
        return ScheduleList.model_validate(self._call("GET", "/pipelines/schedules")).schedules

    def update_schedule(
        self,
        name: str,
        enabled: bool | None = None,
        cron: str | None = None,
        params: dict[str, Any] | None = None,
        timezone: str | None = None,
    ) -> PipelineSchedule:
        body = UpdateSchedule(enabled=enabled, cron=cron, params=params, timezone=timezone)
        return PipelineSchedule.model_validate(
            self._call("PATCH", f"/pipelines/schedules/{segment(name)}", body)
        )

    def delete_schedule(self, name: str) -> None:
        self._call("DELETE", f"/pipelines/schedules/{segment(name)}")

    def run_schedule(self, name: str) -> PipelineSchedule:
        """The server starts a run of the schedule now, in the background; the schedule shows it RUNNING."""
        return PipelineSchedule.model_validate(
            self._call("POST", f"/pipelines/schedules/{segment(name)}/run")
        )


__all__ = ["RestScheduleStore"]
