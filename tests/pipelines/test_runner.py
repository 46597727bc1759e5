"""Running pipelines for real: steps in their own processes, outputs in the artifact store, the cache,
failures, retries, timeouts, resume, parallelism and tracking."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import modelyard as my
from modelyard.errors import InvalidArgument, InvalidState
from modelyard.pipelines import records, resume, run_pipeline
from modelyard.tracking.client import Client

from .helpers import HEADER, load, pipeline_file

TYPES = (
    HEADER
    + """
import pandas as pd
from pathlib import Path
from sklearn.linear_model import LogisticRegression


class Odd:
    def __init__(self, v):
        self.v = v


class Parts(NamedTuple):
    train: Dataset
    test: Dataset


@my.step
def make(n: int) -> Dataset:
    print("making", n)
    return pd.DataFrame({"x": np.arange(n, dtype=float), "y": (np.arange(n) >= n // 4).astype(int)})


@my.step
def split(frame: Dataset) -> Parts:
    return Parts(frame.iloc[: len(frame) // 2], frame.iloc[len(frame) // 2 :])


@my.step
def fit(train: Dataset) -> Model:
    return LogisticRegression().fit(train[["x"]], train["y"])


@my.step
def evaluate(model: Model, test: Dataset) -> Metrics:
    my.log_param("evaluated_rows", len(test))
    return {"accuracy": float(model.score(test[["x"]], test["y"])), "rows": len(test)}


@my.step
def arrays(n: int) -> np.ndarray:
    return np.ones((n, 2))


@my.step
def report(metrics: Metrics, grid: np.ndarray, out: str) -> Path:
    path = Path(out) / "report.txt"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{metrics['accuracy']:.3f} {grid.sum():.0f}")
    return path


@my.step
def odd() -> Odd:
    return Odd(3)


@my.step
def use_odd(o: Odd, report: Path) -> int:
    return o.v + len(report.read_text())


@my.pipeline
def typed(n: int = 40, out: str = "/tmp"):
    parts = split(make(n))
    metrics = evaluate(fit(parts.outputs.train), parts.outputs.test)
    file = report(metrics, arrays(3), out)
    use_odd(odd(), file)
"""
)


def test_outputs_are_stored_by_type_and_steps_are_tracked(tmp_path: Path) -> None:
    pipe = load(pipeline_file(tmp_path, TYPES), "typed")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        run = run_pipeline(pipe, {"n": 40, "out": str(tmp_path / "work")})
    assert run.ok, {k: v.error for k, v in run.steps.items()}
    formats = {key: {n: o["format"] for n, o in r.outputs.items()} for key, r in run.steps.items()}
    assert formats == {
        "make": {"output": "parquet-pandas"},
        "split": {"train": "parquet-pandas", "test": "parquet-pandas"},
        "fit": {"output": "model"},
        "evaluate": {"output": "json"},
        "arrays": {"output": "npy"},
        "report": {"output": "file"},
        "odd": {"output": "pickle"},
        "use_odd": {"output": "json"},
    }
    assert run.output("evaluate") == {"accuracy": 1.0, "rows": 20}  # y = x >= 10: learnable
    assert isinstance(run.output("split", "train"), pd.DataFrame) and len(run.output("split", "train")) == 20
    assert np.array_equal(run.output("arrays"), np.ones((3, 2)))
    assert run.output("report").read_text() == "1.000 6"
    assert run.output("use_odd") == 3 + len("1.000 6")
    assert hasattr(run.output("fit"), "predict")

    client = Client()
    parent = client.get_run(run.run_id)
    assert parent.info.status.value == "FINISHED"
    assert parent.data.tags[records.TAG_PIPELINE] == "typed"
    assert parent.data.params == {"n": "40", "out": str(tmp_path / "work")}
    assert json.loads(parent.data.tags[records.TAG_SOURCE])["qualname"] == "typed"
    evaluate = client.get_run(run.steps["evaluate"].run_id)
    assert evaluate.info.parent_run_id == run.run_id
    assert evaluate.data.metrics["accuracy"] == 1.0 and "duration_s" in evaluate.data.metrics
    assert evaluate.data.params["evaluated_rows"] == "20"  # logged by the step itself
    assert evaluate.data.tags[records.TAG_CACHE] == "miss"
    make = client.get_run(run.steps["make"].run_id)
    assert make.data.params == {"n": "40"}
    log = client.artifact_store(make.info.run_id).open_read(records.LOG_ARTIFACT).read().decode()
    assert "making 40" in log
    described = records.describe(client, run.run_id)
    order = [s["id"] for s in described["graph"]["steps"]]
    assert order.index("make") < order.index("split") < order.index("fit") < order.index("evaluate")
    assert {s["instance"]: s["state"] for s in described["steps"]}["use_odd"] == "SUCCEEDED"


FLOW = (
    HEADER
    + """
def scale(values, factor):
    return [v * factor for v in values]


@my.step
def load(path: my.pipelines.File) -> list:
    return [float(v) for v in path.read_text().split()]  # a File input given as a string arrives as a Path


@my.step
def transform(values: list, factor: float) -> list:
    return scale(values, factor)


@my.step
def total(values: list) -> float:
    return float(sum(values))


@my.step(cache=False)
def announce(t: float) -> str:
    return f"total {t}"


@my.pipeline
def flow(path: str = "", factor: float = 2.0):
    t = total(transform(load(path), factor))
    announce(t)
"""
)


def _states(run: my.pipelines.PipelineRun) -> dict[str, str]:
    return {key: record.state for key, record in run.steps.items()}


def test_cache_reuses_unchanged_steps_and_invalidates_on_code_parameter_and_data(tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("1 2 3")
    source = pipeline_file(tmp_path, FLOW, "flow_cache")
    params = {"path": str(data), "factor": 2.0}
    first = run_pipeline(load(source, "flow"), params)
    assert _states(first) == dict.fromkeys(["load", "transform", "total", "announce"], "SUCCEEDED")
    assert first.output("announce") == "total 12.0"
    assert Client().get_run(str(first.steps["total"].run_id)).data.metrics["duration_s"] > 0

    again = run_pipeline(load(source, "flow"), params)
    assert _states(again) == {
        "load": "CACHED",
        "transform": "CACHED",
        "total": "CACHED",
        "announce": "SUCCEEDED",
    }
    assert again.steps["total"].cached_from == first.steps["total"].run_id
    assert again.output("total") == 12.0

    # a parameter change reruns the steps it reaches
    tripled = run_pipeline(load(source, "flow"), {**params, "factor": 3.0})
    assert _states(tripled)["load"] == "CACHED" and tripled.steps["transform"].state == "SUCCEEDED"
    assert tripled.output("total") == 18.0

    # a code change in a helper the step calls reruns that step; the same output content keeps the rest cached
    source.write_text(
        FLOW.replace("return [v * factor for v in values]", "return [factor * v for v in values]")
    )
    recoded = run_pipeline(load(source, "flow"), params)
    assert _states(recoded) == {
        "load": "CACHED",
        "transform": "SUCCEEDED",
        "total": "CACHED",
        "announce": "SUCCEEDED",
    }

    # new data in the same file reruns the step that reads it, and everything downstream
    data.write_text("1 2 3 4")
    changed = run_pipeline(load(source, "flow"), params)
    assert _states(changed)["load"] == "SUCCEEDED" and changed.output("total") == 20.0

    # --no-cache runs everything
    forced = run_pipeline(load(source, "flow"), params, cache=False)
    assert set(_states(forced).values()) == {"SUCCEEDED"}
    assert {r.cache for r in forced.steps.values()} == {"off"}


def test_a_hit_whose_artifacts_are_gone_is_a_miss_and_staleness_limits_hits(tmp_path: Path) -> None:
    data = tmp_path / "data.txt"
    data.write_text("5")
    source = pipeline_file(tmp_path, FLOW)
    params = {"path": str(data)}
    first = run_pipeline(load(source, "flow"), params)
    client = Client()
    entry = first.steps["transform"].outputs["output"]
    client.artifact_store(entry["run_id"]).delete(entry["path"])
    again = run_pipeline(load(source, "flow"), params)
    assert _states(again)["load"] == "CACHED"
    assert _states(again)["transform"] == "SUCCEEDED"  # its earlier output was deleted
    assert again.output("total") == 10.0

    stale = pipeline_file(
        tmp_path, FLOW.replace("@my.step\ndef total", '@my.step(max_staleness="1ms")\ndef total')
    )
    run_pipeline(load(stale, "flow"), params)
    third = run_pipeline(load(stale, "flow"), params)
    assert _states(third)["transform"] == "CACHED" and _states(third)["total"] == "SUCCEEDED"


FAILING = (
    HEADER
    + """
from pathlib import Path

@my.step
def first(x: int) -> int:
    return x + 1

@my.step
def slow(x: int) -> int:
    time.sleep(1.0)
    return x * 10

@my.step
def breaks(x: int) -> int:
    if not Path(os.environ["FIXED_MARKER"]).exists():
        raise ValueError("bad input row 17")
    return x + 100

@my.step
def after(x: int, y: int) -> int:
    return x + y

@my.pipeline
def failing(x: int = 1):
    a = first(x)
    s = slow(a)
    b = breaks(a)
    after(b, s)
"""
)


def test_failure_stops_new_steps_and_resume_runs_only_failed_and_downstream(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    marker = tmp_path / "fixed"
    monkeypatch.setenv("FIXED_MARKER", str(marker))
    pipe = load(pipeline_file(tmp_path, FAILING), "failing")
    run = run_pipeline(pipe, {"x": 1}, max_parallel=2)
    assert run.status == "FAILED"
    states = _states(run)
    assert states["breaks"] == "FAILED" and states["first"] == "SUCCEEDED"
    assert states["slow"] == "SUCCEEDED"  # running when the other failed: it finishes
    assert states["after"] == "PENDING"  # never started
    assert "ValueError: bad input row 17" in (run.steps["breaks"].error or "")
    client = Client()
    assert client.get_run(run.run_id).info.status.value == "FAILED"
    log = client.artifact_store(run.steps["breaks"].run_id).open_read(records.LOG_ARTIFACT).read().decode()
    assert "Traceback" in log and "bad input row 17" in log

    marker.write_text("ok")  # the fix
    resumed = resume(run.run_id)
    assert resumed.run_id == run.run_id and resumed.ok
    states = _states(resumed)
    assert states == {"first": "SUCCEEDED", "slow": "SUCCEEDED", "breaks": "SUCCEEDED", "after": "SUCCEEDED"}
    # only the failed and downstream steps ran again: the others kept their first runs
    assert resumed.steps["first"].run_id == run.steps["first"].run_id
    assert resumed.steps["slow"].run_id == run.steps["slow"].run_id
    assert resumed.steps["breaks"].run_id != run.steps["breaks"].run_id
    assert resumed.output("after") == (2 + 100) + 20
    assert client.get_run(run.run_id).info.status.value == "FINISHED"
    with pytest.raises(InvalidState, match="already finished"):
        resume(run.run_id)


RETRIES = (
    HEADER
    + """
from pathlib import Path

@my.step(retries=2, retry_delay=0.2, retry_backoff=2)
def flaky(counter: str) -> int:
    path = Path(counter)
    n = int(path.read_text()) + 1 if path.exists() else 1
    path.write_text(str(n))
    if n < 3:
        raise RuntimeError(f"attempt {n} failed")
    return n

@my.step(timeout=1)
def sleepy() -> int:
    time.sleep(30)
    return 1

@my.step
def crash() -> int:
    os.kill(os.getpid(), 9)

@my.step
def fine() -> int:
    time.sleep(0.5)
    return 7

@my.step(retries=3, retry_delay="30s")
def patient() -> int:
    raise RuntimeError("not yet")

@my.step
def boom() -> int:
    time.sleep(0.5)
    raise ValueError("boom")

@my.pipeline
def retrying(counter: str = ""):
    flaky(counter)

@my.pipeline
def retry_then_fail():
    patient()
    boom()

@my.pipeline
def timing_out():
    sleepy()
    fine()

@my.pipeline
def crashing():
    crash()
    fine()
"""
)


def test_retries_back_off_and_count_attempts(tmp_path: Path) -> None:
    source = pipeline_file(tmp_path, RETRIES)
    run = run_pipeline(load(source, "retrying"), {"counter": str(tmp_path / "count")}, cache=False)
    assert run.ok and run.output("flaky") == 3
    assert run.steps["flaky"].attempts == 3
    client = Client()
    log = client.artifact_store(run.steps["flaky"].run_id).open_read(records.LOG_ARTIFACT).read().decode()
    assert "attempt 1 failed" in log and "attempt 2 failed" in log  # every attempt's output is kept


def test_a_step_waiting_to_retry_fails_when_another_step_fails(tmp_path: Path) -> None:
    run = run_pipeline(load(pipeline_file(tmp_path, RETRIES), "retry_then_fail"), max_parallel=2, cache=False)
    assert run.status == "FAILED"
    assert run.steps["patient"].state == "FAILED" and run.steps["patient"].attempts == 1
    stored = Client().get_run(str(run.steps["patient"].run_id))
    assert stored.info.status.value == "FAILED"
    assert stored.data.tags[records.TAG_STATE] == "FAILED"
    assert "not yet" in stored.data.tags[records.TAG_ERROR]


def test_a_timeout_or_a_crash_fails_only_that_step(tmp_path: Path) -> None:
    source = pipeline_file(tmp_path, RETRIES)
    timed = run_pipeline(load(source, "timing_out"), max_parallel=2)
    assert timed.status == "FAILED"
    assert timed.steps["sleepy"].error == "timed out after 1 s"
    assert timed.steps["fine"].state == "SUCCEEDED"
    crashed = run_pipeline(load(source, "crashing"), max_parallel=2)
    assert crashed.steps["crash"].state == "FAILED"
    assert "killed by SIGKILL (out of memory?)" in (crashed.steps["crash"].error or "")
    assert crashed.steps["fine"].state == "SUCCEEDED"


PARALLEL = (
    HEADER
    + """
from pathlib import Path


@my.step
def nap(i: int, folder: str, wait_s: float) -> list:
    # runs until the other nap has started too (or wait_s passed), so two naps that may run at once do
    # overlap, however late a loaded machine starts the second one's process
    start = time.time()
    Path(folder, f"started-{i}").write_text("")
    deadline = time.monotonic() + wait_s
    while not Path(folder, f"started-{3 - i}").exists() and time.monotonic() < deadline:
        time.sleep(0.01)
    return [start, time.time()]


@my.pipeline
def naps(folder: str = "", wait_s: float = 1.0):
    nap(1, folder, wait_s)
    nap(2, folder, wait_s)
"""
)


@pytest.mark.parametrize("max_parallel", [1, 2])
def test_independent_steps_run_in_parallel_up_to_max_parallel(tmp_path: Path, max_parallel: int) -> None:
    # at once, each nap waits for the other to start (up to 60 s); one at a time, the first waits 1 s in vain
    params = {"folder": str(tmp_path), "wait_s": 60.0 if max_parallel == 2 else 1.0}
    pipeline = load(pipeline_file(tmp_path, PARALLEL), "naps")
    run = run_pipeline(pipeline, params, max_parallel=max_parallel, cache=False)
    (_, first_end), (second_start, _) = sorted([run.output("nap"), run.output("nap-2")])
    overlapped = second_start < first_end
    assert overlapped is (max_parallel == 2)


CONTROL = (
    HEADER
    + """
@my.step
def configs(n: int) -> list:
    return [{"lr": 0.1 * (i + 1), "name": f"m{i}"} for i in range(n)]


@my.step
def train(lr: float, name: str) -> float:
    return round(1 - lr, 3)


@my.step
def best(scores: list[float]) -> float:
    return max(scores)


@my.step
def publish(score: float) -> str:
    return f"published {score}"


@my.step
def archive(score: float) -> str:
    return "archived"


@my.step
def downstream(message: str) -> str:
    return message + "!"


@my.pipeline
def control(n: int = 3, threshold: float = 0.5):
    with my.parallel_for(configs(n)) as config:
        with my.condition(config["lr"] < 0.25):
            score = train(config["lr"], config["name"])
    top = best(my.collect(score))
    with my.condition(top.output >= threshold):
        downstream(publish(top))
    with my.condition(top.output < threshold):
        archived = archive(top)
    downstream(archived)
"""
)


def test_loops_over_step_outputs_conditions_and_fan_in(tmp_path: Path) -> None:
    pipe = load(pipeline_file(tmp_path, CONTROL), "control")
    run = run_pipeline(pipe, {"n": 3, "threshold": 0.5})
    assert run.ok
    states = _states(run)
    assert [states[f"train[{i}]"] for i in range(3)] == ["SUCCEEDED", "SUCCEEDED", "SKIPPED"]
    assert "condition item(loop)['lr'] < 0.25 was false" in (run.steps["train[2]"].error or "")
    assert run.output("best") == 0.9  # the skipped iteration drops out of the collected list
    assert run.output("downstream") == "published 0.9!"
    assert states["archive"] == "SKIPPED" and states["downstream-2"] == "SKIPPED"
    assert "an input's step was skipped" in (run.steps["downstream-2"].error or "")
    client = Client()
    assert client.get_run(run.steps["train[1]"].run_id).data.params == {"lr": "0.2", "name": "m1"}


def test_resume_refuses_runs_that_are_not_resumable(tmp_path: Path) -> None:
    client = Client()
    with my.start_run(experiment="plain") as plain:
        pass
    with pytest.raises(InvalidArgument, match="is not a pipeline run"):
        resume(plain.run_id)
    pipe = load(pipeline_file(tmp_path, PARALLEL), "naps")
    running = client.create_run(
        client.get_or_create_experiment("naps"), tags={records.TAG_PIPELINE: "naps", records.TAG_SOURCE: "{}"}
    )
    with pytest.raises(InvalidState, match="still RUNNING"):
        resume(running.run_id)
    assert pipe.name == "naps"
    assert json.loads(json.dumps(records.describe(client, running.run_id)))["steps"] == []
