"""/api/v1/runs: runs, batched logging, metric history (optionally downsampled), datasets and search."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from modelyard.schemas import Run, RunInfo, SearchRunsPage
from modelyard.schemas.api import CreateRun, EndRun, LogBatch, LogInputs, MetricList, SearchRuns, UpdateRun
from modelyard.schemas.tracking import MetricHistory
from modelyard.server.routes import ok, reply, store
from modelyard.store.base import TrackingStore

router = APIRouter(prefix="/runs", tags=["runs"])
Store = Annotated[TrackingStore, Depends(store)]


class RunList(SearchRunsPage):
    """Deleted runs, for garbage collection."""


@router.post("", response_model=Run, status_code=201)
def create_run(body: CreateRun, s: Store) -> Response:
    run = s.create_run(
        body.experiment_id,
        run_name=body.run_name,
        start_time=body.start_time,
        parent_run_id=body.parent_run_id,
        tags=body.tags,
        params=body.params,
        description=body.description,
    )
    return reply(run, 201)


@router.post("/search", response_model=SearchRunsPage)
def search_runs(body: SearchRuns, s: Store) -> Response:
    page = s.search_runs(
        body.experiment_ids, body.filter, body.order_by, body.max_results, body.page_token, body.view_type
    )
    return reply(page)


@router.get("/deleted", response_model=RunList)
def deleted_runs(s: Store, older_than: int | None = None) -> Response:
    return reply(RunList(runs=s.deleted_runs(older_than)))


@router.get("/{run_id}", response_model=Run)
def get_run(run_id: str, s: Store) -> Response:
    return reply(s.get_run(run_id))


@router.patch("/{run_id}", response_model=RunInfo)
def update_run(run_id: str, body: UpdateRun, s: Store) -> Response:
    return reply(s.update_run(run_id, body.status, body.end_time, body.run_name, body.description))


@router.post("/{run_id}/end", response_model=RunInfo)
def end_run(run_id: str, body: EndRun, s: Store) -> Response:
    return reply(s.end_run(run_id, body.status, body.end_time, body.metrics))


@router.post("/{run_id}/log-batch")
def log_batch(run_id: str, body: LogBatch, s: Store) -> dict[str, Any]:
    s.log_batch(run_id, metrics=body.metrics, params=body.params, tags=body.tags)
    return ok()


@router.post("/{run_id}/inputs")
def log_inputs(run_id: str, body: LogInputs, s: Store) -> dict[str, Any]:
    s.log_inputs(run_id, body.inputs)
    return ok()


@router.delete("/{run_id}/tags/{key:path}")
def delete_tag(run_id: str, key: str, s: Store) -> dict[str, Any]:
    s.delete_tag(run_id, key)
    return ok()


@router.get("/{run_id}/metrics", response_model=MetricList)
def latest_metrics(run_id: str, s: Store) -> Response:
    return reply(MetricList(metrics=s.get_latest_metrics(run_id)))


@router.get("/{run_id}/metrics/{key:path}/history", response_model=MetricHistory)
def metric_history(
    run_id: str,
    key: str,
    s: Store,
    max_points: Annotated[int | None, Query(ge=2, le=1_000_000)] = None,
) -> Response:
    """Every point of a metric, or with `max_points` a downsampled history that keeps each bucket's min and max."""
    history = s.get_metric_history(run_id, key)
    if max_points is not None:
        from modelyard.tracking.history import downsample

        history = downsample(history, max_points)
    return reply(history)


@router.post("/{run_id}/delete")
def delete_run(run_id: str, s: Store) -> dict[str, Any]:
    s.delete_run(run_id)
    return ok()


@router.post("/{run_id}/restore")
def restore_run(run_id: str, s: Store) -> dict[str, Any]:
    s.restore_run(run_id)
    return ok()


@router.post("/{run_id}/purge")
def purge_run(run_id: str, s: Store) -> dict[str, Any]:
    s.purge_run(run_id)
    return ok()
