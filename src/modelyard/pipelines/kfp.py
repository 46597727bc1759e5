"""Kubeflow Pipelines: compile a `@pipeline` to a KFP v2 PipelineSpec YAML, submit it, and run its steps.

    from modelyard.pipelines.kfp import compile_pipeline, submit
    compile_pipeline(training, "training.yaml", image="registry.example.com/team/train:1.4")
    run_id = submit("training.yaml", "http://kfp.example.com", params={"lr": 0.05})

Each task becomes a container component (built with the kfp SDK from generated component YAML) whose
container runs this module's step runner: `python -m modelyard.pipelines.kfp --step module:qualname ...`.
The image must contain modelyard and the pipeline's code. Value outputs (int, float, bool, str, list, dict)
travel as typed KFP parameters, so `my.condition` and `my.parallel_for` work on them; every other output
(dataset, model, metrics, file, untyped) is stored in the tracking server's artifact store and travels as a
STRING parameter holding a JSON reference (run_id, path, format, sha256, uri). See docs/pipelines-kfp.md.
"""

from __future__ import annotations

import argparse
import contextlib
import inspect
import io
import json
import logging
import math
import os
import re
import signal
import sys
import tempfile
import threading
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidArgument, Unavailable
from modelyard.pipelines import records
from modelyard.pipelines.dsl import Pipeline, parse_memory
from modelyard.pipelines.graph import OPS, Collected, Condition, LoopItem, OutputRef, ParamRef, Task

RUNNER_MODULE = "modelyard.pipelines.kfp"
DEFAULT_GPU_TYPE = "nvidia.com/gpu"
DEFAULT_ATTEMPT_S = 3600  # KFP's own retry window (backoff_max_duration) when a step has no timeout

TAG_KFP_RUN = "modelyard.kfp.run_id"
TAG_KFP_TASK = "modelyard.kfp.task_id"
TAG_KFP_PIPELINE = "modelyard.kfp.pipeline"

_KFP_TYPE = dict(
    str="String", int="Integer", float="Float", bool="Boolean", list="JsonArray", dict="JsonObject"
)
_PY_TYPE: dict[str, type] = {"str": str, "int": int, "float": float, "bool": bool, "list": list, "dict": dict}
_KFP_MEMORY = re.compile(r"^[0-9]+(E|Ei|P|Pi|T|Ti|G|Gi|M|Mi|K|Ki)?$")
_SUBVAR = re.compile(r"^[a-zA-Z_][0-9a-zA-Z_]*$")


def _require_kfp() -> Any:
    try:
        import kfp
        from kfp import compiler, components, dsl  # noqa: F401
    except ImportError:
        raise InvalidArgument(
            "Kubeflow Pipelines support needs the kfp SDK: pip install 'modelyard[kfp]'"
        ) from None
    return kfp


def _sanitize(name: str) -> str:
    """The name KFP gives an input, output or parameter (kfp.dsl.utils.sanitize_input_name)."""
    return re.sub(r"[^a-z0-9]+", "_", name.lower()).strip("_")


# -- compiling ---------------------------------------------------------------------------------------------
def compile_pipeline(
    pipeline: Pipeline,
    path: str | os.PathLike[str],
    *,
    image: str | None = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
    gpu_type: str = DEFAULT_GPU_TYPE,
) -> Path:
    """Write `pipeline` as a KFP v2 PipelineSpec YAML to `path` (returned).

    `image`: the container image of steps that set none (`@step(image=...)` wins); it must have modelyard and
    the pipeline's code installed, there is no default. `tracking_uri`: where the steps record their runs and
    store their outputs (a tracking server or shared database + object store); None leaves it to the
    container's MODELYARD_TRACKING_URI. `experiment`: the experiment of the step runs (default: the
    pipeline's name). `gpu_type`: the accelerator resource of steps with `gpu=N`.
    """
    kfp = _require_kfp()
    func = _Compiler(pipeline, image, tracking_uri, experiment or pipeline.name, gpu_type).pipeline_function()
    try:
        kfp.compiler.Compiler().compile(func, package_path=str(path))
    except Exception as exc:
        raise InvalidArgument(
            f"Kubeflow Pipelines cannot compile {pipeline.name!r}: {type(exc).__name__}: {exc}"
        ) from None
    return Path(path)


