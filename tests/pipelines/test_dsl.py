"""Building pipeline graphs: wiring mistakes fail before anything runs, naming the step and argument."""

from __future__ import annotations

import re
from pathlib import Path
from typing import NamedTuple

import pytest

import modelyard as my
from modelyard.errors import InvalidArgument
from modelyard.pipelines import Dataset, Metrics, Model
from modelyard.pipelines.dsl import parse_duration, parse_memory
from modelyard.pipelines.fingerprint import fingerprint
from modelyard.pipelines.graph import Graph, ParamRef, Task
from modelyard.pipelines.loading import load_pipeline, parse_params

from .helpers import HEADER, pipeline_file


@my.step
def make(n: int) -> Dataset:
    return list(range(n))  # type: ignore[return-value]


@my.step
def fit(data: Dataset, lr: float = 0.1) -> Model:
    raise NotImplementedError


@my.step
def score(model: Model) -> float:
    return 0.5


class Parts(NamedTuple):
    train: Dataset
    test: Dataset


@my.step
def split(data: Dataset) -> Parts:
    return Parts(data, data)


@my.step
def best(scores: list[float]) -> Metrics:
    return {"best": max(scores)}


def test_graph_records_tasks_loops_conditions_and_dependencies() -> None:
    @my.pipeline
    def training(n: int = 10, lrs: list = [0.1, 0.2]):  # noqa: B006 - a pipeline default
        parts = split(make(n))
        with my.parallel_for(lrs) as lr:
            model = fit(parts.outputs.train, lr)
            s = score(model)
        top = best(my.collect(s))
        with my.condition(score(fit(parts.outputs.test)).output >= 0.4):
            best([0.1])
        return top

    graph = training.build()
    assert set(graph.tasks) == {"make", "split", "fit", "score", "best", "fit-2", "score-2", "best-2"}
    assert graph.tasks["fit"].loop == "loop" and graph.loops["loop"].items.name == "lrs"  # type: ignore[union-attr]
    assert graph.dependencies(graph.tasks["best"]) == {"score"}
    assert graph.dependencies(graph.tasks["best-2"]) == {"score-2"}  # via its condition
    order = graph.order()
    assert order.index("make") < order.index("split") < order.index("fit") < order.index("score")
    as_json = graph.to_dict()
    assert [s["id"] for s in as_json["steps"]] == order
    assert as_json["params"]["lrs"] == {"kind": "list", "default": [0.1, 0.2], "required": False}


def test_outside_a_pipeline_a_step_is_the_plain_function() -> None:
    assert make(3) == [0, 1, 2]
    assert split([1]).train == [1]


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("fit(make(3), lr='fast')", "Step 'fit', argument 'lr' is declared float, got str 'fast'"),
        ("fit(make(3), rate=0.1)", "Step 'fit': got an unexpected keyword argument 'rate'"),
        ("fit()", "Step 'fit': missing a required argument: 'data'"),
        ("score(make(3))", "Step 'score', argument 'model' is declared model but receives"),
        ("fit(split(make(3)))", "Step 'split' has 2 outputs (train, test)"),
        ("split(make(3)).outputs.valid", "Step 'split' has no output 'valid'; it has: train, test"),
        (
            "fit(n)",
            "Step 'fit', argument 'data' is declared dataset but receives ParamRef('n'), which is int",
        ),
        ("[fit(make(3)) for _ in n]", "cannot be iterated"),
        ("make(3) if n else None", "Python's `if`/`for` cannot use it"),
        (
            "make(3) if score(fit(make(3))).output > 0.5 else None",
            "Use `with my.condition(score.output > 0.5):`",
        ),
        ("fit(make(3), lr=object())", "must be a JSON value"),
    ],
)
def test_wiring_mistakes_fail_at_build_time(body: str, message: str) -> None:
    scope = {"fit": fit, "make": make, "score": score, "split": split, "my": my}
    exec(f"def bad(n: int = 3):\n    {body}\n", scope)
    pipe = my.pipeline(scope["bad"])
    with pytest.raises(InvalidArgument) as info:
        pipe.build()
    assert message in info.value.message


