"""The MLflow REST API answered from Modelyard's store, so the unmodified `mlflow` client works with
`MLFLOW_TRACKING_URI=http://<modelyard server>`; runs logged through either API are visible through both.

    /api/2.0/mlflow/...             experiments, runs, logging, search, metric history   (experiments.py,
                                    runs.py, run_data.py; translation in convert.py and filters.py)
    /api/2.0/mlflow-artifacts/...   the artifact proxy the client uses for mlflow-artifacts:/ URIs (artifacts.py)
    /api/2.0/mlflow/logged-models/search   always empty: the client asks it when listing run artifacts
    /api/3.0/mlflow/server-info     the capabilities probe the client sends before big transfers

`/ajax-api/2.0/...` answers the same (the prefix MLflow's web UI uses). None of it is in /api/v1's OpenAPI
spec: it is MLflow's contract, documented in docs/mlflow-compatibility.md.
"""

from __future__ import annotations

from fastapi import APIRouter

from modelyard.server.mlflow_compat import artifacts, experiments, logged_models, run_data, runs


def _router() -> APIRouter:
    router = APIRouter()
    for root in ("/api/2.0", "/ajax-api/2.0"):
        for part in (experiments.router, runs.router, run_data.router, logged_models.router):
            router.include_router(part, prefix=f"{root}/mlflow", include_in_schema=False)
        router.include_router(artifacts.router, prefix=f"{root}/mlflow-artifacts", include_in_schema=False)
    router.include_router(artifacts.server_info_router, include_in_schema=False)
    return router


router = _router()

__all__ = ["router"]
