"""Modelyard: the pragmatic MLOps stack in one package.

    import modelyard as my

    with my.start_run(experiment="mnist", params={"lr": 0.01}) as run:
        for epoch in range(10):
            my.log_metric("loss", train_one_epoch())

Everything here is imported lazily, so `import modelyard` stays fast.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # fluent tracking API
    "start_run": "modelyard.tracking.fluent",
    "end_run": "modelyard.tracking.fluent",
    "active_run": "modelyard.tracking.fluent",
    "set_experiment": "modelyard.tracking.fluent",
    "set_tracking_uri": "modelyard.tracking.fluent",
    "get_tracking_uri": "modelyard.tracking.fluent",
    "log_param": "modelyard.tracking.fluent",
    "log_params": "modelyard.tracking.fluent",
    "log_metric": "modelyard.tracking.fluent",
    "log_metrics": "modelyard.tracking.fluent",
    "set_tag": "modelyard.tracking.fluent",
    "set_tags": "modelyard.tracking.fluent",
    "log_artifact": "modelyard.tracking.fluent",
    "log_artifacts": "modelyard.tracking.fluent",
    "log_text": "modelyard.tracking.fluent",
    "log_dict": "modelyard.tracking.fluent",
    "log_figure": "modelyard.tracking.fluent",
    "log_image": "modelyard.tracking.fluent",
    "log_dataset": "modelyard.tracking.fluent",
    "flush": "modelyard.tracking.fluent",
    "search_runs": "modelyard.tracking.fluent",
    "ActiveRun": "modelyard.tracking.fluent",
    # explicit client
    "Client": "modelyard.tracking.client",
    # models
    "log_model": "modelyard.models",
    "load_model": "modelyard.models",
    "load_predictor": "modelyard.models",
    # model registry
    "register_model": "modelyard.registry",
    "RegistryClient": "modelyard.registry",
    "lineage": "modelyard.registry.lineage",
    "RegisteredModel": "modelyard.schemas.registry",
    "ModelVersion": "modelyard.schemas.registry",
    # pipelines
    "step": "modelyard.pipelines",
    "pipeline": "modelyard.pipelines",
    "parallel_for": "modelyard.pipelines",
    "collect": "modelyard.pipelines",
    "condition": "modelyard.pipelines",
    "run_pipeline": "modelyard.pipelines",
    # wire models
    "Experiment": "modelyard.schemas",
    "Run": "modelyard.schemas",
    "RunInfo": "modelyard.schemas",
    "RunData": "modelyard.schemas",
    "RunStatus": "modelyard.schemas",
    "Metric": "modelyard.schemas",
    "MetricHistory": "modelyard.schemas",
    "Param": "modelyard.schemas",
    "RunTag": "modelyard.schemas",
    "Dataset": "modelyard.schemas",
    "DatasetInput": "modelyard.schemas",
    "ViewType": "modelyard.schemas",
    # errors
    "ModelyardError": "modelyard.errors",
    "NotFound": "modelyard.errors",
    "AlreadyExists": "modelyard.errors",
    "InvalidArgument": "modelyard.errors",
    "Conflict": "modelyard.errors",
    "GateFailed": "modelyard.errors",
}

__all__ = ["__version__", *_EXPORTS]


_SUBPACKAGES = ("pipelines",)  # `my.pipelines.Dataset` works without importing modelyard.pipelines first


def __getattr__(name: str) -> Any:
    if name in _SUBPACKAGES:
        return import_module(f"modelyard.{name}")
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'modelyard' has no attribute {name!r}")
    value = getattr(import_module(module), name)
    globals()[name] = value  # later look-ups skip __getattr__
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


if TYPE_CHECKING:
    from modelyard.errors import (
        AlreadyExists,
        Conflict,
        GateFailed,
        InvalidArgument,
        ModelyardError,
        NotFound,
    )
    from modelyard.models import load_model, load_predictor, log_model
    from modelyard.pipelines import collect, condition, parallel_for, pipeline, run_pipeline, step
    from modelyard.registry import RegistryClient, register_model
    from modelyard.registry.lineage import lineage
    from modelyard.schemas import (
        Dataset,
        DatasetInput,
        Experiment,
        Metric,
        MetricHistory,
        Param,
        Run,
        RunData,
        RunInfo,
        RunStatus,
        RunTag,
        ViewType,
    )
    from modelyard.schemas.registry import ModelVersion, RegisteredModel
    from modelyard.tracking.client import Client
    from modelyard.tracking.fluent import (
        ActiveRun,
        active_run,
        end_run,
        flush,
        get_tracking_uri,
        log_artifact,
        log_artifacts,
        log_dataset,
        log_dict,
        log_figure,
        log_image,
        log_metric,
        log_metrics,
        log_param,
        log_params,
        log_text,
        search_runs,
        set_experiment,
        set_tag,
        set_tags,
        set_tracking_uri,
        start_run,
    )
