"""Pipelines: isolated, cached steps wired into a DAG that runs locally, on Ray, or on Kubeflow Pipelines.

import modelyard as my
from modelyard.pipelines import Dataset, Model

@my.step
def load(n: int) -> Dataset: ...

@my.pipeline
def training(n: int = 1000): ...

run = my.run_pipeline(training, {"n": 500})
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

# Each public name and its module, imported on first use: the server imports `pipelines.records` without
# paying for the runner and the DSL at startup.
_EXPORTS = {
    **dict.fromkeys(
        ("Pipeline", "Step", "StepOptions", "collect", "condition", "parallel_for", "pipeline", "step"),
        "modelyard.pipelines.dsl",
    ),
    **dict.fromkeys(
        ("PipelineCancelled", "PipelineRun", "resume", "run_pipeline"), "modelyard.pipelines.runner"
    ),
    "PickledOutputWarning": "modelyard.pipelines.serialize",
    **dict.fromkeys(("Dataset", "File", "Metrics", "Model"), "modelyard.pipelines.types"),
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'modelyard.pipelines' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from modelyard.pipelines.dsl import (
        Pipeline,
        Step,
        StepOptions,
        collect,
        condition,
        parallel_for,
        pipeline,
        step,
    )
    from modelyard.pipelines.runner import PipelineCancelled, PipelineRun, resume, run_pipeline
    from modelyard.pipelines.serialize import PickledOutputWarning
    from modelyard.pipelines.types import Dataset, File, Metrics, Model

__all__ = [
    "Dataset",
    "File",
    "Metrics",
    "Model",
    "PickledOutputWarning",
    "PipelineCancelled",
    "Pipeline",
    "PipelineRun",
    "Step",
    "StepOptions",
    "collect",
    "condition",
    "parallel_for",
    "pipeline",
    "resume",
    "run_pipeline",
    "step",
]
