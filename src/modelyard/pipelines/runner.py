"""Runs a pipeline graph: expands loops, checks the cache, starts ready steps on an executor up to its
parallelism, retries with backoff, stops starting steps after a failure, and tracks everything.

A pipeline run is a parent run and each step instance a child run (see `records`). `resume` continues a
failed or cancelled run in place: instances that succeeded with the same cache key, and whose outputs still
match their recorded SHA-256, are reused whatever the cache settings; everything else runs again.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import signal
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard import config
from modelyard.errors import InvalidArgument, InvalidState
from modelyard.pipelines import cache, records
from modelyard.pipelines.dsl import CodeRef, Pipeline
from modelyard.pipelines.entrypoint import import_code, load_input
from modelyard.pipelines.executor import Executor, Job, LocalExecutor
from modelyard.pipelines.graph import OPS, Collected, Condition, Graph, LoopItem, OutputRef, ParamRef, Task
from modelyard.pipelines.records import StepRecord
from modelyard.pipelines.serialize import sha256_path
from modelyard.schemas import Metric, RunStatus, RunTag

_POLL_S = 0.01


@dataclass
class Instance:
    """One execution unit: a task, or one iteration of a task inside loops."""

    key: str
    task: Task
    index: tuple[int, ...]
    record: StepRecord
    handle: Any = None
    ready_at: float = 0.0
    started: float = 0.0
    inputs: dict[str, dict[str, Any]] = field(default_factory=dict)
    weight: int = 1

    @property
    def state(self) -> str:
        return self.record.state


@dataclass
class PipelineRun:
    """The outcome of a pipeline run: its tracking run id, status, and each step instance's record."""

    run_id: str
    status: str
    steps: dict[str, StepRecord]
    tracking_uri: str

    @property
    def ok(self) -> bool:
        return self.status == "FINISHED"

    def output(self, instance: str, name: str = "output") -> Any:
        """Load output `name` of step instance `instance` (e.g. "train[1]")."""
        from modelyard.tracking.client import Client

        record = self.steps.get(instance)
        if record is None or name not in record.outputs:
            raise InvalidArgument(f"No output {name!r} of step {instance!r} in pipeline run {self.run_id}.")
        import tempfile

        with tempfile.TemporaryDirectory() as tmp:
            value = load_input({"artifact": record.outputs[name]}, Client(self.tracking_uri), Path(tmp))
            if isinstance(value, Path):  # a file output: keep a copy outside the temporary folder
                dest = Path(tempfile.mkdtemp(prefix="modelyard-output-")) / value.name
                shutil.move(str(value), dest)
                value = dest
            return value


class PipelineCancelled(KeyboardInterrupt):
    """Ctrl-C or SIGTERM stopped the run; its steps were stopped and `resume(run_id)` continues it."""

    def __init__(self, run_id: str) -> None:
        super().__init__(f"pipeline run {run_id} was cancelled")
        self.run_id = run_id


OnChange = Callable[[str, StepRecord], None]


def run_pipeline(
    pipeline: Pipeline,
    params: Mapping[str, Any] | None = None,
    *,
    experiment: str | None = None,
    executor: Executor | None = None,
    max_parallel: int | None = None,
    cache: bool = True,
    tracking_uri: str | None = None,
    on_change: OnChange | None = None,
) -> PipelineRun:
    """Run `pipeline` with `params`; returns when every step is done (or the run failed).

    `experiment` defaults to the pipeline's name; `cache=False` runs every step (`--no-cache`)."""
    from modelyard.pipelines import entrypoint
    from modelyard.tracking import fluent
    from modelyard.tracking.client import Client

    if entrypoint.loading_step_code is not None:
        raise InvalidState(
            f"run_pipeline was called while step {entrypoint.loading_step_code!r} imported the file that "
            'defines it. Put the call under `if __name__ == "__main__":` so importing the file only defines '
            "the steps."
        )
    values = pipeline.resolve_params(params)
    graph = pipeline.build()
    client = Client(tracking_uri)
    experiment_id = client.get_or_create_experiment(experiment or pipeline.name)
    chosen = executor or LocalExecutor(max_parallel)
    parent = client.create_run(
        experiment_id,
        run_name=f"{pipeline.name}-{time.strftime('%Y%m%d-%H%M%S')}",
        params=values,
        tags={
            **_context_tags(),
            records.TAG_PIPELINE: pipeline.name,
            records.TAG_SOURCE: json.dumps(pipeline.code.__dict__),
            records.TAG_PARAMS: json.dumps(values),
            records.TAG_EXECUTOR: chosen.name,
        },
    )
    client.log_dict(parent.run_id, graph.to_dict(), records.GRAPH_ARTIFACT)
    # the packages (and uncommitted diff) every step ran with; listing them takes ~0.1 s, so alongside the run
    environment = threading.Thread(target=fluent.log_environment, args=(client, parent.run_id), daemon=True)
    environment.start()
    runner = _Runner(graph, values, client, experiment_id, parent.run_id, chosen, cache, {}, on_change)
    try:
        return runner.run()
    finally:
        environment.join()