class _Compiler:
    def __init__(self, pipeline: Pipeline, image: str | None, tracking_uri: str | None, *more: str) -> None:
        self.pipeline, self.graph, self.image, self.tracking_uri = (
            pipeline,
            pipeline.build(),
            image,
            tracking_uri,
        )
        self.experiment, self.gpu_type = more
        self.params = self._check_params()
        self.loop_params = self._loop_params()
        self._check_images()
        self._check_topology()
        self.io = {tid: self._io(task) for tid, task in self.graph.tasks.items()}

    # -- checks that give Modelyard's words instead of kfp's -------------------------------------------------
    def _check_params(self) -> dict[str, Any]:
        for spec in self.pipeline.params.values():
            if _sanitize(spec.name) != spec.name:
                raise InvalidArgument(
                    f"Pipeline parameter {spec.name!r}: Kubeflow Pipelines renames parameters to lower-case "
                    f"letters, digits and inner '_'; rename it (e.g. {(_sanitize(spec.name) or 'param')!r})."
                )
            if spec.kind not in _KFP_TYPE:
                raise InvalidArgument(
                    f"Pipeline parameter {spec.name!r} is {spec.kind}; on Kubeflow Pipelines a parameter must be "
                    "annotated int, float, bool, str, list or dict."
                )
        return dict(self.pipeline.params)

    def _loop_params(self) -> dict[str, str]:
        """Literal loop lists become defaulted list parameters (a raw list of dicts cannot be indexed by the
        KFP backend, kubeflow/pipelines#12191, and kfp types a raw list's items by its first one)."""
        names: dict[str, str] = {}
        for loop_id, loop in self.graph.loops.items():
            if isinstance(loop.items, list):
                name = f"{_sanitize(loop_id) or 'loop'}_items"
                if name in self.params or name in names.values():
                    raise InvalidArgument(
                        f"parallel_for {loop_id!r}: its items become the Kubeflow parameter {name!r}, which "
                        "clashes with another parameter; name the loop with parallel_for(..., name=...)."
                    )
                names[loop_id] = name
        return names

    def _check_images(self) -> None:
        missing = [t.id for t in self.graph.tasks.values() if not (t.step.options.image or self.image)]
        if missing:
            raise InvalidArgument(
                f"Steps {', '.join(missing)} have no container image. Kubeflow Pipelines runs each step in an "
                "image with modelyard and your code installed: pass --image (image=...) or @step(image=...)."
            )

    def _check_topology(self) -> None:
        """A value made under a condition is only usable under that same condition on KFP."""
        for task in self.graph.tasks.values():
            mine = {id(c) for c in self._conditions_of(task)}
            for ref, where in self._refs(task):
                producer = self.graph.tasks[ref.task_id]
                theirs = [c for c in self._conditions_of(producer) if id(c) not in mine]
                if theirs:
                    raise InvalidArgument(
                        f"Step {task.id!r} ({where}) needs {ref.task_id!r}, which only runs when "
                        f"{theirs[0].describe()}; Kubeflow Pipelines needs {task.id!r} inside that "
                        "my.condition block too."
                    )

    def _conditions_of(self, task: Task) -> list[Condition]:
        conds = [c for lid in self.graph.loop_chain(task.loop) for c in self.graph.loops[lid].conditions]
        return conds + list(task.conditions)

    def _refs(self, task: Task) -> list[tuple[OutputRef, str]]:
        found: list[tuple[OutputRef, str]] = []
        for name, value in task.args.items():
            for item in value if isinstance(value, list) else [value]:
                if isinstance(item, OutputRef):
                    found.append((item, f"argument {name!r}"))
                elif isinstance(item, Collected):
                    found.append((item.ref, f"argument {name!r}"))
        for cond in task.conditions:
            found += [(side, "condition") for side in (cond.left, cond.right) if isinstance(side, OutputRef)]
        for dep in sorted(task.depends_on):
            found += [(OutputRef(dep, "", "any", None), ".after()")]
        return found

    # -- the pipeline function kfp traces --------------------------------------------------------------------
    def pipeline_function(self) -> Any:
        from kfp import components, dsl

        comps = {
            tid: components.load_component_from_text(self.component_yaml(t))
            for tid, t in self.graph.tasks.items()
        }
        params = {n: (s.kind, s.default, s.required) for n, s in self.params.items()}
        for loop_id, name in self.loop_params.items():
            params[name] = ("list", self.graph.loops[loop_id].items, False)

        def body(*values: Any) -> None:
            _Emitter(self, comps, dict(zip(params, values))).emit()

        name = _k8s_name(self.pipeline.name)
        body.__name__ = body.__qualname__ = name.replace("-", "_")
        body.__doc__ = self.pipeline.__doc__
        positional = inspect.Parameter.POSITIONAL_OR_KEYWORD
        body.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(
                    n, positional, annotation=_PY_TYPE[kind], **({} if req else {"default": default})
                )
                for n, (kind, default, req) in params.items()
            ]
        )
        description = (self.pipeline.__doc__ or "").strip().split("\n")[0] or None
        try:
            return dsl.pipeline(name=name, display_name=self.pipeline.name, description=description)(body)
        except InvalidArgument:
            raise
        except Exception as exc:
            what = f"{type(exc).__name__}: {exc}"
            raise InvalidArgument(
                f"Kubeflow Pipelines cannot express {self.pipeline.name!r}: {what}"
            ) from None

    # -- one component per task -----------------------------------------------------------------------------
    def _io(self, task: Task) -> tuple[list[tuple[str, str | None, str, str, Any]], dict[str, str]]:
        """Inputs: (python name, kfp input name or None for a literal, kfp type, encoding, value) per value
        passed; a list argument holding references gives one per element. Outputs: name → kfp name."""
        taken: set[str] = set()
        found: list[tuple[str, str | None, str, str, Any]] = []
        for name, value in task.args.items():
            declared = task.step.inputs[name]
            if isinstance(value, list) and any(isinstance(v, (OutputRef, ParamRef, LoopItem)) for v in value):
                for n, item in enumerate(value):
                    kind = declared.element_kind
                    if isinstance(item, (OutputRef, ParamRef, LoopItem)):
                        kfp_type, enc = self._source(task, name, item, kind)
                        found.append((name, _unique(f"{name}_{n}", taken), kfp_type, "item:" + enc, item))
                    else:
                        found.append((name, None, "", "item:json", item))
                continue
            if isinstance(value, (OutputRef, ParamRef, LoopItem, Collected)):
                kfp_type, enc = self._source(task, name, value, declared.kind)
                found.append((name, _unique(name, taken), kfp_type, enc, value))
            else:
                found.append((name, None, "", "str" if isinstance(value, str) else "json", value))
        return found, {name: _unique(name, taken) for name in task.step.outputs}

    def _source(self, task: Task, name: str, value: Any, declared: str) -> tuple[str, str]:
        """The kfp parameter type of `value` and how the step runner decodes its text."""
        want = declared if declared in _KFP_TYPE else None
        if isinstance(value, ParamRef):
            kind = self.params[value.name].kind
            return _KFP_TYPE[kind], want or kind
        if isinstance(value, OutputRef):
            if value.kind in _KFP_TYPE:
                return _KFP_TYPE[value.kind], want or value.kind
            return "String", "ref"
        if isinstance(value, Collected):
            return "JsonArray", "list" if value.ref.kind in _KFP_TYPE else "refs"
        if isinstance(value, LoopItem):
            if value.key is not None and not _SUBVAR.match(value.key):
                raise InvalidArgument(
                    f"Step {task.id!r}, argument {name!r}: item[{value.key!r}]: Kubeflow Pipelines only reads "
                    "item fields named like identifiers (letters, digits, '_')."
                )
            return (_KFP_TYPE[want], want) if want else ("String", "auto")
        raise InvalidArgument(f"Step {task.id!r}, argument {name!r}: cannot pass {value!r} on Kubeflow.")

    def component_yaml(self, task: Task) -> str:
        import yaml

        step = task.step
        args: list[Any] = ["--step", f"{step.code.module}:{step.code.qualname}"]
        if step.code.file:
            args += ["--file", _relative(step.code.file)]
        args += ["--instance", task.id, "--experiment", self.experiment, "--pipeline", self.pipeline.name]
        if task.loop is not None:
            args.append("--in-loop")
        if self.tracking_uri:
            args += ["--tracking-uri", self.tracking_uri]
        if step.options.timeout_s:
            args += ["--timeout", _number(step.options.timeout_s)]
        args += ["--kfp-run", "{{$.pipeline_job_uuid}}", "--kfp-task", "{{$.pipeline_task_uuid}}"]
        inputs, outputs = [], []
        for name, kname, kfp_type, enc, value in self.io[task.id][0]:
            flag, enc = ("--item", enc[5:]) if enc.startswith("item:") else ("--input", enc)
            if kname is None:
                text = value if enc == "str" else json.dumps(value, separators=(",", ":"))
                args += [flag, name, enc, text]
            else:
                inputs.append({"name": kname, "type": kfp_type})
                args += [flag, name, enc, {"inputValue": kname}]
        for name, kname in self.io[task.id][1].items():
            kind = step.outputs[name]
            outputs.append({"name": kname, "type": _KFP_TYPE.get(kind, "String")})
            args += ["--output", name, kind, {"outputPath": kname}]
        container = {"image": step.options.image or self.image, "command": ["python", "-m", RUNNER_MODULE]}
        container["args"] = args
        doc = {
            "name": task.id,
            "inputs": inputs,
            "outputs": outputs,
            "implementation": {"container": container},
        }
        return str(yaml.safe_dump(doc, sort_keys=False))

    # -- task options -----------------------------------------------------------------------------------------
    def configure(self, task: Task, kt: Any) -> None:
        options = task.step.options
        kt.set_display_name(task.id)
        kt.set_caching_options(bool(options.cache))
        if options.max_staleness_s is not None:
            warnings.warn(
                f"Step {task.id!r}: Kubeflow Pipelines has no per-step max_staleness; ignored.", stacklevel=2
            )
        if options.retries:
            delays = [options.retry_delay(attempt) for attempt in range(2, options.retries + 2)]
            window = sum(delays) + (options.retries + 1) * (options.timeout_s or DEFAULT_ATTEMPT_S)
            delay, factor = f"{math.ceil(options.retry_delay_s)}s", float(options.retry_backoff)
            kt.set_retry(options.retries, delay, factor, backoff_max_duration=f"{math.ceil(window)}s")
        if options.cpu is not None:
            cpu = options.cpu
            kt.set_cpu_limit(str(int(cpu)) if float(cpu).is_integer() else f"{math.ceil(cpu * 1000)}m")
        if options.memory is not None:
            kt.set_memory_limit(_memory(task, options.memory))
        if options.gpu:
            kt.set_accelerator_type(self.gpu_type)
            kt.set_accelerator_limit(int(options.gpu))
        for key, value in options.env.items():
            kt.set_env_variable(str(key), str(value))


