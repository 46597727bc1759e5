"""Pydantic v2 wire models: the one contract shared by stores, server, REST client, CLI and UI."""

from modelyard.schemas.tracking import (
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
    "Dataset",
    "DatasetInput",
    "Experiment",
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
