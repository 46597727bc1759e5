"""Model serving: an ASGI server speaking the Open Inference Protocol v2, KServe v1 and MLflow-style
`/invocations`, with dynamic batching per model version.

    predictor = modelyard.load_predictor("models:/iris@champion")
    app = create_serving_app(Deployment.single(predictor, name="iris"))

`modelyard serve MODEL_URI` does the same from the command line and runs it with uvicorn.
"""

from __future__ import annotations

from modelyard.serving.app import create_serving_app
from modelyard.serving.autoscale import AutoscaleConfig, Autoscaler
from modelyard.serving.batcher import BatchConfig, Batcher, BatchStats, Runner, ThreadRunner
from modelyard.serving.deployment import Deployment, ServedModel
from modelyard.serving.replicas import ProcessRunner

__all__ = [
    "AutoscaleConfig",
    "Autoscaler",
    "BatchConfig",
    "BatchStats",
    "Batcher",
    "Deployment",
    "ProcessRunner",
    "Runner",
    "ServedModel",
    "ThreadRunner",
    "create_serving_app",
]
