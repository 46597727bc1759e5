"""How pipeline runs live in the tracking store, and reading them back.

A pipeline run is a parent run (tag `modelyard.pipeline`, the DAG in artifact `pipeline/graph.json`); each
step instance that ran, hit the cache or was skipped is a child run with the `modelyard.step.*` tags below,
its inputs as params, `duration_s` as a metric, its log at `logs/step.log` and its outputs under `outputs/`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

TAG_PIPELINE = "modelyard.pipeline"  # on the parent run: the pipeline's name
TAG_SOURCE = "modelyard.pipeline.source"  # JSON CodeRef of the pipeline function
TAG_PARAMS = "modelyard.pipeline.params"  # JSON of the parameter values
TAG_EXECUTOR = "modelyard.pipeline.executor"
TAG_STEP = "modelyard.step.id"  # on a child run: the task id
TAG_INSTANCE = "modelyard.step.instance"  # task id plus loop index, e.g. train[1]
TAG_STATE = "modelyard.step.state"
TAG_CACHE_KEY = "modelyard.step.cache_key"
TAG_CACHE = "modelyard.step.cache"  # hit | miss | off
TAG_CACHED_FROM = "modelyard.step.cached_from"
TAG_OUTPUTS = "modelyard.step.outputs"
TAG_ATTEMPTS = "modelyard.step.attempts"
TAG_ERROR = "modelyard.step.error"
TAG_NODE = "modelyard.step.node"  # the cluster node that ran the step (Ray)
GRAPH_ARTIFACT = "pipeline/graph.json"
LOG_ARTIFACT = "logs/step.log"

# Step states. PENDING: not started (or never, after a failure); WAITING: between retry attempts.
DONE_STATES = ("SUCCEEDED", "CACHED")
FINAL_STATES = ("SUCCEEDED", "CACHED", "FAILED", "SKIPPED", "CANCELLED")


@dataclass
class StepRecord:
    """One step instance as stored: state, cache, outputs (each entry with the run that holds it)."""

    instance: str
    step_id: str
    state: str
    run_id: str | None = None
    cache: str | None = None
    cache_key: str | None = None
    cached_from: str | None = None
    outputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    attempts: int = 0
    error: str | None = None
    start_time: int | None = None
    end_time: int | None = None

    @property
    def duration_s(self) -> float | None:
        if self.start_time is None or self.end_time is None:
            return None
        return (self.end_time - self.start_time) / 1000

    @classmethod
    def from_run(cls, run: Any) -> StepRecord:
        tags = run.data.tags
        return cls(
            instance=tags.get(TAG_INSTANCE, run.info.run_name),
            step_id=tags.get(TAG_STEP, run.info.run_name),
            state=tags.get(TAG_STATE, "PENDING"),
            run_id=run.info.run_id,
            cache=tags.get(TAG_CACHE),
            cache_key=tags.get(TAG_CACHE_KEY),
            cached_from=tags.get(TAG_CACHED_FROM),
            outputs=json.loads(tags.get(TAG_OUTPUTS, "{}")),
            attempts=int(tags.get(TAG_ATTEMPTS, "0")),
            error=tags.get(TAG_ERROR),
            start_time=run.info.start_time,
            end_time=run.info.end_time,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "instance": self.instance,
            "step": self.step_id,
            "state": self.state,
            "run_id": self.run_id,
            "cache": self.cache,
            "cached_from": self.cached_from,
            "attempts": self.attempts,
            "error": self.error,
            "start_time": self.start_time,
            "end_time": self.end_time,
            "duration_s": self.duration_s,
            "outputs": self.outputs,
        }


def step_records(client: Any, run: Any) -> dict[str, StepRecord]:
    """The latest record of each step instance of pipeline run `run` (a resumed run has several tries)."""
    children = client.search_runs(
        [run.info.experiment_id],
        f"attributes.parent_run_id = '{run.info.run_id}'",
        order_by=["attributes.start_time ASC"],
        max_results=10000,
    )
    latest: dict[str, StepRecord] = {}
    for child in children:
        record = StepRecord.from_run(child)
        latest[record.instance] = record
    return latest


def pipeline_runs(client: Any, experiments: Any = None, max_results: int = 100) -> list[Any]:
    """Pipeline (parent) runs, newest first."""
    return list(
        client.search_runs(
            experiments,
            f"tags.`{TAG_PIPELINE}` != ''",
            order_by=["attributes.start_time DESC"],
            max_results=max_results,
        )
    )


def describe(client: Any, run_id: str) -> dict[str, Any]:
    """A pipeline run as JSON: its status, parameters, DAG and each step's state (for the CLI and REST API)."""
    from modelyard.errors import InvalidArgument

    run = client.get_run(run_id)
    if TAG_PIPELINE not in run.data.tags:
        raise InvalidArgument(f"Run {run_id} is not a pipeline run (it has no {TAG_PIPELINE!r} tag).")
    try:
        graph = json.loads(client.artifact_store(run_id).open_read(GRAPH_ARTIFACT).read())
    except Exception:  # an interrupted start: the DAG was not stored yet
        graph = {"steps": []}
    steps = step_records(client, run)
    return {
        "run_id": run_id,
        "pipeline": run.data.tags[TAG_PIPELINE],
        "status": run.info.status.value,
        "start_time": run.info.start_time,
        "end_time": run.info.end_time,
        "experiment_id": run.info.experiment_id,
        "params": json.loads(run.data.tags.get(TAG_PARAMS, "{}")),
        "executor": run.data.tags.get(TAG_EXECUTOR),
        "graph": graph,
        "steps": [record.to_dict() for record in steps.values()],
    }
