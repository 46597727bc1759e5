"""/api/v1/runs: runs, batched logging, metric history (optionally downsampled), datasets and search."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.concurrency import run_in_threadpool

from modelyard.schemas import Run, RunInfo, SearchRunsPage
from modelyard.schemas.api import CreateRun, EndRun, LogBatch, LogInputs, MetricList, SearchRuns, UpdateRun
from modelyard.schemas.tracking import MetricHistory
from modelyard.server.routes import ok, reply, store
from modelyard.store.base import TrackingStore

router = APIRouter(prefix="/runs", tags=["runs"])
Store = Annotated[TrackingStore, Depends(store)]
B = TypeVar("B", bound=BaseModel)
EMPTY = b"{}"


def parse_body(model: type[B], raw: bytes) -> B:
    """The request body validated straight from its bytes (pydantic's Rust JSON parser: about 3x faster than
    FastAPI's json.loads followed by validation); errors are FastAPI's usual 400, naming the field."""
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = [{**e, "loc": ("body", *e["loc"])} for e in exc.errors(include_url=False)]
        raise RequestValidationError(errors, body=raw) from None


def body_spec(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` documenting a body that the route parses itself with `parse_body`: the model's JSON
    schema with its nested models inlined (a route's own schema cannot add entries to the spec's components)."""
    schema = model.model_json_schema()
    defs = schema.pop("$defs", {})

    def inline(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/"):
                return inline(defs[ref.removeprefix("#/$defs/")])
            return {k: inline(v) for k, v in node.items()}
        return [inline(v) for v in node] if isinstance(node, list) else node

    return {"requestBody": {"required": True, "content": {"application/json": {"schema": inline(schema)}}}}


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


@router.post("/{run_id}/end", response_model=RunInfo, openapi_extra=body_spec(EndRun))
async def end_run(run_id: str, request: Request) -> Response:
    """The body parsed from its bytes, as log-batch's is: its metrics follow the same JSON rules."""
    body = parse_body(EndRun, await request.body())
    end = store(request).end_run
    return reply(
        await run_in_threadpool(end, run_id, body.status, body.end_time, body.metrics, body.sequence)
    )


@router.post("/{run_id}/log-batch", openapi_extra=body_spec(LogBatch))
async def log_batch(run_id: str, request: Request) -> Response:
    """Metrics, params and tags in one transaction.

    Every client's hot path, so no threadpool hop it can avoid (a sync route with the `Store` dependency and
    a dict to serialise makes three): the body is parsed here from its bytes, and a store whose writes are
    local (SQLite) is called right here too: a 1-point write costs less than a hop, and SQLite takes one
    writer at a time anyway. Other stores (PostgreSQL, a store wrapped for authorization) get one hop."""
    raw = await request.body()
    s = store(request)
    if s.writes_are_local:
        log_batch_here(s, run_id, raw)
    else:
        body = parse_body(LogBatch, raw)
        await run_in_threadpool(s.log_batch, run_id, body.metrics, body.params, body.tags, body.sequence)
    return Response(EMPTY, media_type="application/json")


def log_batch_here(s: TrackingStore, run_id: str, raw: bytes) -> None:
    """Parse a log-batch body and store it in this thread (a store whose writes are local)."""
    with _gc_paused():
        body = parse_body(LogBatch, raw)
        s.log_batch(run_id, body.metrics, body.params, body.tags, body.sequence)
        del body  # freed here, before the collector runs again


@contextlib.contextmanager
def _gc_paused() -> Iterator[None]:
    """No cyclic garbage collection while a batch is parsed and stored (synchronous code: no other request
    runs meanwhile). A batch of 1,000 points makes 3,000 GC-tracked objects that all die by refcount at its
    end; with the collector on, they set off ~4 young collections per batch, get promoted, and bring on
    full collections of the server's whole heap every ~30 batches: about 0.7 ms per batch (~20% of the
    server's time on it). The allocations still count, so a collection follows soon after if one is due."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


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
