"""Wire models for experiments, runs and what is logged to them. Times are milliseconds since the epoch."""

from __future__ import annotations

from enum import Enum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, GetCoreSchemaHandler, GetPydanticSchema
from pydantic_core import core_schema


class RunStatus(str, Enum):
    RUNNING = "RUNNING"
    SCHEDULED = "SCHEDULED"
    FINISHED = "FINISHED"
    FAILED = "FAILED"
    KILLED = "KILLED"

    @property
    def is_terminal(self) -> bool:
        return self in (RunStatus.FINISHED, RunStatus.FAILED, RunStatus.KILLED)


class LifecycleStage(str, Enum):
    ACTIVE = "active"
    DELETED = "deleted"


class ViewType(str, Enum):
    ACTIVE_ONLY = "ACTIVE_ONLY"
    DELETED_ONLY = "DELETED_ONLY"
    ALL = "ALL"

    def stages(self) -> tuple[str, ...]:
        return {
            ViewType.ACTIVE_ONLY: ("active",),
            ViewType.DELETED_ONLY: ("deleted",),
            ViewType.ALL: ("active", "deleted"),
        }[self]


class _Model(BaseModel):
    # NaN and ±inf travel as the strings "NaN", "Infinity", "-Infinity": metrics keep them, JSON has no token.
    model_config = ConfigDict(frozen=True, extra="forbid", ser_json_inf_nan="strings")


class Experiment(_Model):
    experiment_id: str
    name: str
    artifact_location: str
    lifecycle_stage: LifecycleStage = LifecycleStage.ACTIVE
    creation_time: int | None = None
    last_update_time: int | None = None
    tags: dict[str, str] = Field(default_factory=dict)


def _metric_value(_: Any, __: GetCoreSchemaHandler) -> core_schema.CoreSchema:
    """A float; in JSON, a number within the float range or a string such as "NaN" or "Infinity". A JSON
    number past the range (1e400, or the integer 10**400) would parse as infinity: an error instead, as are
    the bare NaN/Infinity tokens, which a parser cannot tell from it (protobuf, MLflow's parser, refuses
    them too)."""
    return core_schema.json_or_python_schema(
        json_schema=core_schema.union_schema(
            [
                core_schema.float_schema(allow_inf_nan=False),
                core_schema.chain_schema([core_schema.str_schema(), core_schema.float_schema()]),
            ],
            mode="left_to_right",
            custom_error_type="metric_value",
            custom_error_message="Input should be a number within the float range (about ±1.8e308), "
            'or "NaN", "Infinity" or "-Infinity" as a string',
        ),
        python_schema=core_schema.float_schema(),
    )


MetricValue = Annotated[float, GetPydanticSchema(_metric_value)]


class Metric(_Model):
    key: str
    value: MetricValue
    timestamp: int
    step: int = 0


class BatchSequence(_Model):
    """Where a batch of metric points sits in its writer's numbering: they are points `first_seq`,
    `first_seq + 1`, ... that writer `writer_id` gave the run. A store keeps the last number it stored per
    writer and run, and skips the points it already has, so a batch sent twice is stored once."""

    writer_id: str = Field(pattern="^[0-9a-f]{32}$")
    first_seq: int = Field(ge=1, le=2**63 - 1)


class Param(_Model):
    key: str
    value: str


class RunTag(_Model):
    key: str
    value: str


class Dataset(_Model):
    name: str
    digest: str
    source: str | None = None
    source_type: str | None = None
    schema_: dict[str, str] | None = Field(default=None, alias="schema")
    num_rows: int | None = None
    profile: str | None = None  # as the logging client sent it (MLflow: JSON with num_rows, num_elements)

    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True, ser_json_inf_nan="strings")


class DatasetInput(_Model):
    dataset: Dataset
    context: str | None = None


class RunInfo(_Model):
    run_id: str
    experiment_id: str
    run_name: str
    status: RunStatus
    start_time: int
    end_time: int | None = None
    artifact_uri: str
    lifecycle_stage: LifecycleStage = LifecycleStage.ACTIVE
    parent_run_id: str | None = None
    description: str | None = None


class RunData(_Model):
    """Latest value of each metric, all params and tags."""

    metrics: dict[str, float] = Field(default_factory=dict)
    params: dict[str, str] = Field(default_factory=dict)
    tags: dict[str, str] = Field(default_factory=dict)


class Run(_Model):
    info: RunInfo
    data: RunData = Field(default_factory=RunData)
    inputs: list[DatasetInput] = Field(default_factory=list)

    @property
    def run_id(self) -> str:
        return self.info.run_id

    def to_flat_dict(self) -> dict[str, Any]:
        """One row per run, as `search_runs(output="pandas")` returns it."""
        row: dict[str, Any] = {
            "run_id": self.info.run_id,
            "experiment_id": self.info.experiment_id,
            "run_name": self.info.run_name,
            "status": self.info.status.value,
            "start_time": self.info.start_time,
            "end_time": self.info.end_time,
            "parent_run_id": self.info.parent_run_id,
            "artifact_uri": self.info.artifact_uri,
        }
        row.update({f"metrics.{k}": v for k, v in self.data.metrics.items()})
        row.update({f"params.{k}": v for k, v in self.data.params.items()})
        row.update({f"tags.{k}": v for k, v in self.data.tags.items()})
        return row


class MetricHistory(_Model):
    """Every point of one metric, as parallel columns ordered by step then timestamp.

    Columns instead of a list of objects: 100,000 points load in milliseconds and go straight into numpy.
    """

    key: str
    steps: list[int]
    values: list[float]
    timestamps: list[int]

    def __len__(self) -> int:
        return len(self.steps)

    def points(self) -> list[Metric]:
        return [
            Metric(key=self.key, value=v, step=s, timestamp=t)
            for s, v, t in zip(self.steps, self.values, self.timestamps)
        ]

    def to_numpy(self) -> Any:
        import numpy as np

        return np.asarray(self.steps), np.asarray(self.values, dtype=float), np.asarray(self.timestamps)


class SearchRunsPage(_Model):
    runs: list[Run]
    next_page_token: str | None = None