def resume(
    run_id: str,
    *,
    executor: Executor | None = None,
    max_parallel: int | None = None,
    cache: bool = True,
    tracking_uri: str | None = None,
    on_change: OnChange | None = None,
    force: bool = False,
) -> PipelineRun:
    """Continue pipeline run `run_id` after a failure or cancel: only failed, cancelled and not-yet-run steps
    (and steps whose code or inputs changed since) run. `force` resumes a run still marked RUNNING (its
    process died without marking it)."""
    from modelyard.tracking.client import Client

    client = Client(tracking_uri)
    run = client.get_run(run_id)
    tags = run.data.tags
    if records.TAG_PIPELINE not in tags:
        raise InvalidArgument(f"Run {run_id} is not a pipeline run; list them with: modelyard pipelines list")
    if run.info.status == RunStatus.RUNNING and not force:
        raise InvalidState(
            f"Pipeline run {run_id} is still RUNNING. If the process running it died, resume it anyway with: "
            f"modelyard pipelines resume {run_id} --force"
        )
    if run.info.status == RunStatus.FINISHED:
        raise InvalidState(
            f"Pipeline run {run_id} already finished; start a new run instead (cached steps are reused)."
        )
    ref = json.loads(tags[records.TAG_SOURCE])
    try:
        pipeline = import_code(ref)
    except Exception as exc:
        raise InvalidArgument(
            f"Cannot import the pipeline {CodeRef(**ref).describe()} to resume it: {type(exc).__name__}: {exc}"
        ) from None
    if not isinstance(pipeline, Pipeline):
        raise InvalidArgument(f"{CodeRef(**ref).describe()} is no longer a @pipeline.")
    values = json.loads(tags.get(records.TAG_PARAMS, "{}"))
    graph = pipeline.build()
    previous = records.step_records(client, run)
    chosen = executor or LocalExecutor(max_parallel)
    client.update_run(run_id, status=RunStatus.RUNNING)
    client.log_dict(run_id, graph.to_dict(), records.GRAPH_ARTIFACT)
    runner = _Runner(
        graph, values, client, run.info.experiment_id, run_id, chosen, cache, previous, on_change
    )
    return runner.run()


def _context_tags() -> dict[str, str]:
    from modelyard.tracking import context

    return context.run_tags()


def instance_key(task_id: str, index: tuple[int, ...]) -> str:
    """A step instance's name: the task id, with its loop indexes when it runs in loops ("train[1]")."""
    return task_id if not index else f"{task_id}[{','.join(map(str, index))}]"


class _Unready(Exception):
    """An input cannot be resolved yet."""