class _Emitter:
    """Creates the kfp tasks in the order the pipeline function called its steps, opening a ParallelFor or
    If block wherever a task's loops and conditions change (each such block was contiguous there too)."""

    def __init__(self, compiler: _Compiler, comps: dict[str, Any], values: dict[str, Any]) -> None:
        self.c, self.comps, self.values = compiler, comps, values
        self.tasks: dict[str, Any] = {}
        self.items: dict[str, Any] = {}

    def emit(self) -> None:
        stack: list[tuple[tuple[str, int | str], Any]] = []  # open blocks: (key, context manager)
        for task in self.c.graph.tasks.values():
            path = self._path(task)
            keep = 0
            while keep < min(len(stack), len(path)) and stack[keep][0] == path[keep][0]:
                keep += 1
            while len(stack) > keep:
                stack.pop()[1].__exit__(None, None, None)
            stack += [(key, self._open(frame)) for key, frame in path[keep:]]
            self._task(task)
        while stack:
            stack.pop()[1].__exit__(None, None, None)
        for task in self.c.graph.tasks.values():
            for dep in sorted(task.depends_on):
                self.tasks[task.id].after(self.tasks[dep])

    def _path(self, task: Task) -> list[tuple[tuple[str, int | str], Any]]:
        path: list[tuple[tuple[str, int | str], Any]] = []
        placed: set[int] = set()

        def add_conditions(conds: Sequence[Condition]) -> None:
            for cond in conds:
                if id(cond) not in placed:
                    placed.add(id(cond))
                    path.append((("if", id(cond)), cond))

        for loop_id in self.c.graph.loop_chain(task.loop):
            add_conditions(self.c.graph.loops[loop_id].conditions)
            path.append((("for", loop_id), loop_id))
        add_conditions(task.conditions)
        return path

    def _open(self, frame: Any) -> Any:
        from kfp import dsl

        if isinstance(frame, Condition):
            left, right = self._value(frame.left, "condition"), self._value(frame.right, "condition")
            block = dsl.If(OPS[frame.op](left, right))
            block.__enter__()
            return block
        loop = self.c.graph.loops[frame]
        if isinstance(loop.items, list):
            items = self.values[self.c.loop_params[frame]]
        else:
            items = self._value(loop.items, f"parallel_for {frame!r}")
            if isinstance(loop.items, OutputRef) and loop.items.kind != "list":
                raise InvalidArgument(
                    f"parallel_for {frame!r} loops over {loop.items.task_id!r}'s output {loop.items.name!r}, "
                    f"declared {loop.items.kind}; on Kubeflow Pipelines annotate it as list (-> list)."
                )
        loop_block = dsl.ParallelFor(items)
        self.items[frame] = loop_block.__enter__()
        return loop_block

    def _value(self, value: Any, where: str) -> Any:
        """The kfp channel (or literal) for a reference in a condition or loop."""
        if isinstance(value, ParamRef):
            return self.values[value.name]
        if isinstance(value, OutputRef):
            if where == "condition" and value.kind not in _KFP_TYPE:
                raise InvalidArgument(
                    f"Condition on {value.task_id!r}'s output {value.name!r}, declared {value.kind}: on Kubeflow "
                    "Pipelines annotate it int, float, bool or str to compare it."
                )
            return self._output(value)
        if isinstance(value, LoopItem):
            item = self.items[value.loop_id]
            if value.key is None:
                return item
            if not _SUBVAR.match(value.key):
                raise InvalidArgument(
                    f"{where}: item[{value.key!r}] must be named like an identifier on KFP."
                )
            return getattr(item, value.key)
        if isinstance(value, Collected):
            from kfp import dsl

            return dsl.Collected(self._output(value.ref))
        return value

    def _output(self, ref: OutputRef) -> Any:
        return self.tasks[ref.task_id].outputs[self.c.io[ref.task_id][1][ref.name]]

    def _task(self, task: Task) -> None:
        kwargs = {
            kname: self._value(v, f"step {task.id!r}") for _, kname, _, _, v in self.c.io[task.id][0] if kname
        }
        kt = self.comps[task.id](**kwargs)
        self.c.configure(task, kt)
        self.tasks[task.id] = kt