def test_loop_values_must_be_collected_to_leave_their_loop() -> None:
    @my.pipeline
    def leaky(lrs: list = [0.1]):  # noqa: B006
        with my.parallel_for(lrs) as lr:
            model = fit(make(3), lr)
        score(model)

    with pytest.raises(
        InvalidArgument, match=r"outside its parallel_for; gather it with my.collect\(fit.output\)"
    ):
        leaky.build()

    @my.pipeline
    def early(lrs: list = [0.1]):  # noqa: B006
        with my.parallel_for(lrs) as lr:
            s = score(fit(make(3), lr))
            best(my.collect(s))

    with pytest.raises(InvalidArgument, match="must be called after its parallel_for block ends"):
        early.build()


def test_parallel_for_and_condition_check_their_arguments() -> None:
    @my.pipeline
    def not_a_list(n: int = 3):
        with my.parallel_for(n):
            make(3)

    with pytest.raises(InvalidArgument, match="parallel_for needs a list; ParamRef\\('n'\\) is int"):
        not_a_list.build()

    @my.pipeline
    def bool_condition():
        with my.condition(True):  # type: ignore[arg-type]
            make(3)

    with pytest.raises(InvalidArgument, match="condition\\(\\) takes a comparison"):
        bool_condition.build()

    @my.pipeline
    def artifact_condition():
        with my.condition(make(3).output > 2):
            make(3)

    with pytest.raises(
        InvalidArgument, match="compares values; OutputRef\\('make', 'output'\\) is a dataset"
    ):
        artifact_condition.build()


def test_a_cycle_is_reported_with_its_steps() -> None:
    a = Task("a", make, {"n": 1})
    b = Task("b", make, {"n": 1})
    a.after(b)
    b.after(a)
    graph = Graph("cyclic", {}, {"a": a, "b": b}, {})
    with pytest.raises(InvalidArgument, match=r"Pipeline 'cyclic' has a cycle: (a → b → a|b → a → b)"):
        graph.validate()


def test_parameters_are_resolved_typed_and_checked() -> None:
    @my.pipeline
    def params(n: int, lr: float = 0.1, tags: list = [], verbose: bool = False):  # noqa: B006
        make(n)

    assert params.resolve_params({"n": 3}) == {"n": 3, "lr": 0.1, "tags": [], "verbose": False}
    assert params.resolve_params({"n": 3, "lr": 1}) == {"n": 3, "lr": 1.0, "tags": [], "verbose": False}
    with pytest.raises(InvalidArgument, match="needs parameter 'n'"):
        params.resolve_params({})
    with pytest.raises(
        InvalidArgument, match="has no parameter epochs; its parameters: n, lr, tags, verbose"
    ):
        params.resolve_params({"n": 1, "epochs": 3})
    with pytest.raises(InvalidArgument, match="must be int, got str"):
        params.resolve_params({"n": "3"})
    assert parse_params(params, ["n=4", "lr=0.5", "tags=[1, 2]", "verbose=yes"]) == {
        "n": 4,
        "lr": 0.5,
        "tags": [1, 2],
        "verbose": True,
    }
    for bad, message in [
        ("n=four", "n is int"),
        ("tags=1", "tags is list (JSON, e.g. [1, 2])"),
        ("verbose=maybe", "verbose is bool"),
        ("novalue", "should be KEY=VALUE"),
    ]:
        with pytest.raises(InvalidArgument, match=re.escape(message)):
            parse_params(params, [bad])


