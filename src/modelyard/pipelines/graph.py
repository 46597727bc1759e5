"""The pipeline graph built by calling steps inside a `@pipeline` function: tasks, the values they pass
(references to parameters, outputs, loop items), loops and conditions. Executors and compilers read it;
nothing here runs anything."""

from __future__ import annotations

import graphlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from modelyard.errors import InvalidArgument

if TYPE_CHECKING:
    from modelyard.pipelines.dsl import Step


class _Comparable:
    """Comparing a reference builds a `Condition` for `my.condition(...)` instead of a bool."""

    def _cond(self, op: str, other: Any) -> Condition:
        return Condition(self, op, other)  # type: ignore[arg-type]

    def __eq__(self, other: Any) -> Condition:  # type: ignore[override]
        return self._cond("==", other)

    def __ne__(self, other: Any) -> Condition:  # type: ignore[override]
        return self._cond("!=", other)

    def __lt__(self, other: Any) -> Condition:
        return self._cond("<", other)

    def __le__(self, other: Any) -> Condition:
        return self._cond("<=", other)

    def __gt__(self, other: Any) -> Condition:
        return self._cond(">", other)

    def __ge__(self, other: Any) -> Condition:
        return self._cond(">=", other)

    __hash__ = object.__hash__

    def __bool__(self) -> bool:
        raise InvalidArgument(
            "A pipeline value is only known when the pipeline runs, so Python's `if`/`for` cannot use it. "
            "Use `with my.condition(value >= x):` or `with my.parallel_for(values) as item:` instead."
        )

    def __iter__(self) -> Iterator[Any]:
        raise InvalidArgument(
            "A pipeline value cannot be iterated while the pipeline is built; "
            "fan out with `with my.parallel_for(values) as item:`."
        )


class ParamRef(_Comparable):
    """A pipeline parameter."""

    def __init__(self, name: str, kind: str) -> None:
        self.name, self.kind = name, kind

    def __repr__(self) -> str:
        return f"ParamRef({self.name!r})"


class OutputRef(_Comparable):
    """Output `name` of task `task_id`; `loop` is the loop the producing task runs in (None: not in one)."""

    def __init__(self, task_id: str, name: str, kind: str, loop: str | None) -> None:
        self.task_id, self.name, self.kind, self.loop = task_id, name, kind, loop

    def __repr__(self) -> str:
        return f"OutputRef({self.task_id!r}, {self.name!r})"


class LoopItem(_Comparable):
    """The current item of loop `loop_id` (or its field `key`, for a list of dicts)."""

    kind = "any"

    def __init__(self, loop_id: str, key: str | None = None) -> None:
        self.loop_id, self.key = loop_id, key

    def __getitem__(self, key: str) -> LoopItem:
        if self.key is not None:
            raise InvalidArgument(
                "Only one level of item fields is supported: item['a'], not item['a']['b']."
            )
        return LoopItem(self.loop_id, key)

    def __repr__(self) -> str:
        return f"LoopItem({self.loop_id!r}{'' if self.key is None else f', {self.key!r}'})"


class Collected:
    """Fan-in: the list of `ref`'s values over every iteration of loop `loop`, in item order."""

    def __init__(self, ref: OutputRef, loop: str) -> None:
        self.ref, self.loop = ref, loop
        self.kind = "list"

    def __repr__(self) -> str:
        return f"Collected({self.ref!r})"


Ref = ParamRef | OutputRef | LoopItem | Collected


@dataclass(frozen=True, eq=False)  # references compare into conditions, so conditions don't compare
class Condition:
    left: ParamRef | OutputRef | LoopItem
    op: str
    right: Any  # a literal or another reference

    def __bool__(self) -> bool:
        raise InvalidArgument(
            f"`{self.describe()}` is only known when the pipeline runs, so Python's `if` cannot test it. "
            f"Use `with my.condition({self.describe()}):` instead."
        )

    def describe(self) -> str:
        return f"{describe_ref(self.left)} {self.op} {describe_ref(self.right)}"


