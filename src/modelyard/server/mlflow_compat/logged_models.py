"""MLflow 3's logged models, as far as the client needs them without our serving any.

MLflow 3's client lists and downloads a run's artifacts under a sub-path by also asking
`/logged-models/search` for a model of that name logged from the run (to merge its files in). Modelyard
stores no MLflow logged models, so the honest answer is an empty page; every other logged-model endpoint
stays unrouted and answers ENDPOINT_NOT_FOUND.
"""

from __future__ import annotations

from fastapi import APIRouter, Response

from modelyard.server.mlflow_compat.route import Fields, MlflowRoute, Store, reply

router = APIRouter(prefix="/logged-models", route_class=MlflowRoute)


@router.post("/search")
def search_logged_models(p: Fields, s: Store) -> Response:
    for experiment_id in p.experiment_ids():
        s.get_experiment(experiment_id)  # unknown ids are still errors, as in MLflow
    return reply({"models": []})