def _unique(name: str, taken: set[str]) -> str:
    base = _sanitize(name) or "value"
    if base == "self":  # kfp's component __call__(self, **kwargs)
        base = "self_value"
    candidate, n = base, 2
    while candidate in taken:
        candidate, n = f"{base}_{n}", n + 1
    taken.add(candidate)
    return candidate


def _k8s_name(name: str) -> str:
    return re.sub(r"-+", "-", re.sub(r"[^-0-9a-z]+", "-", name.lower())).strip("-") or "pipeline"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _relative(file: str) -> str:
    """A step file as the container sees it: relative to the directory compiled from, when under it."""
    path = Path(file)
    try:
        return path.relative_to(Path.cwd()).as_posix()
    except ValueError:
        return path.name


def _memory(task: Task, memory: str | int) -> str:
    text = str(memory).strip()
    if _KFP_MEMORY.match(text):
        return text
    try:
        return str(parse_memory(text))
    except InvalidArgument:
        example = "write e.g. '512Mi', '4Gi' or '2G'"
        raise InvalidArgument(
            f"Step {task.id!r}: memory {memory!r} is not a Kubernetes quantity; {example}."
        ) from None  # e.g. "1.5Gi" → bytes: Kubeflow only takes whole numbers


# -- submitting --------------------------------------------------------------------------------------------
def submit(
    path: str | os.PathLike[str],
    host: str,
    *,
    experiment: str | None = None,
    run_name: str | None = None,
    params: Mapping[str, Any] | None = None,
) -> str:
    """Start a run of the compiled pipeline `path` on the Kubeflow Pipelines API at `host`; returns its run id.
    Per-step caching stays as compiled. `experiment` defaults to KFP's default experiment."""
    kfp = _require_kfp()
    import yaml

    spec = yaml.safe_load(Path(path).read_text())
    known = spec.get("root", {}).get("inputDefinitions", {}).get("parameters", {})
    unknown = sorted(set(params or {}) - set(known))
    if unknown:
        known_text = ", ".join(known) or "none"
        raise InvalidArgument(
            f"The compiled pipeline has no parameter {', '.join(unknown)}; its parameters: {known_text}."
        )
    checks = _HealthChecks()
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings(), checks:  # kfp prints links
            warnings.simplefilter("ignore", FutureWarning)  # "only works with KFP v2.0.0-beta.2 and later"
            client = kfp.Client(host=host)
            result = client.create_run_from_pipeline_package(
                str(path), arguments=dict(params or {}), run_name=run_name, experiment_name=experiment,
                enable_caching=None
            )  # fmt: skip
    except Exception as exc:
        status = getattr(checks.last, "status", None)
        if isinstance(exc, TimeoutError) and isinstance(status, int) and status > 0:
            reason: str | None = f"it answers HTTP {status} to the KFP health check, not as the KFP API"
        else:
            reason = _connection_failure(exc)
        if reason is not None:
            raise Unavailable(
                f"Cannot reach Kubeflow Pipelines at {host}: {reason}. Check the host URL (the KFP API "
                "endpoint, e.g. http://ml-pipeline-ui.kubeflow:80)."
            ) from None
        raise Unavailable(
            f"Submitting to Kubeflow Pipelines at {host} failed: {type(exc).__name__}: {exc}"
        ) from None
    return str(result.run_id)


