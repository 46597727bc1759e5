"""The pipeline DSL.

    import modelyard as my

    @my.step(retries=2, timeout="10m")
    def train(data: my.pipelines.Dataset, lr: float) -> my.pipelines.Model: ...

    @my.pipeline
    def training(lr: float = 0.1, configs: list = [{"depth": 3}, {"depth": 5}]):
        data = load()
        with my.parallel_for(configs) as config:
            model = train(data.output, config)
        best = pick_best(my.collect(model.output))
        with my.condition(best.outputs.score >= 0.9):
            register(best.outputs.model)

Calling a step inside a `@pipeline` function adds a task to the graph and returns it; outside one, it is the
plain function. Every wiring mistake (unknown or missing argument, type mismatch, a value used outside its
loop) raises `InvalidArgument` naming the step and the argument while the graph is built, before anything runs.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import re
import threading
import typing
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelyard.errors import InvalidArgument
from modelyard.pipelines import types
from modelyard.pipelines.graph import (
    Collected,
    Condition,
    Graph,
    Loop,
    LoopItem,
    OutputRef,
    ParamRef,
    ParamSpec,
    Task,
)

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,99}$")
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_MEMORY = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(Ki|Mi|Gi|Ti|K|M|G|T)?\s*$")


def parse_duration(value: float | str | None, what: str) -> float | None:
    """Seconds from a number or "500ms", "30s", "10m", "2h", "7d"."""
    if value is None or (isinstance(value, (int, float)) and not isinstance(value, bool)):
        if value is not None and value <= 0:
            raise InvalidArgument(f"{what} must be positive, got {value}.")
        return None if value is None else float(value)
    match = _DURATION.match(str(value))
    if not match:
        raise InvalidArgument(
            f"{what} {value!r} is not a duration; write e.g. 30, '30s', '10m', '2h' or '7d'."
        )
    number, unit = float(match.group(1)), match.group(2) or "s"
    return number * {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}[unit]


def parse_memory(value: str | int | None) -> int | None:
    """Bytes from a Kubernetes-style quantity ("512Mi", "4Gi", "2G") or a number of bytes."""
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    match = _MEMORY.match(str(value))
    if not match:
        raise InvalidArgument(f"memory {value!r} is not a quantity; write e.g. '512Mi', '4Gi' or '2G'.")
    scale = {None: 1, "K": 10**3, "M": 10**6, "G": 10**9, "T": 10**12}
    scale.update({"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40})
    return int(float(match.group(1)) * scale[match.group(2)])


@dataclass(frozen=True)
class StepOptions:
    """How a step runs. Durations in seconds; `memory` a quantity such as "4Gi"."""

    retries: int = 0
    retry_delay_s: float = 1.0  # before the first retry; multiplied by retry_backoff after each one
    retry_backoff: float = 2.0
    max_retry_delay_s: float = 300.0
    timeout_s: float | None = None
    cache: bool = True
    max_staleness_s: float | None = None  # a cached result older than this is not reused
    cpu: float | None = None
    memory: str | None = None
    gpu: int = 0
    image: str | None = None  # container image for cluster targets (Kubeflow Pipelines)
    env: Mapping[str, str] = field(default_factory=dict)

    def retry_delay(self, attempt: int) -> float:
        """Seconds to wait before attempt number `attempt` (2 = the first retry)."""
        return float(
            min(self.retry_delay_s * self.retry_backoff ** max(0, attempt - 2), self.max_retry_delay_s)
        )


def make_options(
    retries: int = 0,
    retry_delay: float | str = 1.0,
    retry_backoff: float = 2.0,
    max_retry_delay: float | str = 300.0,
    timeout: float | str | None = None,
    cache: bool = True,
    max_staleness: float | str | None = None,
    cpu: float | None = None,
    memory: str | None = None,
    gpu: int = 0,
    image: str | None = None,
    env: Mapping[str, Any] | None = None,
) -> StepOptions:
    if not isinstance(retries, int) or retries < 0:
        raise InvalidArgument(f"retries must be a whole number ≥ 0, got {retries!r}.")
    if retry_backoff < 1:
        raise InvalidArgument(f"retry_backoff must be ≥ 1 (the delay's growth factor), got {retry_backoff}.")
    if cpu is not None and cpu <= 0:
        raise InvalidArgument(f"cpu must be positive, got {cpu}.")
    if not isinstance(gpu, int) or gpu < 0:
        raise InvalidArgument(f"gpu must be a whole number ≥ 0, got {gpu!r}.")
    parse_memory(memory)
    return StepOptions(
        retries=retries,
        retry_delay_s=parse_duration(retry_delay, "retry_delay") or 0.0,
        retry_backoff=float(retry_backoff),
        max_retry_delay_s=parse_duration(max_retry_delay, "max_retry_delay") or 0.0,
        timeout_s=parse_duration(timeout, "timeout"),
        cache=bool(cache),
        max_staleness_s=parse_duration(max_staleness, "max_staleness"),
        cpu=cpu,
        memory=memory,
        gpu=gpu,
        image=image,
        env={str(k): str(v) for k, v in (env or {}).items()},
    )


@dataclass(frozen=True)
class Input:
    name: str
    kind: str
    element_kind: str  # for list inputs: the kind of each element (fan-in)
    required: bool


@dataclass(frozen=True)
class CodeRef:
    """Where a function lives, so a fresh process can import it: a module, or a file loaded as `module`."""

    module: str
    qualname: str
    file: str | None  # set when the module is not importable by name (a script, a FILE:FUNC path)

    @classmethod
    def of(cls, func: Callable[..., Any]) -> CodeRef:
        module = func.__module__ or "__main__"
        try:
            file = inspect.getsourcefile(func)
        except TypeError:  # built in C: importable by name only
            file = None
        importable = module != "__main__" and not module.startswith("_modelyard_file_")
        if module == "__main__" and file:
            module = "_modelyard_file_" + re.sub(r"\W", "_", Path(file).stem)
        return cls(module, func.__qualname__, None if importable or not file else str(Path(file).resolve()))

    def describe(self) -> str:
        return f"{self.file or self.module}:{self.qualname}"


class Step:
    """A function that runs as one isolated, cached unit of a pipeline."""

    def __init__(self, func: Callable[..., Any], name: str | None, options: StepOptions) -> None:
        self.func = func
        self.name = name or func.__name__
        if not _NAME.match(self.name):
            raise InvalidArgument(f"Step name {self.name!r} must be letters, digits, '_', '.' or '-'.")
        self.options = options
        self.code = CodeRef.of(func)
        self.signature = inspect.signature(func)
        hints = _type_hints(func)
        self.inputs: dict[str, Input] = {}
        for p in self.signature.parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise InvalidArgument(
                    f"Step {self.name!r}: *args and **kwargs are not supported; name each input."
                )
            annotation = hints.get(p.name, p.annotation)
            self.inputs[p.name] = Input(
                p.name, types.kind_of(annotation), types.element_kind(annotation), p.default is p.empty
            )
        self.outputs = _outputs(hints.get("return", self.signature.return_annotation))
        self.__doc__ = func.__doc__
        self.__wrapped__ = func

    def __repr__(self) -> str:
        return f"<step {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        builder = _current()
        if builder is None:
            return self.func(*args, **kwargs)
        return builder.add_task(self, args, kwargs)

    def with_options(self, **overrides: Any) -> Step:
        """A copy of this step with some options changed, e.g. `train.with_options(gpu=1)(data)`."""
        current = {
            "retries": self.options.retries,
            "retry_delay": self.options.retry_delay_s,
            "retry_backoff": self.options.retry_backoff,
            "max_retry_delay": self.options.max_retry_delay_s,
            "timeout": self.options.timeout_s,
            "cache": self.options.cache,
            "max_staleness": self.options.max_staleness_s,
            "cpu": self.options.cpu,
            "memory": self.options.memory,
            "gpu": self.options.gpu,
            "image": self.options.image,
            "env": self.options.env,
        }
        unknown = set(overrides) - set(current)
        if unknown:
            raise InvalidArgument(f"Unknown step options: {', '.join(sorted(unknown))}.")
        copy = Step.__new__(Step)
        copy.__dict__.update(self.__dict__)
        copy.options = make_options(**{**current, **overrides})
        return copy


def _type_hints(func: Callable[..., Any]) -> dict[str, Any]:
    try:
        return typing.get_type_hints(func, include_extras=True)
    except Exception:  # unresolvable forward references: fall back to the raw annotations
        return dict(getattr(func, "__annotations__", {}))


def _outputs(annotation: Any) -> dict[str, str]:
    """Output name → kind: a NamedTuple return type names several outputs; anything else is "output"."""
    if annotation is None or annotation is type(None):
        return {}
    if isinstance(annotation, type) and issubclass(annotation, tuple) and hasattr(annotation, "_fields"):
        hints = _type_hints(annotation)
        return {name: types.kind_of(hints.get(name, Any)) for name in annotation._fields}
    return {"output": types.kind_of(annotation)}


def step(func: Callable[..., Any] | None = None, *, name: str | None = None, **options: Any) -> Any:
    """Make a function a pipeline step. Options: retries, retry_delay, retry_backoff, max_retry_delay,
    timeout, cache, max_staleness, cpu, memory, gpu, image, env (see `StepOptions`)."""

    def wrap(f: Callable[..., Any]) -> Step:
        try:
            return Step(f, name, make_options(**options))
        except TypeError as exc:
            raise InvalidArgument(f"@step on {f.__name__!r}: {exc}") from None

    return wrap(func) if func is not None else wrap


class Pipeline:
    """A function whose step calls define a graph; its parameters are the pipeline's parameters."""

    def __init__(self, func: Callable[..., Any], name: str | None = None) -> None:
        self.func = func
        self.name = name or func.__name__
        if not _NAME.match(self.name):
            raise InvalidArgument(f"Pipeline name {self.name!r} must be letters, digits, '_', '.' or '-'.")
        self.code = CodeRef.of(func)
        hints = _type_hints(func)
        self.params: dict[str, ParamSpec] = {}
        for p in inspect.signature(func).parameters.values():
            if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
                raise InvalidArgument(f"Pipeline {self.name!r}: *args/**kwargs are not supported.")
            default = None if p.default is p.empty else p.default
            if p.default is not p.empty:
                _check_json(default, f"Pipeline {self.name!r}: parameter {p.name!r}'s default")
            kind = types.kind_of(hints.get(p.name, p.annotation))
            if kind == "any" and p.default is not p.empty and default is not None:
                kind = types.value_kind(default)
            self.params[p.name] = ParamSpec(p.name, kind, default, p.default is p.empty)
        self.__doc__ = func.__doc__

    def __repr__(self) -> str:
        return f"<pipeline {self.name}>"

    def build(self) -> Graph:
        """Trace the function into a graph (parameters stay references, resolved when it runs)."""
        builder = _Builder(self.name, self.params)
        with builder.active():
            self.func(**{name: ParamRef(name, spec.kind) for name, spec in self.params.items()})
        graph = builder.graph()
        graph.validate()
        return graph

    def resolve_params(self, given: Mapping[str, Any] | None) -> dict[str, Any]:
        """Defaults plus `given`; an unknown or missing parameter is an error naming it."""
        given = dict(given or {})
        unknown = set(given) - set(self.params)
        if unknown:
            known = ", ".join(self.params) or "none"
            raise InvalidArgument(
                f"Pipeline {self.name!r} has no parameter {', '.join(sorted(unknown))}; its parameters: {known}."
            )
        values: dict[str, Any] = {}
        for name, spec in self.params.items():
            if name in given:
                value = given[name]
                _check_json(value, f"Pipeline parameter {name!r}")
                if spec.kind != "any" and not types.compatible(types.value_kind(value), spec.kind):
                    raise InvalidArgument(
                        f"Pipeline parameter {name!r} must be {spec.kind}, got {type(value).__name__} {value!r}."
                    )
                values[name] = float(value) if spec.kind == "float" and isinstance(value, int) else value
            elif spec.required:
                raise InvalidArgument(
                    f"Pipeline {self.name!r} needs parameter {name!r} (--param {name}=...)."
                )
            else:
                values[name] = spec.default
        return values

    def __call__(self, **params: Any) -> Any:
        """Run the pipeline locally with these parameters; returns the `PipelineRun`."""
        from modelyard.pipelines.runner import run_pipeline

        return run_pipeline(self, params)


