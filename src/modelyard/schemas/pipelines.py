"""Wire models of pipeline runs (as the REST API and the dashboard read them) and of pipeline schedules.
Times are milliseconds since the epoch; durations are seconds."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


# pipeline runs ---------------------------------------------------------------------------------------------
class PipelineRunSummary(_Model):
    """One pipeline run, as listed: its status and how many of its step instances are in each state."""

    run_id: str
    run_name: str | None = None
    pipeline: str
    experiment_id: str
    status: str  # the parent run's status: RUNNING, FINISHED, FAILED, KILLED
    start_time: int | None = None
    end_time: int | None = None
    params: dict[str, Any] = Field(default_factory=dict)
    steps: dict[str, int] = Field(default_factory=dict)  # step state -> number of instances in it


class PipelineRunList(_Model):
    runs: list[PipelineRunSummary]


class PipelineStep(_Model):
    """The latest record of one step instance (e.g. `train[1]`, one iteration of a loop)."""

    instance: str
    step: str
    state: str  # PENDING, READY, RUNNING, WAITING, SUCCEEDED, CACHED, SKIPPED, FAILED, CANCELLED
    run_id: str | None = None  # the step's child run (its log, metrics and outputs)
    cache: str | None = None  # hit | miss | off
    cached_from: str | None = None  # with a cache hit: the step run whose outputs were reused
    attempts: int = 0
    error: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    duration_s: float | None = None
    outputs: dict[str, dict[str, Any]] = Field(default_factory=dict)


class PipelineRunDetail(_Model):
    """A pipeline run with its DAG (`graph`, as the pipeline built it) and each step instance's record."""

    run_id: str
    pipeline: str
    status: str
    start_time: int | None = None
    end_time: int | None = None
    experiment_id: str
    params: dict[str, Any] = Field(default_factory=dict)
    executor: str | None = None
    graph: dict[str, Any] = Field(default_factory=dict)
    steps: list[PipelineStep] = Field(default_factory=list)


# schedules -------------------------------------------------------------------------------------------------
class PipelineSchedule(_Model):
    """A pipeline that the server runs on a cron schedule, with the outcome of its latest run."""

    schedule_id: str
    name: str
    target: str  # FILE.py:FUNCTION (an absolute path on the server's host) or package.module:FUNCTION
    params: dict[str, Any] = Field(default_factory=dict)  # passed as --param KEY=VALUE
    experiment: str | None = None  # default: the pipeline's name
    cron: str  # 5 fields (minute hour day-of-month month day-of-week) or @hourly, @daily, ...
    timezone: str = "UTC"  # the cron expression's time zone
    enabled: bool = True
    next_run_time: int | None = None  # None while paused
    last_run_time: int | None = None  # when the latest run started
    last_run_id: str | None = None  # its pipeline run (known once it ended)
    last_status: str | None = None  # RUNNING while it runs, then FINISHED, FAILED or KILLED
    last_error: str | None = None
    created_by: str | None = None
    created_time: int


class CreateSchedule(_Model):
    name: str = Field(min_length=1, max_length=128)
    target: str = Field(min_length=3, max_length=2000)
    cron: str = Field(min_length=1, max_length=200)
    params: dict[str, Any] = Field(default_factory=dict, max_length=200)
    experiment: str | None = Field(default=None, max_length=256)
    timezone: str = Field(default="UTC", max_length=64)
    enabled: bool = True


class UpdateSchedule(_Model):
    enabled: bool | None = None
    cron: str | None = Field(default=None, min_length=1, max_length=200)
    params: dict[str, Any] | None = Field(default=None, max_length=200)
    timezone: str | None = Field(default=None, max_length=64)


class ScheduleList(_Model):
    schedules: list[PipelineSchedule]


__all__ = [
    "CreateSchedule",
    "PipelineRunDetail",
    "PipelineRunList",
    "PipelineRunSummary",
    "PipelineSchedule",
    "PipelineStep",
    "ScheduleList",
    "UpdateSchedule",
]
