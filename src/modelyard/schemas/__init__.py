"""Pydantic v2 wire models: the one contract shared by stores, server, REST client, CLI and UI."""

from modelyard.schemas.artifacts import FileInfo
from modelyard.schemas.tracking import (
    BatchSequence,
    Dataset,
    DatasetInput,
    Experiment,
    LifecycleStage,
    Metric,
    MetricHistory,
    Param,
    Run,
    RunData,
    RunInfo,
    RunStatus,
    RunTag,
    SearchRunsPage,
    ViewType,
)

__all__ = [
    "BatchSequence",
    "Dataset",
    "DatasetInput",
    "Experiment",
    "FileInfo",
    "LifecycleStage",
    "Metric",
    "MetricHistory",
    "Param",
    "Run",
    "RunData",
    "RunInfo",
    "RunStatus",
    "RunTag",
    "SearchRunsPage",
    "ViewType",
]