class _HealthChecks(logging.Filter):
    """While in use, keeps kfp.Client's failed health checks (logged with their tracebacks on the root logger,
    which it would also give a handler for good) out of the terminal; `last` is the last one's error."""

    def __init__(self) -> None:
        super().__init__()
        self.last: BaseException | None = None
        self._handler = logging.NullHandler()  # a root handler: logging.exception() calls no basicConfig()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name == "root" and str(record.msg).startswith("Failed to get healthz"):
            self.last = record.exc_info[1] if record.exc_info else None
            return False
        return True

    def __enter__(self) -> _HealthChecks:
        logging.root.addHandler(self._handler)
        logging.root.addFilter(self)
        return self

    def __exit__(self, *exc_info: object) -> None:
        logging.root.removeFilter(self)
        logging.root.removeHandler(self._handler)


def _connection_failure(exc: BaseException) -> str | None:
    """Why a connection failed ("connection refused", "timed out", ...) when it did, found under urllib3's
    MaxRetryError (its `reason`) and the exceptions it was raised from; None for other errors."""
    import socket

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, socket.gaierror):
            return "its host name is not known"
        if isinstance(current, OSError) and not isinstance(current, TimeoutError) and current.strerror:
            return current.strerror[0].lower() + current.strerror[1:]
        if isinstance(current, TimeoutError) or type(current).__name__ == "ConnectTimeoutError":
            return "no answer (timed out)"
        reason = getattr(current, "reason", None)
        current = reason if isinstance(reason, BaseException) else (current.__cause__ or current.__context__)
    return None


