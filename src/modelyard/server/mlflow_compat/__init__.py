"""The MLflow REST API answered from Modelyard's store, so the unmodified `mlflow` client works with
`MLFLOW_TRACKING_URI=http://<modelyard server>`; runs logged through either API are visible through both.

    /api/2.0/mlflow/...             experiments, runs, logging, search, metric history   (experiments.py,
                                    runs.py, run_data.py; translation in convert.py and filters.py)
    /api/2.0/mlflow-artifacts/...   the artifact proxy the client uses for mlflow-artifacts:/ URIs (artifacts.py)
    /api/2.0/mlflow/registered-models/..., /model-versions/...   the model registry (registry.py)
    /api/2.0/mlflow/logged-models/..., /runs/outputs   MLflow 3's logged models, kept as files in the
                                    artifact store (logged_models.py)
    /api/3.0/mlflow/server-info     the capabilities probe the client sends before big transfers

`/ajax-api/2.0/...` answers the same (the prefix MLflow's web UI uses). None of it is in /api/v1's OpenAPI
spec: it is MLflow's contract, documented in docs/mlflow-compatibility.md. The server builds this router on
the first request under `PREFIXES` (see `server/hot_routes.py`): a server that no MLflow client talks to
never spends the startup time on its ~100 routes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import APIRouter, FastAPI

PREFIXES = ("/api/2.0/mlflow", "/ajax-api/2.0/mlflow", "/api/3.0/mlflow")  # mlflow-artifacts too


def build_router(app: FastAPI) -> APIRouter:
    """Every MLflow route, for `app` (its dependency overrides apply, as to the app's own routes)."""
    from fastapi import APIRouter

    from modelyard.server.mlflow_compat import artifacts, experiments, logged_models, registry, run_data, runs

    router = APIRouter(dependency_overrides_provider=app)
    for root in ("/api/2.0", "/ajax-api/2.0"):
        parts = (experiments.router, runs.router, run_data.router, logged_models.router)
        for part in (*parts, logged_models.outputs_router, registry.router, artifacts.run_artifacts_router):
            router.include_router(part, prefix=f"{root}/mlflow", include_in_schema=False)
        router.include_router(artifacts.router, prefix=f"{root}/mlflow-artifacts", include_in_schema=False)
    router.include_router(artifacts.server_info_router, include_in_schema=False)
    return router


__all__ = ["PREFIXES", "build_router"]