def pipeline(func: Callable[..., Any] | None = None, *, name: str | None = None) -> Any:
    """Make a function a pipeline: calling steps inside it builds the graph."""

    def wrap(f: Callable[..., Any]) -> Pipeline:
        return Pipeline(f, name)

    return wrap(func) if func is not None else wrap


def _check_json(value: Any, what: str) -> None:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        raise InvalidArgument(
            f"{what} must be a JSON value (number, string, bool, list, dict), got {type(value).__name__}."
        ) from None


# -- building ----------------------------------------------------------------------------------------------
_local = threading.local()


def _current() -> _Builder | None:
    return getattr(_local, "builder", None)


def _need_builder(what: str) -> _Builder:
    builder = _current()
    if builder is None:
        raise InvalidArgument(f"{what} only works inside a @pipeline function.")
    return builder


@contextlib.contextmanager
def parallel_for(items: Any, name: str | None = None) -> Iterator[LoopItem]:
    """Fan out: the steps called in the block run once per item of `items` (a list, a list parameter, or a
    step output that is a list). Use `collect(task.output)` after the block to gather their outputs."""
    builder = _need_builder("parallel_for")
    if isinstance(items, Task):
        items = items.output
    if isinstance(items, (tuple, list)):
        items = list(items)
        for item in items:
            _check_json(item, "A parallel_for item")
    elif isinstance(items, (ParamRef, OutputRef)):
        if items.kind not in ("list", "any"):
            raise InvalidArgument(f"parallel_for needs a list; {items!r} is {items.kind}.")
        builder.check_visible(items, "parallel_for", "items")
    else:
        raise InvalidArgument(
            f"parallel_for needs a list, a list parameter or a step output, got {type(items).__name__}."
        )
    loop_id = builder.unique(name or "loop", builder.loops)
    parent = builder.loop_stack[-1] if builder.loop_stack else None
    builder.loops[loop_id] = Loop(loop_id, items, parent, tuple(builder.condition_stack))
    builder.loop_stack.append(loop_id)
    try:
        yield LoopItem(loop_id)
    finally:
        builder.loop_stack.pop()


