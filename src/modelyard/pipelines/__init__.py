"""Pipelines: isolated, cached steps wired into a DAG that runs locally, on Ray, or on Kubeflow Pipelines.

import modelyard as my
from modelyard.pipelines import Dataset, Model

@my.step
def load(n: int) -> Dataset: ...

@my.pipeline
def training(n: int = 1000): ...

run = my.run_pipeline(training, {"n": 500})
"""

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
