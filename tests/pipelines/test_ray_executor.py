"""The Ray executor against a real two-node Ray cluster (127.0.0.2 and 127.0.0.3, see conftest): placement on
both nodes, resource requests, fan-out/fan-in, the cache, failures, timeouts and cancelling."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from modelyard.errors import InvalidArgument
from modelyard.pipelines import records, run_pipeline
from modelyard.pipelines.dsl import StepOptions
from modelyard.pipelines.executor import Job
from modelyard.tracking.client import Client

from .helpers import HEADER, TAMPERED, load, pipeline_file

HEAD, WORKER = "127.0.0.2", "127.0.0.3"

STEPS = (
    HEADER
    + """
from pathlib import Path

NODE = "MODELYARD_RAY_NODE_IP"  # set by the Ray executor in the step's process


@my.step
def make_items(n: int) -> list:
    return list(range(n))


@my.step(cpu=1)
def square(x: int) -> dict:
    time.sleep(1.0)  # two at once hold both nodes' single CPU: they must run on different nodes
    return {"value": x * x, "node": os.environ[NODE]}


@my.step(memory="64Mi")
def total(parts: list) -> dict:
    return {"sum": sum(p["value"] for p in parts), "nodes": sorted({p["node"] for p in parts})}


@my.step
def pinned() -> str:
    return os.environ[NODE]


@my.pipeline
def fan(n: int = 4):
    items = make_items(n)
    with my.parallel_for(items.output) as x:
        sq = square(x)
    total(my.collect(sq.output))
    pinned()


@my.step
def explode() -> int:
    print("about to fail")
    raise ValueError("boom")


@my.step(timeout=600)  # reached only when the test moves the executor's clock past it (see _Clock)
def slow(pid_file: str) -> int:
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(1200)
    return 1


@my.pipeline
def failing(pid_file: str):
    explode()
    slow(pid_file)


@my.step
def sleepy(pid_file: str) -> int:
    print("greeting:", os.environ["GREETING"])
    with open(pid_file, "w") as f:
        f.write(str(os.getpid()))
    time.sleep(120)
    return 1


@my.step
def vector(n: int) -> np.ndarray:
    return np.arange(n, dtype=float) * 2
"""
    + TAMPERED
)

TIMEOUT_S = 600  # slow's timeout


class _Clock:
    """Stands in for the `time` module of `ray_executor`, whose timeouts it measures: the test moves it past a
    step's timeout once the step has said it started (its pid file), so how long a loaded machine takes to
    start the step's process cannot decide whether the step gets to start before it times out."""

    def __init__(self) -> None:
        self.offset = 0.0

    def monotonic(self) -> float:
        return time.monotonic() + self.offset

    sleep = staticmethod(time.sleep)

    def expire_when_started(self, pid_file: Path, within_s: float = 120.0) -> threading.Thread:
        """In the background: once `pid_file` names the step's process, jump past TIMEOUT_S (after `within_s`
        without it, jump anyway: the run then ends and the test says the step never started)."""

        def watch() -> None:
            deadline = time.monotonic() + within_s
            while not (pid_file.exists() and pid_file.read_text()) and time.monotonic() < deadline:
                time.sleep(0.05)
            self.offset += TIMEOUT_S + 1

        thread = threading.Thread(target=watch, daemon=True)
        thread.start()
        return thread


def _recording_executor(address: str, **kwargs: Any) -> Any:
    """A RayExecutor that remembers what it submitted and each outcome."""
    from modelyard.pipelines.ray_executor import RayExecutor

    class Recording(RayExecutor):
        def __init__(self) -> None:
            super().__init__(address=address, **kwargs)
            self.submitted: list[str] = []
            self.outcomes: dict[str, dict[str, Any]] = {}

        def submit(self, job: Job) -> Any:
            self.submitted.append(job.key)
            return super().submit(job)

        def poll(self, handle: Any) -> dict[str, Any] | None:
            outcome = super().poll(handle)
            if outcome is not None:
                self.outcomes[handle.job.key] = outcome
            return outcome

    return Recording()


def _pid_writing_task(home: Path, stem: str, step: str, experiment: str) -> tuple[dict[str, Any], Path]:
    """The task of `step` (it writes its pid to the file returned, then sleeps), from STEPS written as `stem`,
    with a run of its own in `experiment`."""
    path = pipeline_file(home, STEPS, stem=stem)
    uri = f"sqlite:///{home}/t.db"
    client = Client(uri)
    run = client.create_run(client.get_or_create_experiment(experiment), run_name=step)
    pid_file = home / f"{step}.pid"
    task = {
        "step": {"module": f"_modelyard_file_{stem}", "qualname": step, "file": str(path)},
        "instance": step,
        "tracking_uri": uri,
        "run_id": run.run_id,
        "inputs": {"pid_file": {"value": str(pid_file)}},
        "outputs": {"output": "int"},
    }
    return task, pid_file


