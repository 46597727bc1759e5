"""MLflow's logging endpoints (log-metric, log-parameter, set-tag, delete-tag, log-batch, log-inputs) and
metric history, each one store call (plus a run update when a tag is really a run attribute)."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, Response

from modelyard.errors import InvalidArgument
from modelyard.schemas import Metric, Param
from modelyard.server.mlflow_compat.convert import (
    MODELYARD_USER_TAG,
    NOTE_TAG,
    RUN_NAME_TAG,
    USER_TAG,
    dataset_input_from,
    key_values,
    metric_json,
    tag_writes,
)
from modelyard.server.mlflow_compat.filters import decode_offset, encode_offset
from modelyard.server.mlflow_compat.route import Fields, MlflowRoute, Params, Store, float_out, reply
from modelyard.store.base import TrackingStore

router = APIRouter(route_class=MlflowRoute)


def _metric(p: Params) -> Metric:
    timestamp = p.integer("timestamp")
    return Metric(
        key=p.required("key"),
        value=p.number("value"),
        timestamp=int(time.time() * 1000) if timestamp is None else timestamp,
        step=p.integer("step", 0) or 0,
    )


def _model_points(items: Sequence[Params], metrics: Sequence[Metric]) -> list[tuple[str, dict[str, Any]]]:
    """The points logged with a `model_id` (MLflow 3 logs a model's metrics this way), as
    (model id, point) pairs; the run gets them too, as in MLflow."""
    points = []
    for item, metric in zip(items, metrics, strict=True):
        model_id = item.string("model_id")
        if model_id:
            point = metric_json(metric)
            for name in ("dataset_name", "dataset_digest"):
                point[name] = item.string(name)
            points.append((model_id, point))
    return points


def _log(
    s: TrackingStore,
    run_id: str,
    metrics: Sequence[Metric] = (),
    params: Sequence[Param] = (),
    tags: Sequence[tuple[str, str]] = (),
    model_points: Sequence[tuple[str, dict[str, Any]]] = (),
) -> None:
    models = None
    if model_points:  # the models are checked before anything is written
        from modelyard.server.mlflow_compat import logged_models

        models = logged_models.editable(s, [model_id for model_id, _ in model_points])
    writes = tag_writes(tags)
    if metrics or params or writes.tags or not writes.attributes:
        s.log_batch(run_id, metrics=metrics, params=params, tags=writes.tags)
    if writes.attributes:
        s.update_run(run_id, run_name=writes.run_name, description=writes.description)
    if models is not None:
        logged_models.record_metrics(models, run_id, list(model_points))


@router.post("/runs/log-metric")
def log_metric(p: Fields, s: Store) -> Response:
    metrics = [_metric(p)]
    _log(s, p.run_id(), metrics=metrics, model_points=_model_points([p], metrics))
    return reply({})


@router.post("/runs/log-parameter")
def log_param(p: Fields, s: Store) -> Response:
    _log(s, p.run_id(), params=[Param(key=p.required("key"), value=p.string("value", "") or "")])
    return reply({})


@router.post("/runs/set-tag")
def set_tag(p: Fields, s: Store) -> Response:
    _log(s, p.run_id(), tags=[(p.required("key"), p.string("value", "") or "")])
    return reply({})


@router.post("/runs/delete-tag")
def delete_tag(p: Fields, s: Store) -> Response:
    run_id, key = p.run_id(), p.required("key")
    if key == RUN_NAME_TAG:
        s.get_run(run_id)  # a run always has a name: nothing to delete, but the run must exist
    elif key == NOTE_TAG:
        s.update_run(run_id, description="")
    else:
        s.delete_tag(run_id, MODELYARD_USER_TAG if key == USER_TAG else key)
    return reply({})


@router.post("/runs/log-batch")
def log_batch(p: Fields, s: Store) -> Response:
    items = p.messages("metrics")
    metrics = [_metric(m) for m in items]
    params = [Param(key=k, value=v) for k, v in key_values(p.messages("params"))]
    _log(s, p.run_id(), metrics, params, key_values(p.messages("tags")), _model_points(items, metrics))
    return reply({})


@router.post("/runs/log-inputs")
def log_inputs(p: Fields, s: Store) -> Response:
    """Datasets only: model inputs belong to MLflow's logged models, which Modelyard does not serve."""
    inputs = [dataset_input_from(d) for d in p.messages("datasets")]
    run_id = p.run_id()
    if inputs:
        s.log_inputs(run_id, inputs)
    else:
        s.get_run(run_id)
    return reply({})


@router.get("/metrics/get-history")
def get_metric_history(p: Fields, s: Store) -> Response:
    """Every point of one metric, in pages of `max_results` when the client asks for pages."""
    history = s.get_metric_history(p.run_id(), p.required("metric_key"))
    start = decode_offset(p.string("page_token"))
    size = p.integer("max_results")
    if size is not None and size < 1:
        raise InvalidArgument(f"max_results must be a positive integer, got {size}.")
    end = len(history) if size is None else min(len(history), start + size)
    key = history.key
    body: dict[str, object] = {
        "metrics": [
            {
                "key": key,
                "value": float_out(history.values[i]),
                "timestamp": history.timestamps[i],
                "step": history.steps[i],
            }
            for i in range(start, end)
        ]
    }
    if end < len(history):
        body["next_page_token"] = encode_offset(end)
    return reply(body)
