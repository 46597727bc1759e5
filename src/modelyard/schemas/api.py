"""Request and response bodies of the REST API v1: used by the server's routes and by the REST store."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from modelyard.schemas.tracking import (
    BatchSequence,
    DatasetInput,
    Experiment,
    Metric,
    Param,
    RunStatus,
    RunTag,
    ViewType,
)


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid", ser_json_inf_nan="strings")


class CreateExperiment(_Body):
    name: str
    artifact_location: str | None = None
    tags: dict[str, str] | None = None


class ExperimentId(_Body):
    experiment_id: str


class ExperimentList(_Body):
    experiments: list[Experiment]


class RenameExperiment(_Body):
    name: str


class TagValue(_Body):
    value: str


class CreateRun(_Body):
    experiment_id: str = "0"
    run_name: str | None = None
    start_time: int | None = None
    parent_run_id: str | None = None
    tags: dict[str, str] | None = None
    params: dict[str, str] | None = None
    description: str | None = None


class UpdateRun(_Body):
    status: RunStatus | None = None
    end_time: int | None = None
    run_name: str | None = None
    description: str | None = None


class EndRun(_Body):
    status: RunStatus = RunStatus.FINISHED
    end_time: int | None = None
    metrics: list[Metric] = Field(default_factory=list)
    sequence: BatchSequence | None = None


class LogBatch(_Body):
    metrics: list[Metric] = Field(default_factory=list)
    params: list[Param] = Field(default_factory=list)
    tags: list[RunTag] = Field(default_factory=list)
    sequence: BatchSequence | None = None  # see BatchSequence: a re-sent batch is stored once


class LogInputs(_Body):
    inputs: list[DatasetInput]


class MetricList(_Body):
    metrics: list[Metric]


class SearchRuns(_Body):
    experiment_ids: list[str]
    filter: str | None = None
    order_by: list[str] | None = None
    max_results: int = Field(default=1000, ge=1, le=50_000)
    page_token: str | None = None
    view_type: ViewType = ViewType.ACTIVE_ONLY


class ErrorBody(_Body):
    error_code: str
    message: str