def _alive(pid: int) -> bool:
    """Whether `pid` runs (a zombie waiting for its parent to reap it counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


def _gone_soon(pid: int, within_s: float = 10.0) -> bool:
    deadline = time.monotonic() + within_s
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path))
    return tmp_path


# -- without a cluster ---------------------------------------------------------------------------------------
def test_unreachable_address_fails_fast() -> None:
    ray = pytest.importorskip("ray")
    from modelyard.pipelines.ray_executor import RayExecutor

    assert not ray.is_initialized()
    started = time.monotonic()
    with pytest.raises(InvalidArgument, match=r"127\.0\.0\.2:1.*HOST:PORT"):
        RayExecutor(address="127.0.0.2:1")
    assert time.monotonic() - started < 10
    assert not ray.is_initialized()
    with pytest.raises(InvalidArgument, match="should be HOST:PORT"):
        RayExecutor(address="no-port-here")


def test_missing_ray_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from modelyard.pipelines.ray_executor import RayExecutor

    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    with pytest.raises(InvalidArgument, match=r"pip install 'modelyard\[ray\]'"):
        RayExecutor(address="127.0.0.2:1")


# -- on the two-node cluster ---------------------------------------------------------------------------------
@pytest.mark.slow
def test_pipeline_runs_on_both_nodes_then_comes_from_the_cache(ray_cluster_address: str, home: Path) -> None:
    pipeline = load(pipeline_file(home, STEPS, stem="ray_steps"), "fan")
    uri = f"sqlite:///{home}/t.db"
    executor = _recording_executor(ray_cluster_address, resources={"pinned": {"node_b": 1}})
    assert executor.max_parallel == 2  # the cluster's CPUs

    run = run_pipeline(pipeline, {"n": 5}, executor=executor, tracking_uri=uri)

    assert run.status == "FINISHED", {k: r.error for k, r in run.steps.items()}
    assert run.output("total") == {"sum": 0 + 1 + 4 + 9 + 16, "nodes": [HEAD, WORKER]}
    assert [run.output(f"square[{i}]")["value"] for i in range(5)] == [0, 1, 4, 9, 16]
    # the custom resource pins the step to the worker node; the outcome names the node that ran each step
    assert run.output("pinned") == WORKER
    nodes = {key: outcome["node"] for key, outcome in executor.outcomes.items()}
    assert nodes["pinned"] == WORKER
    assert {nodes[f"square[{i}]"] for i in range(5)} == {HEAD, WORKER}
    assert {run.output(f"square[{i}]")["node"] for i in range(5)} == {HEAD, WORKER}
    assert sorted(executor.submitted) == sorted(
        ["make_items", "total", "pinned", *(f"square[{i}]" for i in range(5))]
    )
    assert all(r.state == "SUCCEEDED" for r in run.steps.values())
    import ray

    assert not ray.is_initialized()  # the executor disconnected at the end of the run

    again = _recording_executor(ray_cluster_address, resources={"pinned": {"node_b": 1}})
    second = run_pipeline(pipeline, {"n": 5}, executor=again, tracking_uri=uri)
    assert second.status == "FINISHED"
    assert {r.state for r in second.steps.values()} == {"CACHED"}
    assert again.submitted == []
    assert second.output("total")["sum"] == 30


@pytest.mark.slow
def test_failing_and_timed_out_steps_fail_the_run(
    ray_cluster_address: str, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelyard.pipelines import ray_executor

    pipeline = load(pipeline_file(home, STEPS, stem="ray_steps"), "failing")
    pid_file = home / "slow.pid"
    executor = _recording_executor(ray_cluster_address)
    clock = _Clock()  # the driver's timeout clock: past slow's timeout once slow has started, however late
    monkeypatch.setattr(ray_executor, "time", clock)
    watcher = clock.expire_when_started(pid_file)

    started = time.monotonic()
    run = run_pipeline(
        pipeline, {"pid_file": str(pid_file)}, executor=executor, tracking_uri=f"sqlite:///{home}/t.db"
    )
    watcher.join()

    assert pid_file.exists(), "the slow step never started"
    assert run.status == "FAILED"
    assert run.steps["explode"].state == "FAILED"
    assert run.steps["explode"].error == "ValueError: boom"
    assert run.steps["slow"].state == "FAILED"
    assert run.steps["slow"].error == f"timed out after {TIMEOUT_S} s"
    assert time.monotonic() - started < 300  # well before the step's own 1200 s sleep: it was stopped
    # the step's output came back from the worker node and is the step run's log
    store = Client(f"sqlite:///{home}/t.db").artifact_store(str(run.steps["explode"].run_id))
    log = store.open_read(records.LOG_ARTIFACT).read().decode()
    assert "about to fail" in log and "ValueError: boom" in log
    assert _gone_soon(int(pid_file.read_text()))  # the timed-out step's process was stopped
    assert {executor.outcomes["explode"]["node"], executor.outcomes["slow"]["node"]} <= {HEAD, WORKER}


def test_the_worker_stops_a_step_that_runs_past_its_timeout(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The Ray task's own timeout (it holds while the driver is gone), run in this process: no cluster."""
    pytest.importorskip("ray")
    from modelyard.pipelines import ray_executor

    task, pid_file = _pid_writing_task(home, "ray_worker_steps", "slow", "ray-worker")
    clock = _Clock()  # the worker's timeout clock: past the timeout once the step has started, however late
    monkeypatch.setattr(ray_executor, "time", clock)
    watcher = clock.expire_when_started(pid_file)
    started = time.monotonic()
    outcome, log, node = ray_executor._run_step(task, TIMEOUT_S)
    watcher.join()
    assert pid_file.exists(), f"the step never started: {log}"
    assert outcome == {"ok": False, "error": f"timed out after {TIMEOUT_S} s"}
    assert _gone_soon(int(pid_file.read_text()))  # its process was stopped, not left sleeping
    assert time.monotonic() - started < 300
    assert node


