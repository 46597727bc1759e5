"""/api/v1/pipelines: pipeline runs as a dashboard reads them (DAG, step states, cache hits, durations, logs),
and pipeline schedules, which the server's scheduler runs (`install`).

Rights with auth on: pipeline runs are runs, so reading one needs READ on its experiment (the routes read
through the request's role-checked store). Schedules need an admin, reading them included: a schedule runs
code on the server's host, and shows where that code lives."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, FastAPI, Query, Request, Response
from fastapi.responses import StreamingResponse

from modelyard.errors import InvalidArgument, NotFound, PermissionDenied
from modelyard.pipelines import records
from modelyard.schemas import Run, ViewType
from modelyard.schemas.pipelines import (
    CreateSchedule,
    PipelineRunDetail,
    PipelineRunList,
    PipelineRunSummary,
    PipelineSchedule,
    ScheduleList,
    UpdateSchedule,
)
from modelyard.server.routes import ok, reply, store
from modelyard.store.base import TrackingStore
from modelyard.store.pipeline_schedules import is_file, is_file_target, validate_target
from modelyard.store.sql.pipeline_schedules import SqlPipelineScheduleStore
from modelyard.store.validation import validate_run_id

router = APIRouter(prefix="/pipelines", tags=["pipelines"])
DEFAULT_INTERVAL_S = 5.0
_TEXT = "text/plain; charset=utf-8"


def install(app: FastAPI, start_scheduler: bool = True) -> None:
    """Keep pipeline schedules in the app's SQL store and run the scheduler while the app runs."""
    import os

    from modelyard.server.scheduler import PipelineScheduler

    settings = app.state.settings
    schedules = SqlPipelineScheduleStore(app.state.store)
    interval = getattr(settings, "scheduler_interval_s", None) or float(
        os.environ.get("MODELYARD_SERVER_SCHEDULER_INTERVAL_S") or DEFAULT_INTERVAL_S
    )
    scheduler = PipelineScheduler(
        schedules, app.state.store.uri, settings.artifacts_uri, interval_s=float(interval)
    )
    app.state.pipeline_schedules, app.state.pipeline_scheduler = schedules, scheduler
    if start_scheduler and getattr(settings, "scheduler", True):
        app.router.on_startup.append(scheduler.start)
        app.router.on_shutdown.append(scheduler.stop)


# pipeline runs -------------------------------------------------------------------------------------------
class StoreReader:
    """What `pipelines.records` reads through a `Client` (search_runs, get_run, artifact_store), on a store:
    the request's role-checked one."""

    def __init__(self, store: TrackingStore) -> None:
        self.store = store
        self._runs: dict[str, Run] = {}

    def search_runs(
        self,
        experiments: Sequence[str] | str | None = None,
        filter: str | None = None,
        order_by: Sequence[str] | None = None,
        max_results: int = 1000,
    ) -> list[Run]:
        if experiments is None:
            ids = [e.experiment_id for e in self.store.search_experiments(ViewType.ACTIVE_ONLY, None, 50_000)]
        else:
            ids = [experiments] if isinstance(experiments, str) else list(experiments)
        if not ids:
            return []
        return self.store.search_runs(ids, filter, order_by, max_results).runs

    def get_run(self, run_id: str) -> Run:
        run = self._runs.get(run_id)
        if run is None:
            run = self._runs[run_id] = self.store.get_run(run_id)
        return run

    def artifact_store(self, run_id: str) -> Any:
        from modelyard.artifacts import artifact_store_for

        return artifact_store_for(self.get_run(run_id).info.artifact_uri)


def _pipeline_run(reader: StoreReader, run_id: str) -> Run:
    run = reader.get_run(validate_run_id(run_id))
    if records.TAG_PIPELINE not in run.data.tags:
        raise NotFound(
            f"Run {run_id} is not a pipeline run. List pipeline runs with GET /api/v1/pipelines/runs."
        )
    return run


def _experiment_id(s: TrackingStore, experiment: str) -> str:
    if experiment.isdigit():
        try:
            return s.get_experiment(experiment).experiment_id
        except NotFound:
            pass  # a name made of digits
    found = s.get_experiment_by_name(experiment)
    if found is None:
        raise NotFound(f"No experiment with id or name {experiment!r}.")
    return found.experiment_id


def _summary(reader: StoreReader, run: Run) -> PipelineRunSummary:
    counts = Counter(r.state for r in records.step_records(reader, run).values())
    try:
        params = json.loads(run.data.tags.get(records.TAG_PARAMS, "{}"))
    except ValueError:
        params = {}
    return PipelineRunSummary(
        run_id=run.info.run_id,
        run_name=run.info.run_name,
        pipeline=run.data.tags[records.TAG_PIPELINE],
        experiment_id=run.info.experiment_id,
        status=run.info.status.value,
        start_time=run.info.start_time,
        end_time=run.info.end_time,
        params=params if isinstance(params, dict) else {},
        steps=dict(sorted(counts.items())),
    )


@router.get("/runs", response_model=PipelineRunList)
def list_pipeline_runs(
    request: Request,
    experiment: Annotated[str | None, Query(max_length=256, description="An experiment id or name")] = None,
    max_results: Annotated[int, Query(ge=1, le=500)] = 50,
) -> Response:
    """Pipeline runs, newest first, each with its status, parameters and step counts by state (of the
    experiments the caller may read, or of one experiment)."""
    s = store(request)
    reader = StoreReader(s)
    experiments = [_experiment_id(s, experiment)] if experiment else None
    found = records.pipeline_runs(reader, experiments, max_results)
    return reply(PipelineRunList(runs=[_summary(reader, run) for run in found]))


