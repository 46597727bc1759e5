"""Pin the curated public surface: adding or removing a name is a deliberate change to this list."""

import modelyard

EXPECTED = {
    "__version__",
    "start_run",
    "end_run",
    "active_run",
    "set_experiment",
    "set_tracking_uri",
    "get_tracking_uri",
    "log_param",
    "log_params",
    "log_metric",
    "log_metrics",
    "set_tag",
    "set_tags",
    "log_artifact",
    "log_artifacts",
    "log_text",
    "log_dict",
    "log_figure",
    "log_image",
    "log_dataset",
    "flush",
    "search_runs",
    "ActiveRun",
    "Client",
    "log_model",
    "load_model",
    "load_predictor",
    "register_model",
    "RegistryClient",
    "lineage",
    "RegisteredModel",
    "ModelVersion",
    "GateFailed",
    "step",
    "pipeline",
    "parallel_for",
    "collect",
    "condition",
    "run_pipeline",
    "Experiment",
    "Run",
    "RunInfo",
    "RunData",
    "RunStatus",
    "Metric",
    "MetricHistory",
    "Param",
    "RunTag",
    "Dataset",
    "DatasetInput",
    "ViewType",
    "ModelyardError",
    "NotFound",
    "AlreadyExists",
    "InvalidArgument",
    "Conflict",
}


def test_all_is_pinned() -> None:
    assert set(modelyard.__all__) == EXPECTED
    assert len(modelyard.__all__) == len(EXPECTED)


def test_every_exported_name_resolves() -> None:
    for name in modelyard.__all__:
        assert getattr(modelyard, name) is not None, name


def test_unknown_attribute() -> None:
    import pytest

    with pytest.raises(AttributeError):
        modelyard.nope  # noqa: B018


def test_pipelines_surface() -> None:
    import modelyard.pipelines as pipelines

    assert set(pipelines.__all__) == {
        "Dataset", "File", "Metrics", "Model", "PickledOutputWarning", "PipelineCancelled", "Pipeline",
        "PipelineRun", "Step",
        "StepOptions", "collect", "condition", "parallel_for", "pipeline", "resume", "run_pipeline", "step",
    }  # fmt: skip
    assert modelyard.step is pipelines.step and modelyard.run_pipeline is pipelines.run_pipeline