@pytest.mark.slow
def test_an_input_damaged_during_the_run_fails_its_step_on_the_worker(
    ray_cluster_address: str, home: Path
) -> None:
    """A step on a Ray worker checks its inputs against their recorded SHA-256 as it loads them."""
    from modelyard.pipelines.integrity import CorruptOutputWarning

    pipeline = load(pipeline_file(home, STEPS, stem="ray_tamper_steps"), "tampered")
    uri = f"sqlite:///{home}/t.db"
    params = {"home": str(home)}
    run = run_pipeline(pipeline, params, executor=_recording_executor(ray_cluster_address), tracking_uri=uri)
    assert run.status == "FAILED"
    step = run.steps["total_after"]
    assert step.state == "FAILED" and step.attempts == 1  # not retried: the same bytes again
    assert (step.error or "").startswith("CorruptOutput: ") and "outputs/output.npy" in (step.error or "")
    assert "(input 'v' of step 'total_after')" in (step.error or "")

    from modelyard.pipelines import resume

    with pytest.warns(CorruptOutputWarning, match="outputs/output.npy"):
        resumed = resume(run.run_id, executor=_recording_executor(ray_cluster_address), tracking_uri=uri)
    assert resumed.ok, {k: r.error for k, r in resumed.steps.items()}
    assert resumed.output("total_after") == 9900.0  # from the recomputed vector, not the damaged bytes


@pytest.mark.slow
def test_cancel_stops_the_steps_process(ray_cluster_address: str, home: Path) -> None:
    from modelyard.pipelines.ray_executor import RayExecutor

    task, pid_file = _pid_writing_task(home, "ray_cancel_steps", "sleepy", "ray-cancel")
    log_path = home / "logs" / "sleepy.log"
    executor = RayExecutor(address=ray_cluster_address, max_parallel=1)
    try:
        handle = executor.submit(Job("sleepy", task, StepOptions(env={"GREETING": "hi"}), log_path))
        deadline = time.monotonic() + 60
        while not pid_file.exists() or not pid_file.read_text():
            assert executor.poll(handle) is None, "the step should still be running"
            assert time.monotonic() < deadline, "the step never started"
            time.sleep(0.1)
        pid = int(pid_file.read_text())
        assert _alive(pid)
        executor.cancel(handle)
        outcome = None
        while outcome is None:
            outcome = executor.poll(handle)
            assert time.monotonic() < deadline + 30, "cancel did not finish"
            time.sleep(0.05)
        assert outcome["error"] == "cancelled" and not outcome["ok"]
        assert outcome["node"] in (HEAD, WORKER)
        assert _gone_soon(pid)
        # the step's output so far came back; the step's env reached it through Ray's runtime_env
        assert "greeting: hi" in log_path.read_text()
    finally:
        executor.close()


@pytest.mark.slow
def test_cli_runs_on_the_cluster_and_records_each_steps_node(ray_cluster_address: str, home: Path) -> None:
    import json

    from click.testing import CliRunner

    from modelyard.cli.main import cli

    target = f"{pipeline_file(home, STEPS, stem='ray_cli_steps')}:fan"
    args = [
        "pipelines",
        "run",
        target,
        "-p",
        "n=2",
        "--executor",
        "ray",
        "--address",
        ray_cluster_address,
        "--json",
    ]
    result = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    steps = {s["instance"]: s for s in json.loads(result.output)["steps"]}
    assert {s["state"] for s in steps.values()} == {"SUCCEEDED"}
    client = Client()
    nodes = {key: client.get_run(s["run_id"]).data.tags[records.TAG_NODE] for key, s in steps.items()}
    assert set(nodes.values()) <= {HEAD, WORKER} and len(nodes) == 5
    parent = client.get_run(json.loads(result.output)["run_id"])
    assert parent.data.tags[records.TAG_EXECUTOR] == "ray"