OPS = {
    "==": lambda a, b: a == b,
    "!=": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


def describe_ref(value: Any) -> str:
    if isinstance(value, ParamRef):
        return f"params.{value.name}"
    if isinstance(value, OutputRef):
        return f"{value.task_id}.{value.name}"
    if isinstance(value, LoopItem):
        return f"item({value.loop_id})" + ("" if value.key is None else f"[{value.key!r}]")
    if isinstance(value, Collected):
        return f"collect({describe_ref(value.ref)})"
    return json.dumps(value, default=str)


@dataclass
class Loop:
    id: str
    items: Any  # a literal list, ParamRef or OutputRef
    parent: str | None
    conditions: tuple[Condition, ...]


@dataclass
class Task:
    """One call of a step in the pipeline."""

    id: str
    step: Step
    args: dict[str, Any]  # input name → literal or reference
    loop: str | None = None  # innermost enclosing loop
    conditions: tuple[Condition, ...] = ()
    depends_on: set[str] = field(default_factory=set)  # explicit `.after(...)` edges

    @property
    def outputs(self) -> Outputs:
        return Outputs(self)

    @property
    def output(self) -> OutputRef:
        names = list(self.step.outputs)
        if len(names) != 1:
            raise InvalidArgument(
                f"Step {self.id!r} has {len(names)} outputs ({', '.join(names) or 'none'}); "
                f"pick one with {self.id}.outputs.<name>."
            )
        return self.outputs[names[0]]

    def after(self, *tasks: Task) -> Task:
        """Run this task only after `tasks`, even though it takes none of their outputs."""
        self.depends_on.update(t.id for t in tasks)
        return self

    def __repr__(self) -> str:
        return f"Task({self.id!r})"


class Outputs:
    """`task.outputs.name` / `task.outputs["name"]`."""

    def __init__(self, task: Task) -> None:
        self._task = task

    def __getitem__(self, name: str) -> OutputRef:
        outputs = self._task.step.outputs
        if name not in outputs:
            raise InvalidArgument(
                f"Step {self._task.id!r} has no output {name!r}; it has: {', '.join(outputs) or 'none'}."
            )
        return OutputRef(self._task.id, name, outputs[name], self._task.loop)

    def __getattr__(self, name: str) -> OutputRef:
        if name.startswith("_"):
            raise AttributeError(name)
        return self[name]


@dataclass
class ParamSpec:
    name: str
    kind: str
    default: Any
    required: bool


@dataclass
class Graph:
    name: str
    params: dict[str, ParamSpec]
    tasks: dict[str, Task]
    loops: dict[str, Loop]

    def loop_chain(self, loop_id: str | None) -> list[str]:
        """The loops around `loop_id`, outermost first, ending with it."""
        chain: list[str] = []
        while loop_id is not None:
            chain.insert(0, loop_id)
            loop_id = self.loops[loop_id].parent
        return chain

    def dependencies(self, task: Task) -> set[str]:
        """Tasks that must finish before `task` can start."""
        refs: list[Any] = list(task.args.values())
        for cond in task.conditions:
            refs += [cond.left, cond.right]
        for loop_id in self.loop_chain(task.loop):
            loop = self.loops[loop_id]
            refs.append(loop.items)
            for cond in loop.conditions:
                refs += [cond.left, cond.right]
        deps = set(task.depends_on)
        for ref in refs:
            for inner in ref if isinstance(ref, list) else [ref]:
                if isinstance(inner, OutputRef):
                    deps.add(inner.task_id)
                elif isinstance(inner, Collected):
                    deps.add(inner.ref.task_id)
        return deps

    def order(self) -> list[str]:
        """Task ids in a dependency order; a cycle is an error that names its steps."""
        sorter = graphlib.TopologicalSorter({tid: self.dependencies(t) for tid, t in self.tasks.items()})
        try:
            sorter.prepare()
        except graphlib.CycleError as exc:
            cycle = " → ".join(exc.args[1])
            raise InvalidArgument(f"Pipeline {self.name!r} has a cycle: {cycle}.") from None
        rank = {tid: n for n, tid in enumerate(self.tasks)}
        order: list[str] = []
        while sorter.is_active():  # level by level, each level in the order the steps were called
            ready = sorted(sorter.get_ready(), key=lambda tid: rank.get(tid, len(rank)))
            order += ready
            sorter.done(*ready)
        return order

    def validate(self) -> None:
        unknown = {d for t in self.tasks.values() for d in self.dependencies(t)} - set(self.tasks)
        if unknown:
            raise InvalidArgument(
                f"Pipeline {self.name!r} depends on unknown steps: {', '.join(sorted(unknown))}."
            )
        self.order()

    def to_dict(self) -> dict[str, Any]:
        """The DAG as JSON (stored with each pipeline run; the REST API and dashboard draw it)."""
        return {
            "name": self.name,
            "params": {
                p.name: {"kind": p.kind, "default": p.default, "required": p.required}
                for p in self.params.values()
            },
            "loops": {
                lid: {
                    "items": describe_ref(loop.items),
                    "parent": loop.parent,
                    "conditions": [c.describe() for c in loop.conditions],
                }
                for lid, loop in self.loops.items()
            },
            "steps": [
                {
                    "id": tid,
                    "step": task.step.name,
                    "loop": task.loop,
                    "depends_on": sorted(self.dependencies(task)),
                    "inputs": {name: describe_ref(value) for name, value in task.args.items()},
                    "outputs": dict(task.step.outputs),
                    "conditions": [c.describe() for c in task.conditions],
                }
                for tid in self.order()
                for task in [self.tasks[tid]]
            ],
        }