# -- the step runner inside each container -------------------------------------------------------------------
class StepTimeout(Exception):
    """The step ran longer than its `timeout`."""


def _decode(text: str, enc: str) -> dict[str, Any]:
    """An input as the entry point takes it, from the text KFP put on the command line."""
    if enc == "ref":
        return {"artifact": json.loads(text)}
    if enc == "refs":
        return {"list": [{"artifact": json.loads(r) if isinstance(r, str) else r} for r in json.loads(text)]}
    if enc == "str":
        return {"value": text}
    if enc == "auto":
        try:
            return {"value": json.loads(text)}
        except ValueError:
            return {"value": text}
    value = json.loads(text)
    if enc == "int" and isinstance(value, float) and value.is_integer():
        value = int(value)
    elif enc == "float" and isinstance(value, (int, float)) and not isinstance(value, bool):
        value = float(value)
    elif enc == "bool" and isinstance(value, str):
        value = value.lower() == "true"
    return {"value": value}


def _encode(value: Any, kind: str, name: str) -> str:
    """An output as the text KFP parses for its declared parameter type."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    ok = {"str": isinstance(value, str), "bool": isinstance(value, bool), "float": number, "list": isinstance(value, list),
          "int": number and float(value).is_integer(), "dict": isinstance(value, dict)}  # fmt: skip
    if not ok[kind]:
        raise TypeError(f"output {name!r} is declared {kind}, got {type(value).__name__} {str(value)[:100]}")
    if kind == "str":
        return str(value)
    if kind in ("int", "float"):
        return str(int(value)) if kind == "int" else json.dumps(float(value))
    return json.dumps(value, separators=(",", ":"))


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=f"python -m {RUNNER_MODULE}", description="Run one step in a KFP container."
    )
    p.add_argument("--step", required=True, help="module:qualname of the step")
    p.add_argument("--file", help="the step's source file, when its module is not importable by name")
    p.add_argument("--instance", required=True, help="the task id in the pipeline")
    p.add_argument("--in-loop", action="store_true", help="the task runs once per loop item")
    for flag in ("--pipeline", "--experiment", "--tracking-uri", "--kfp-run", "--kfp-task"):
        p.add_argument(flag)
    p.add_argument("--timeout", type=float, help="seconds")
    p.add_argument("--input", nargs=3, action="append", default=[], metavar=("NAME", "ENCODING", "TEXT"))
    p.add_argument("--item", nargs=3, action="append", default=[], metavar=("NAME", "ENCODING", "TEXT"))
    p.add_argument("--output", nargs=3, action="append", default=[], metavar=("NAME", "KIND", "PATH"))
    return p


def step_main(argv: Sequence[str] | None = None) -> int:
    """Run one step as a KFP container does; 0 when it succeeded and its outputs were written."""
    from modelyard.pipelines.entrypoint import load_input, run_task
    from modelyard.schemas import RunStatus
    from modelyard.tracking.client import Client

    args = _parser().parse_args(argv)
    module, _, qualname = args.step.partition(":")
    inputs: dict[str, dict[str, Any]] = {name: _decode(text, enc) for name, enc, text in args.input}
    for name, enc, text in args.item:
        inputs.setdefault(name, {"list": []})["list"].append(_decode(text, enc))
    kinds = {name: kind for name, kind, _ in args.output}
    instance = args.instance
    if args.in_loop and args.kfp_task:
        instance = f"{instance}[{args.kfp_task[:8]}]"
    client = Client(args.tracking_uri)
    experiment_id = client.get_or_create_experiment(args.experiment or args.pipeline or "Default")
    tags = {records.TAG_STEP: args.instance, records.TAG_INSTANCE: instance, records.TAG_STATE: "RUNNING"}
    kfp_tags = {TAG_KFP_RUN: args.kfp_run, TAG_KFP_TASK: args.kfp_task, TAG_KFP_PIPELINE: args.pipeline}
    tags.update({key: value for key, value in kfp_tags.items() if value})
    params = {
        name: spec["value"] if isinstance(spec["value"], str) else json.dumps(spec["value"])
        for name, spec in inputs.items()
        if "value" in spec and len(json.dumps(spec["value"])) <= 500
    }
    run = client.create_run(experiment_id, run_name=instance, tags=tags, params=params)
    code = {"module": module, "qualname": qualname, "file": args.file}
    task = {"step": code, "instance": instance, "tracking_uri": client.tracking_uri, "run_id": run.run_id}
    task.update(inputs=inputs, outputs=kinds)
    with _deadline(args.timeout):
        outcome = run_task(task)
    error = None if outcome["ok"] else str(outcome.get("error"))
    if error is None:
        try:
            manifest = _write_outputs(outcome["outputs"], args.output, run.run_id, client, load_input)
        except Exception as exc:  # an output KFP cannot take (a float for an int, a None)
            error = f"{type(exc).__name__}: {exc}"
    if error is not None:
        print(f"step {instance!r} failed: {error}", file=sys.stderr)
        client.set_tags(run.run_id, {records.TAG_STATE: "FAILED", records.TAG_ERROR: error[:7000]})
        if not client.get_run(run.run_id).info.status.is_terminal:
            client.set_terminated(run.run_id, RunStatus.FAILED)
        return 1
    client.set_tags(run.run_id, {records.TAG_STATE: "SUCCEEDED", records.TAG_OUTPUTS: json.dumps(manifest)})
    if not client.get_run(run.run_id).info.status.is_terminal:
        client.set_terminated(run.run_id, RunStatus.FINISHED)
    client.flush()
    return 0


def _write_outputs(
    manifest: dict[str, Any], outputs: list[list[str]], run_id: str, client: Any, load: Any
) -> Any:
    """Write each output where KFP reads it: a typed value, or a JSON reference to the stored artifact."""
    base = client.get_run(run_id).info.artifact_uri.rstrip("/")
    refs: dict[str, Any] = {}
    for name, kind, target in outputs:
        entry = {**manifest[name], "run_id": run_id, "uri": f"{base}/{manifest[name]['path']}"}
        refs[name] = entry
        if kind in _KFP_TYPE:
            if "value" in entry:
                value = entry["value"]
            else:
                with tempfile.TemporaryDirectory() as tmp:
                    value = load({"artifact": entry}, client, Path(tmp))
            text = _encode(value, kind, name)
        else:
            text = json.dumps(entry, separators=(",", ":"), sort_keys=True)
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_text(text)
    return refs


@contextlib.contextmanager
def _deadline(seconds: float | None) -> Any:
    """Raise StepTimeout in the step after `seconds`; exit hard a minute later if that did not stop it."""
    if not seconds or threading.current_thread() is not threading.main_thread():
        yield
        return

    def expire(signum: int, frame: Any) -> None:
        raise StepTimeout(f"the step ran longer than its timeout of {_number(seconds)}s")

    previous = signal.signal(signal.SIGALRM, expire)
    watchdog = threading.Timer(seconds + 60, lambda: os._exit(124))
    watchdog.daemon = True
    signal.setitimer(signal.ITIMER_REAL, seconds)
    watchdog.start()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        watchdog.cancel()


if __name__ == "__main__":
    sys.exit(step_main())