def collect(value: Any) -> Collected:
    """Fan in: the list of a looped step's output over every item of its loop (in item order)."""
    builder = _need_builder("collect")
    ref = value.output if isinstance(value, Task) else value
    if not isinstance(ref, OutputRef) or ref.loop is None:
        raise InvalidArgument("collect() takes the output of a step called inside parallel_for.")
    if ref.loop in builder.loop_stack:
        raise InvalidArgument(f"collect({ref.task_id}) must be called after its parallel_for block ends.")
    return Collected(ref, ref.loop)


@contextlib.contextmanager
def condition(cond: Condition) -> Iterator[None]:
    """Run the steps called in the block only when `cond` holds, e.g. `condition(eval.outputs.acc >= 0.9)`."""
    builder = _need_builder("condition")
    if not isinstance(cond, Condition):
        raise InvalidArgument(
            "condition() takes a comparison of a parameter or step output, e.g. `task.outputs.acc >= 0.9`."
        )
    for side in (cond.left, cond.right):
        if isinstance(side, (ParamRef, OutputRef, LoopItem)):
            builder.check_visible(side, "condition", "")
            if side.kind not in (*types.VALUE_KINDS, "any"):
                raise InvalidArgument(
                    f"condition() compares values; {side!r} is a {side.kind}. Compare a number or string output."
                )
        else:
            _check_json(side, "A condition's literal")
    builder.condition_stack.append(cond)
    try:
        yield
    finally:
        builder.condition_stack.pop()


