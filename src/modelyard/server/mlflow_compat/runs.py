"""MLflow's run lifecycle endpoints: /runs/create, get, update (which is how MLflow ends a run), delete,
restore and search."""

from __future__ import annotations

from fastapi import APIRouter, Response

from modelyard.errors import ModelyardError
from modelyard.schemas import LifecycleStage, RunStatus, ViewType
from modelyard.server.mlflow_compat.convert import (
    MODELYARD_USER_TAG,
    PARENT_TAG,
    RUN_STATUSES,
    VIEW_TYPES,
    key_values,
    run_info_json,
    run_json,
    tag_writes,
)
from modelyard.server.mlflow_compat.filters import run_filter
from modelyard.server.mlflow_compat.route import Fields, MlflowRoute, Store, reply
from modelyard.store.base import TrackingStore

router = APIRouter(prefix="/runs", route_class=MlflowRoute)


@router.post("/create")
def create_run(p: Fields, s: Store) -> Response:
    writes = tag_writes(key_values(p.messages("tags")))
    tags = {t.key: t.value for t in writes.tags}
    user = p.string("user_id")
    if user:
        tags.setdefault(MODELYARD_USER_TAG, user)
    run = s.create_run(
        p.experiment_id(default="0"),
        run_name=p.string("run_name") or writes.run_name,
        start_time=p.integer("start_time"),
        parent_run_id=_parent(s, tags.get(PARENT_TAG)),
        tags=tags or None,
        description=writes.description,
    )
    return reply({"run": run_json(run, latest=[])})


def _parent(s: TrackingStore, run_id: str | None) -> str | None:
    """The parent an MLflow nested run names in its tag, when it is an active run here. MLflow stores the
    tag as given, without looking the run up (it may live on another server): so does the tag here, and
    only a parent this store holds becomes the run's `parent_run_id`."""
    if not run_id:
        return None
    try:
        parent = s.get_run(run_id)
    except ModelyardError:  # unknown, malformed, or not readable by the caller
        return None
    return run_id if parent.info.lifecycle_stage is LifecycleStage.ACTIVE else None


@router.get("/get")
def get_run(p: Fields, s: Store) -> Response:
    run_id = p.run_id()
    run = s.get_run(run_id)
    return reply({"run": run_json(run, latest=s.get_latest_metrics(run_id))})


@router.post("/update")
def update_run(p: Fields, s: Store) -> Response:
    """MLflow ends a run here: `set_terminated` sends a terminal status and the end time."""
    run_id = p.run_id()
    status = RunStatus(p.enum("status", RUN_STATUSES, "RUNNING")) if p.raw("status") is not None else None
    s.update_run(run_id, status=status, end_time=p.integer("end_time"), run_name=p.string("run_name"))
    run = s.get_run(run_id)
    return reply({"run_info": run_info_json(run.info, run.data.tags)})


@router.post("/delete")
def delete_run(p: Fields, s: Store) -> Response:
    s.delete_run(p.run_id())
    return reply({})


@router.post("/restore")
def restore_run(p: Fields, s: Store) -> Response:
    s.restore_run(p.run_id())
    return reply({})


@router.post("/search")
def search_runs(p: Fields, s: Store) -> Response:
    page = s.search_runs(
        p.experiment_ids(),
        run_filter(p.string("filter")),
        [o for o in (run_filter(c) for c in p.strings("order_by")) if o],
        p.integer("max_results", 1000) or 0,
        p.string("page_token"),
        ViewType(p.enum("run_view_type", VIEW_TYPES, "ACTIVE_ONLY")),
    )
    body: dict[str, object] = {"runs": [run_json(r) for r in page.runs]}
    if page.next_page_token:
        body["next_page_token"] = page.next_page_token
    return reply(body)