class _Runner:
    def __init__(
        self,
        graph: Graph,
        params: dict[str, Any],
        client: Any,
        experiment_id: str,
        run_id: str,
        executor: Executor,
        use_cache: bool,
        previous: dict[str, StepRecord],
        on_change: OnChange | None,
    ) -> None:
        self.graph, self.params, self.client = graph, params, client
        self.experiment_id, self.run_id, self.executor = experiment_id, run_id, executor
        self.use_cache, self.previous, self.on_change = use_cache, previous, on_change
        self.instances: dict[str, Instance] = {}
        self.order = graph.order()
        self.rank = {
            task_id: n for n, task_id in enumerate(self.order)
        }  # dependency order, for starting steps
        self.failed = False
        self.stop_requested = False
        self.work = config.home() / "pipelines" / run_id
        self.values: dict[tuple[str, str], Any] = {}  # (instance, output) → loaded value (conditions, loops)
        self.checked: dict[tuple[str, str], bool] = {}  # (run id, path) → output matched its SHA-256

    # -- main loop -----------------------------------------------------------------------------------------
    def run(self) -> PipelineRun:
        with self._stop_signals():
            try:
                while self._step_loop():
                    if self.stop_requested:
                        raise KeyboardInterrupt
            except KeyboardInterrupt:
                self._cancel_all()
                self._finish(RunStatus.KILLED)
                raise PipelineCancelled(self.run_id) from None
            except BaseException:
                self._cancel_all()
                self._finish(RunStatus.FAILED)
                raise
        self._finish(RunStatus.FAILED if self.failed else RunStatus.FINISHED)
        return PipelineRun(
            self.run_id,
            "FAILED" if self.failed else "FINISHED",
            {k: i.record for k, i in self.instances.items()},
            self.client.tracking_uri,
        )

    @contextlib.contextmanager
    def _stop_signals(self) -> Iterator[None]:
        """Ctrl-C and SIGTERM only ask the loop to stop, so they never land inside a store write or a
        process start; the loop then stops the running steps and marks the run KILLED (resumable)."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def request_stop(_signum: int, _frame: Any) -> None:
            self.stop_requested = True

        previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _step_loop(self) -> bool:
        """One round: expand, settle, start, poll. False when nothing is left to do."""
        progressed = self._expand()
        for inst in list(self.instances.values()):
            if inst.state == "PENDING":
                progressed |= self._settle(inst)
        if not self.failed:
            progressed |= self._start_ready()
        running = [i for i in self.instances.values() if i.state == "RUNNING"]
        for inst in running:
            outcome = self.executor.poll(inst.handle)
            if outcome is not None:
                self._finished(inst, outcome)
                progressed = True
        waiting = [i for i in self.instances.values() if i.state in ("READY", "WAITING")]
        if self.failed:
            for inst in waiting:
                if inst.state == "WAITING":  # its retry will not start: it failed with its last error
                    self._end_failed(inst, "FAILED")
                else:
                    self._set(inst, "PENDING")
            waiting = []
        if not running and not waiting and not progressed:
            return False
        if not progressed:
            time.sleep(_POLL_S)
        return True

    def _start_ready(self) -> bool:
        used = sum(i.weight for i in self.instances.values() if i.state == "RUNNING")
        started = False
        now = time.monotonic()
        for key in self._ordered_keys():
            inst = self.instances[key]
            if inst.state not in ("READY", "WAITING") or inst.ready_at > now:
                continue
            if used + inst.weight > self.executor.max_parallel and used > 0:
                break
            self._launch(inst)
            used += inst.weight
            started = True
        return started

    def _ordered_keys(self) -> list[str]:
        return sorted(
            self.instances, key=lambda k: (self.rank[self.instances[k].task.id], self.instances[k].index)
        )

    # -- expansion -----------------------------------------------------------------------------------------
    def _expand(self) -> bool:
        """Create the instances whose loop items are known."""
        added = False
        for task_id in self.order:
            task = self.graph.tasks[task_id]
            for index in self._indices(task) or []:
                key = instance_key(task_id, index)
                if key not in self.instances:
                    record = StepRecord(instance=key, step_id=task_id, state="PENDING")
                    weight = max(1, min(self.executor.max_parallel, math.ceil(task.step.options.cpu or 1)))
                    self.instances[key] = Instance(key, task, index, record, weight=weight)
                    added = True
        return added

    def _indices(self, task: Task) -> list[tuple[int, ...]] | None:
        prefixes: list[tuple[int, ...]] = [()]
        for loop_id in self.graph.loop_chain(task.loop):
            grown: list[tuple[int, ...]] = []
            for prefix in prefixes:
                items = self._loop_items(loop_id, prefix)
                if items is not None:
                    grown += [(*prefix, n) for n in range(len(items))]
            prefixes = grown
        return prefixes

    def _loop_items(self, loop_id: str, prefix: tuple[int, ...]) -> list[Any] | None:
        items = self.graph.loops[loop_id].items
        if isinstance(items, list):
            return items
        try:
            value = self._plain_value(items, prefix)
        except _Unready:
            return None
        if value is _SKIPPED:
            return []
        if not isinstance(value, list):
            raise InvalidArgument(f"parallel_for over {items!r} needs a list, got {type(value).__name__}.")
        return value

    # -- resolving values ------------------------------------------------------------------------------------
    def _producer(self, task_id: str, index: tuple[int, ...]) -> Instance:
        depth = len(self.graph.loop_chain(self.graph.tasks[task_id].loop))
        key = instance_key(task_id, index[:depth])
        inst = self.instances.get(key)
        if inst is None or inst.state not in records.FINAL_STATES:
            raise _Unready(key)
        return inst

    def _collected(self, ref: Collected, index: tuple[int, ...]) -> list[Instance]:
        depth = len(self.graph.loop_chain(self.graph.loops[ref.loop].parent))
        items = self._loop_items(ref.loop, index[:depth])
        if items is None:
            raise _Unready(ref.loop)
        return [self._producer(ref.ref.task_id, (*index[:depth], n)) for n in range(len(items))]

    def _spec(self, value: Any, inst: Instance) -> dict[str, Any] | object:
        """An input's resolved form for the entry point, or _SKIPPED when its producer was skipped."""
        if isinstance(value, list) and any(isinstance(v, (OutputRef, ParamRef, LoopItem)) for v in value):
            specs = [self._spec(v, inst) for v in value]
            if any(s is _SKIPPED for s in specs):
                return _SKIPPED
            return {"list": specs}
        if isinstance(value, Collected):
            producers = self._collected(value, inst.index)
            if any(p.state not in (*records.DONE_STATES, "SKIPPED") for p in producers):
                raise _Unready(value.ref.task_id)
            done = [p for p in producers if p.state in records.DONE_STATES]  # skipped iterations drop out
            return {"list": [{"artifact": p.record.outputs[value.ref.name]} for p in done]}
        if isinstance(value, OutputRef):
            producer = self._producer(value.task_id, inst.index)
            if producer.state == "SKIPPED":
                return _SKIPPED
            if producer.state not in records.DONE_STATES:
                raise _Unready(producer.key)
            return {"artifact": producer.record.outputs[value.name]}
        return {"value": self._plain_value(value, inst.index)}

    def _plain_value(self, value: Any, index: tuple[int, ...]) -> Any:
        """The Python value of a parameter, loop item, literal or (small) step output."""
        if isinstance(value, ParamRef):
            return self.params[value.name]
        if isinstance(value, LoopItem):
            depth = len(self.graph.loop_chain(value.loop_id))
            loop = self.graph.loops[value.loop_id]
            items = self._loop_items(value.loop_id, index[: depth - 1])
            if items is None:
                raise _Unready(loop.id)
            item = items[index[depth - 1]]
            if value.key is None:
                return item
            if not isinstance(item, dict) or value.key not in item:
                raise InvalidArgument(f"Loop {loop.id!r}: item {item!r} has no field {value.key!r}.")
            return item[value.key]
        if isinstance(value, OutputRef):
            producer = self._producer(value.task_id, index)
            if producer.state == "SKIPPED":
                return _SKIPPED
            if producer.state not in records.DONE_STATES:
                raise _Unready(producer.key)
            cache_key = (producer.key, value.name)
            if cache_key not in self.values:
                entry = producer.record.outputs[value.name]
                self.values[cache_key] = load_input({"artifact": entry}, self.client, self._scratch())
            return self.values[cache_key]
        return value

    def _scratch(self) -> Path:
        path = self.work / "scratch"
        path.mkdir(parents=True, exist_ok=True)
        return path

    # -- deciding ------------------------------------------------------------------------------------------
    def _settle(self, inst: Instance) -> bool:
        """Decide a pending instance once its inputs are final: skip it, reuse a result, or make it ready."""
        task = inst.task
        try:
            for dep in task.depends_on:
                self._producer(dep, inst.index)
            inputs = {name: self._spec(value, inst) for name, value in task.args.items()}
            conditions = [
                c for lid in self.graph.loop_chain(task.loop) for c in self.graph.loops[lid].conditions
            ]
            verdict = self._conditions([*conditions, *task.conditions], inst.index)
        except _Unready:
            return False
        if any(self._state_of(dep, inst) in ("FAILED", "CANCELLED") for dep in task.depends_on):
            return False
        if verdict is not None or any(spec is _SKIPPED for spec in inputs.values()):
            self._record_skip(inst, verdict or "an input's step was skipped")
            return True
        inst.inputs = inputs  # type: ignore[assignment]
        for name, spec in inst.inputs.items():  # a local file given by path: cache on its content
            value = spec.get("value")
            if task.step.inputs[name].kind == "file" and isinstance(value, str):
                spec["path"] = True  # the step gets a Path
                if Path(value).is_file():
                    spec["sha256"] = sha256_path(Path(value))
        key = cache.step_key(task.step, inst.inputs)
        inst.record.cache_key = key
        earlier = self.previous.get(inst.key)
        if (
            earlier
            and earlier.state in records.DONE_STATES
            and earlier.cache_key == key
            and cache.outputs_intact(self.client, earlier, self.checked)
        ):
            inst.record = earlier
            self._notify(inst)
            return True
        if self.use_cache and task.step.options.cache:
            staleness = task.step.options.max_staleness_s
            hit = cache.lookup(self.client, self.experiment_id, key, staleness, self.checked)
            if hit is not None:
                self._record_hit(inst, hit)
                return True
        self.executor.warm_up()
        self._set(inst, "READY")
        return True

    def _state_of(self, task_id: str, inst: Instance) -> str:
        try:
            return self._producer(task_id, inst.index).state
        except _Unready:
            return "PENDING"

    def _conditions(self, conditions: list[Condition], index: tuple[int, ...]) -> str | None:
        """None when every condition holds, else why the instance is skipped."""
        for cond in conditions:
            left = self._plain_value(cond.left, index)
            right = self._plain_value(cond.right, index)
            if left is _SKIPPED or right is _SKIPPED:
                return f"condition {cond.describe()}: its step was skipped"
            try:
                holds = OPS[cond.op](left, right)
            except TypeError:
                raise InvalidArgument(
                    f"Condition {cond.describe()} compares {left!r} with {right!r}, which cannot be compared."
                ) from None
            if not holds:
                return f"condition {cond.describe()} was false ({left!r} {cond.op} {right!r})"
        return None

    # -- recording -----------------------------------------------------------------------------------------
    def _child(self, inst: Instance, tags: dict[str, str]) -> str:
        params = {
            name: json.dumps(spec["value"]) if not isinstance(spec["value"], str) else spec["value"]
            for name, spec in inst.inputs.items()
            if "value" in spec and len(json.dumps(spec["value"])) <= 500
        }
        run = self.client.create_run(
            self.experiment_id,
            run_name=inst.key,
            parent_run_id=self.run_id,
            params=params,
            tags={
                records.TAG_STEP: inst.task.id,
                records.TAG_INSTANCE: inst.key,
                records.TAG_STATE: inst.state,
                **({records.TAG_CACHE_KEY: inst.record.cache_key} if inst.record.cache_key else {}),
                **tags,
            },
        )
        inst.record.run_id = run.run_id
        inst.record.start_time = run.info.start_time
        return str(run.run_id)

    def _record_skip(self, inst: Instance, reason: str) -> None:
        inst.record.state = "SKIPPED"
        inst.record.error = reason
        run_id = self._child(inst, {records.TAG_ERROR: reason[:7000]})
        info = self.client.set_terminated(run_id, RunStatus.FINISHED)
        inst.record.end_time = info.end_time
        self._notify(inst)

    def _record_hit(self, inst: Instance, hit: StepRecord) -> None:
        inst.record.state = "CACHED"
        inst.record.cache = "hit"
        inst.record.cached_from = hit.run_id
        inst.record.outputs = hit.outputs
        run_id = self._child(
            inst,
            {
                records.TAG_CACHE: "hit",
                records.TAG_CACHED_FROM: str(hit.run_id),
                records.TAG_OUTPUTS: json.dumps(hit.outputs),
            },
        )
        self._store(run_id, {}, duration_s=0.0)
        info = self.client.set_terminated(run_id, RunStatus.FINISHED)
        inst.record.end_time = info.end_time
        self._notify(inst)

    def _launch(self, inst: Instance) -> None:
        inst.record.attempts += 1
        inst.record.state = "RUNNING"  # the child run is created in that state
        if inst.record.run_id is None:
            self._child(
                inst,
                {records.TAG_CACHE: "miss" if self.use_cache and inst.task.step.options.cache else "off"},
            )
        else:
            self.client.set_tags(inst.record.run_id, {records.TAG_STATE: "RUNNING"})
        step = inst.task.step
        task = {
            "step": step.code.__dict__,
            "instance": inst.key,
            "tracking_uri": self.client.tracking_uri,
            "run_id": inst.record.run_id,
            "inputs": inst.inputs,
            "outputs": dict(step.outputs),
        }
        log_path = self.work / f"{inst.key}.log"
        inst.started = time.monotonic()
        inst.handle = self.executor.submit(Job(inst.key, task, step.options, log_path))
        self._set(inst, "RUNNING")

    def _finished(self, inst: Instance, outcome: dict[str, Any]) -> None:
        record, options = inst.record, inst.task.step.options
        run_id = str(record.run_id)
        self._upload_log(inst)
        tags = {records.TAG_ATTEMPTS: str(record.attempts)}
        if outcome.get("node"):  # where a cluster executor ran it
            tags[records.TAG_NODE] = str(outcome["node"])
        if outcome.get("ok"):
            record.outputs = {name: {**entry, "run_id": run_id} for name, entry in outcome["outputs"].items()}
            record.cache = "miss" if self.use_cache and options.cache else "off"
            record.error = None
            tags.update({records.TAG_STATE: "SUCCEEDED", records.TAG_OUTPUTS: json.dumps(record.outputs)})
            self._store(run_id, tags, duration_s=time.monotonic() - inst.started)
            info = self.client.get_run(run_id).info
            if info.status != RunStatus.FINISHED:  # e.g. the step ran on a cluster without a tracking run end
                info = self.client.set_terminated(run_id, RunStatus.FINISHED)
            record.end_time = info.end_time
            self._set(inst, "SUCCEEDED")
            return
        record.error = str(outcome.get("error", "failed"))
        cancelled = record.error == "cancelled"
        retry = outcome.get("retry", True)  # False: another attempt cannot help (a damaged input)
        if retry and not cancelled and not self.failed and record.attempts <= options.retries:
            inst.ready_at = time.monotonic() + options.retry_delay(record.attempts + 1)
            self._store(
                run_id, {**tags, records.TAG_STATE: "WAITING", records.TAG_ERROR: record.error[:7000]}
            )
            self._set(inst, "WAITING")
            return
        self._end_failed(inst, "CANCELLED" if cancelled else "FAILED", tags)

    def _end_failed(self, inst: Instance, state: str, tags: dict[str, str] | None = None) -> None:
        """Record `inst` as FAILED or CANCELLED, with its last error, and end its run."""
        record = inst.record
        all_tags = {**(tags or {}), records.TAG_STATE: state, records.TAG_ATTEMPTS: str(record.attempts)}
        if record.error:
            all_tags[records.TAG_ERROR] = record.error[:7000]
        self._store(str(record.run_id), all_tags)
        info = self.client.set_terminated(
            str(record.run_id), RunStatus.FAILED if state == "FAILED" else RunStatus.KILLED
        )
        record.end_time = info.end_time
        if state == "FAILED":
            self.failed = True
        self._set(inst, state)

    def _store(self, run_id: str, tags: dict[str, str], duration_s: float | None = None) -> None:
        """Tags (and the duration metric) written now, in one transaction: nothing waits in a buffer."""
        metrics = []
        if duration_s is not None:
            metrics.append(
                Metric(key="duration_s", value=round(duration_s, 3), timestamp=int(time.time() * 1000))
            )
        self.client.log_batch(run_id, metrics=metrics, tags=[RunTag(key=k, value=v) for k, v in tags.items()])

    def _upload_log(self, inst: Instance) -> None:
        path = self.work / f"{inst.key}.log"
        if path.exists() and inst.record.run_id:
            self.client.artifact_store(inst.record.run_id).put_file(path, records.LOG_ARTIFACT)

    def _set(self, inst: Instance, state: str) -> None:
        inst.record.state = state
        self._notify(inst)

    def _notify(self, inst: Instance) -> None:
        if self.on_change is not None:
            self.on_change(inst.key, inst.record)

    def _cancel_all(self) -> None:
        for inst in self.instances.values():
            if inst.state == "RUNNING":
                self.executor.cancel(inst.handle)
        for inst in self.instances.values():
            if inst.state == "RUNNING":
                outcome = None
                while outcome is None:
                    outcome = self.executor.poll(inst.handle)
                    time.sleep(_POLL_S)
                self._finished(inst, {"ok": False, "error": "cancelled"})
            elif inst.state in ("READY", "WAITING"):
                self._set(inst, "PENDING")

    def _finish(self, status: RunStatus) -> None:
        self.executor.close()
        self.client.set_terminated(self.run_id, status)
        shutil.rmtree(self.work, ignore_errors=True)


class _SkippedType:
    def __repr__(self) -> str:
        return "<skipped>"


_SKIPPED: Any = _SkippedType()