class _Builder:
    def __init__(self, name: str, params: dict[str, ParamSpec]) -> None:
        self.name = name
        self.params = params
        self.tasks: dict[str, Task] = {}
        self.loops: dict[str, Loop] = {}
        self.loop_stack: list[str] = []
        self.condition_stack: list[Condition] = []

    @contextlib.contextmanager
    def active(self) -> Iterator[None]:
        if _current() is not None:
            raise InvalidArgument("A pipeline cannot be called while another one is being built.")
        _local.builder = self
        try:
            yield
        finally:
            _local.builder = None

    def graph(self) -> Graph:
        return Graph(self.name, self.params, self.tasks, self.loops)

    @staticmethod
    def unique(base: str, taken: Mapping[str, Any]) -> str:
        if base not in taken:
            return base
        n = 2
        while f"{base}-{n}" in taken:
            n += 1
        return f"{base}-{n}"

    def check_visible(self, ref: Any, step: str, arg: str) -> None:
        """A value made inside a loop is only visible inside that loop (outside it, collect() it)."""
        where = f"{step}({arg})" if arg else step
        if isinstance(ref, OutputRef):
            if ref.task_id not in self.tasks:
                raise InvalidArgument(f"{where} uses {ref!r}, which belongs to another pipeline.")
            if ref.loop is not None and ref.loop not in self.loop_stack:
                raise InvalidArgument(
                    f"{where} uses {ref.task_id}'s output outside its parallel_for; "
                    f"gather it with my.collect({ref.task_id}.output)."
                )
        elif isinstance(ref, LoopItem):
            if ref.loop_id not in self.loop_stack:
                raise InvalidArgument(f"{where} uses the item of loop {ref.loop_id!r} outside that loop.")
        elif isinstance(ref, ParamRef) and ref.name not in self.params:
            raise InvalidArgument(f"{where} uses parameter {ref.name!r} of another pipeline.")

    def add_task(self, step: Step, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Task:
        try:
            bound = step.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidArgument(f"Step {step.name!r}: {exc}. It takes: {', '.join(step.inputs)}.") from None
        values: dict[str, Any] = {}
        for name, value in bound.arguments.items():
            values[name] = self._argument(step, step.inputs[name], value)
        task_id = self.unique(step.name, self.tasks)
        task = Task(
            task_id,
            step,
            values,
            loop=self.loop_stack[-1] if self.loop_stack else None,
            conditions=tuple(self.condition_stack),
        )
        self.tasks[task_id] = task
        return task

    def _argument(self, step: Step, spec: Input, value: Any) -> Any:
        where = f"Step {step.name!r}, argument {spec.name!r}"
        if isinstance(value, Task):
            value = value.output
        if isinstance(value, (list, tuple)) and any(
            isinstance(v, (Task, OutputRef, ParamRef)) for v in value
        ):
            items = [v.output if isinstance(v, Task) else v for v in value]
            for item in items:
                self._check_ref(step, spec, item, spec.element_kind, where)
            return items
        if isinstance(value, (ParamRef, OutputRef, LoopItem, Collected)):
            self._check_ref(step, spec, value, spec.kind, where)
            return value
        _check_json(value, where)
        if not types.compatible(types.value_kind(value), spec.kind):
            raise InvalidArgument(f"{where} is declared {spec.kind}, got {type(value).__name__} {value!r}.")
        return value

    def _check_ref(self, step: Step, spec: Input, ref: Any, expected: str, where: str) -> None:
        if isinstance(ref, Collected):
            if ref.loop in self.loop_stack:
                raise InvalidArgument(f"{where}: collect() must be used after its parallel_for block.")
            if spec.kind not in ("list", "any"):
                raise InvalidArgument(f"{where} is declared {spec.kind}; a collected output is a list.")
            produced, expected = ref.ref.kind, spec.element_kind
        else:
            if not isinstance(ref, (ParamRef, OutputRef, LoopItem)):
                _check_json(ref, where)
                return
            self.check_visible(ref, step.name, spec.name)
            produced = ref.kind
        if not types.compatible(produced, expected):
            raise InvalidArgument(
                f"{where} is declared {expected} but receives {ref!r}, which is {produced}."
            )