def test_step_options_are_validated() -> None:
    assert parse_duration("10m", "timeout") == 600
    assert parse_duration("1.5h", "timeout") == 5400
    assert parse_memory("4Gi") == 4 * 2**30
    with pytest.raises(InvalidArgument, match="'ten' is not a duration"):
        my.step(timeout="ten")(lambda: None)
    with pytest.raises(InvalidArgument, match="memory '4 gigs' is not a quantity"):
        my.step(memory="4 gigs")(lambda: None)
    with pytest.raises(InvalidArgument, match="retries must be a whole number"):
        my.step(retries=-1)(lambda: None)
    with pytest.raises(InvalidArgument, match="Unknown step options: retires"):
        make.with_options(retires=3)
    sped = fit.with_options(gpu=1, retries=2, retry_delay="2s")
    assert (sped.options.gpu, sped.options.retries, fit.options.gpu) == (1, 2, 0)
    assert [sped.options.retry_delay(n) for n in (2, 3, 4)] == [2.0, 4.0, 8.0]


def test_fingerprint_follows_local_helpers_and_ignores_formatting(tmp_path: Path) -> None:
    source = (
        HEADER
        + """
def helper(x):
    return x + 1

@my.step
def work(x: int) -> int:
    return helper(x)

@my.pipeline
def p():
    work(1)
"""
    )
    path = pipeline_file(tmp_path, source, "fp")
    first = fingerprint(load_pipeline(f"{path}:p").build().tasks["work"].step.func)
    path.write_text(source.replace("return helper(x)", "# a comment\n    return helper(x)  # same code"))
    assert fingerprint(load_pipeline(f"{path}:p").build().tasks["work"].step.func) == first
    path.write_text(source.replace("return x + 1", "return x + 2"))
    assert fingerprint(load_pipeline(f"{path}:p").build().tasks["work"].step.func) != first


def test_load_pipeline_errors(tmp_path: Path) -> None:
    path = pipeline_file(tmp_path, HEADER + "\nx = 1\n", "notapipe")
    with pytest.raises(InvalidArgument, match=r"should be FILE\.py:FUNCTION"):
        load_pipeline(str(path))
    with pytest.raises(InvalidArgument, match="No such file"):
        load_pipeline(f"{tmp_path}/missing.py:p")
    with pytest.raises(InvalidArgument, match="has no 'p'"):
        load_pipeline(f"{path}:p")
    with pytest.raises(InvalidArgument, match="is a int, not a @pipeline function"):
        load_pipeline(f"{path}:x")
    with pytest.raises(InvalidArgument, match="Cannot import 'no_such_module_x'"):
        load_pipeline("no_such_module_x:p")
    broken = pipeline_file(tmp_path, "def a( -> int:\n    pass\n", "broken")
    with pytest.raises(
        InvalidArgument, match=rf"SyntaxError: invalid syntax \({re.escape(str(broken))}, line 1\)"
    ):
        load_pipeline(f"{broken}:p")
    failing = pipeline_file(tmp_path, "x = 1\ny = x / 0\n", "failing_import")
    with pytest.raises(
        InvalidArgument, match=rf"ZeroDivisionError: division by zero \({re.escape(str(failing))}, line 2\)"
    ):
        load_pipeline(f"{failing}:p")


def test_param_refs_compare_into_conditions_not_bools() -> None:
    ref = ParamRef("n", "int")
    cond = ref >= 3
    assert cond.describe() == "params.n >= 3"
    with pytest.raises(InvalidArgument):
        bool(ref)


def test_fingerprint_follows_functions_of_project_modules(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(tmp_path))
    helpers = tmp_path / "fp_helpers.py"
    helpers.write_text("def norm(x):\n    return x * 2\n")
    path = pipeline_file(
        tmp_path,
        HEADER
        + "import fp_helpers\n\n@my.step\ndef s(x: int) -> int:\n    return fp_helpers.norm(x)\n\n@my.pipeline\ndef p():\n    s(1)\n",
    )
    first = fingerprint(load_pipeline(f"{path}:p").build().tasks["s"].step.func)
    helpers.write_text("def norm(x):\n    return x * 3\n")
    import sys

    sys.modules.pop("fp_helpers", None)
    assert fingerprint(load_pipeline(f"{path}:p").build().tasks["s"].step.func) != first