@router.get("/runs/{run_id}", response_model=PipelineRunDetail)
def get_pipeline_run(run_id: str, request: Request) -> Response:
    """A pipeline run: its DAG (`graph`) and each step instance's state, cache hit or miss, the run a cached
    result came from, duration, attempts, error and outputs."""
    reader = StoreReader(store(request))
    _pipeline_run(reader, run_id)
    return reply(PipelineRunDetail.model_validate(records.describe(reader, run_id)))


@router.get(
    "/runs/{run_id}/steps/{instance}/logs",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/plain": {"schema": {"type": "string"}}}, "description": "The log"}},
)
def get_step_log(run_id: str, instance: str, request: Request) -> StreamingResponse:
    """The log (stdout and stderr) of one step instance, e.g. `train` or `train[1]`, as plain text."""
    reader = StoreReader(store(request))
    run = _pipeline_run(reader, run_id)
    steps = records.step_records(reader, run)
    record = steps.get(instance)
    if record is None or record.run_id is None:
        known = ", ".join(sorted(steps)) or "none yet"
        raise NotFound(f"Pipeline run {run_id} has no step {instance!r}; its steps: {known}.")
    artifacts = reader.artifact_store(record.run_id)
    try:
        stream = artifacts.open_read(records.LOG_ARTIFACT)
    except (NotFound, FileNotFoundError):
        raise NotFound(_no_log(run_id, instance, record)) from None
    return StreamingResponse(_chunks(stream), media_type=_TEXT)


def _no_log(run_id: str, instance: str, record: records.StepRecord) -> str:
    why = {
        "CACHED": f"it reused the result of step run {record.cached_from}, whose log has it"
        if record.cached_from
        else "it reused a cached result",
        "SKIPPED": "it was skipped" + (f" ({record.error})" if record.error else ""),
        "PENDING": "it has not run",
        "READY": "it has not started",
        "RUNNING": "it is running; its log is stored when it ends",
        "WAITING": "it is waiting to be retried",
    }.get(record.state, "none was stored")
    return f"Step {instance!r} of pipeline run {run_id} has no log: {why}."


def _chunks(stream: Any) -> Iterator[bytes]:
    try:
        while chunk := stream.read(2**16):
            yield chunk
    finally:
        stream.close()


# schedules -----------------------------------------------------------------------------------------------
def _schedules(request: Request) -> SqlPipelineScheduleStore:
    """The schedule store, once the caller is known to be an admin (with auth on)."""
    who = (request.scope.get("state") or {}).get("principal")
    if who is not None and not who.is_admin:
        raise PermissionDenied(
            f"Only an admin may see or change pipeline schedules (a schedule runs code on the server's host); "
            f"{who.username!r} is not one. Run the pipeline yourself with: modelyard pipelines run FILE.py:FUNC"
        )
    schedules = getattr(request.app.state, "pipeline_schedules", None)
    if schedules is None:
        raise InvalidArgument(
            "This server's store keeps no pipeline schedules (they need a SQL backend store)."
        )
    return schedules  # type: ignore[no-any-return]


def _note(request: Request, name: str) -> None:
    state = request.scope.get("state") or {}
    if "audit_targets" in state:
        state["audit_targets"].append(f"pipeline_schedule:{name}")


@router.get("/schedules", response_model=ScheduleList)
def list_schedules(request: Request) -> Response:
    """Every schedule: its pipeline, cron expression, next run time and its latest run's outcome."""
    return reply(ScheduleList(schedules=_schedules(request).list_schedules()))


@router.post("/schedules", response_model=PipelineSchedule, status_code=201)
def create_schedule(body: CreateSchedule, request: Request) -> Response:
    """Run a pipeline on a cron schedule. The target is a file on the server's host (an absolute path) or an
    importable module; the first run is at the expression's next time."""
    schedules = _schedules(request)
    target = validate_target(body.target)
    source = target.rpartition(":")[0]
    if is_file_target(source) and not is_file(source):
        raise InvalidArgument(f"No such file on the server's host: {source!r}.")
    who = (request.scope.get("state") or {}).get("principal")
    created = schedules.create_schedule(
        body.name,
        target,
        body.cron,
        body.params,
        body.experiment,
        body.timezone,
        body.enabled,
        created_by=who.username if who is not None else None,
    )
    _note(request, created.name)
    return reply(created, 201)


@router.get("/schedules/{name}", response_model=PipelineSchedule)
def get_schedule(name: str, request: Request) -> Response:
    return reply(_schedules(request).get_schedule(name))


@router.patch("/schedules/{name}", response_model=PipelineSchedule)
def update_schedule(name: str, body: UpdateSchedule, request: Request) -> Response:
    """Pause (`enabled: false`) or resume a schedule, or change its cron expression, time zone or params.
    Resuming skips the times that passed while it was paused."""
    if all(getattr(body, f) is None for f in UpdateSchedule.model_fields):
        raise InvalidArgument("Nothing to change: give enabled, cron, params or timezone.")
    schedules = _schedules(request)
    _note(request, name)
    return reply(schedules.update_schedule(name, body.enabled, body.cron, body.params, body.timezone))


@router.delete("/schedules/{name}")
def delete_schedule(name: str, request: Request) -> dict[str, Any]:
    """Delete a schedule (a run in progress goes on; its pipeline run stays in the tracking store)."""
    schedules = _schedules(request)
    _note(request, name)
    schedules.delete_schedule(name)
    return ok()


@router.post("/schedules/{name}/run", response_model=PipelineSchedule, status_code=202)
def run_schedule(name: str, request: Request) -> Response:
    """Start a run of the schedule now, in the background (its next scheduled time stays). The schedule
    shows it RUNNING, then its pipeline run id and status once it ended."""
    _schedules(request)
    _note(request, name)
    return reply(request.app.state.pipeline_scheduler.run_now(name), 202)
