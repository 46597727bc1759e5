"""The server's pipeline scheduler firing real schedules (its clock moved forward instead of waiting for
cron times), in the server's background thread and on shutdown; and the `modelyard pipelines schedule` and
`schedules` commands on a database."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result
from starlette.testclient import TestClient

from modelyard.cli.main import cli
from modelyard.cli.pipeline_schedules import schedule, schedules
from modelyard.cli.pipelines import pipelines
from modelyard.schemas.pipelines import PipelineSchedule
from modelyard.server import ServerSettings, create_app
from modelyard.server.scheduler import PipelineScheduler, command, outcome_of
from modelyard.store.sql.pipeline_schedules import SqlPipelineScheduleStore
from modelyard.store.sql.store import SqlTrackingStore
from tests.server.test_pipelines_api import write_flow

SLOW = """
import time

import modelyard as my


@my.step
def sleepy(seconds: float) -> int:
    print("sleeping", flush=True)
    time.sleep(seconds)
    return 1


@my.pipeline
def slow(seconds: float = 60.0):
    sleepy(seconds)
"""

if "schedule" not in pipelines.commands:  # attached by cli/pipelines.py once it imports them
    pipelines.add_command(schedule)
    pipelines.add_command(schedules)


@pytest.fixture
def tracking(tmp_path: Path) -> Iterator[SqlTrackingStore]:
    store = SqlTrackingStore(f"sqlite:///{tmp_path / 'sched.db'}", str(tmp_path / "artifacts"))
    yield store
    store.close()


def _scheduler(tracking: SqlTrackingStore, shift_s: float = 0.0) -> PipelineScheduler:
    store = SqlPipelineScheduleStore(tracking)
    return PipelineScheduler(
        store, tracking.uri, str(Path(tracking.uri.removeprefix("sqlite:///")).parent / "artifacts"),
        interval_s=0.1, clock=lambda: time.time() + shift_s, grace_s=10,
    )  # fmt: skip


def test_a_due_schedule_fires_once_and_its_run_is_recorded(
    tracking: SqlTrackingStore, tmp_path: Path
) -> None:
    flow = write_flow(tmp_path)
    scheduler = _scheduler(tracking, shift_s=3600)  # an hour later: sixty every-minute times have passed
    made = scheduler.store.create_schedule("every-minute", f"{flow}:arith", "* * * * *", {"n": 6}, "sched")
    ticked_at = scheduler.now_ms()
    assert scheduler.tick() == ["every-minute"]
    assert scheduler.tick() == []  # claimed and moved to the next minute after the clock's now: once only
    assert scheduler.wait(120)
    done = scheduler.store.get_schedule("every-minute")
    assert done.last_status == "FINISHED" and done.last_error is None and done.last_run_id, done
    assert done.last_run_time is not None and done.last_run_time >= made.created_time + 3600_000
    # the next minute after the tick (the run itself may cross a minute boundary, so not "after now")
    assert done.next_run_time is not None and ticked_at < done.next_run_time <= ticked_at + 60_000
    run = tracking.get_run(done.last_run_id)
    assert run.data.tags["modelyard.pipeline"] == "arith" and run.info.status.value == "FINISHED"
    assert json.loads(run.data.tags["modelyard.pipeline.params"]) == {"n": 6}
    assert tracking.get_experiment(run.info.experiment_id).name == "sched"


def test_failures_are_recorded_with_their_error(tracking: SqlTrackingStore, tmp_path: Path) -> None:
    flow = write_flow(tmp_path)
    scheduler = _scheduler(tracking, shift_s=120)
    scheduler.store.create_schedule("negative", f"{flow}:arith", "* * * * *", {"n": -2})
    gone = tmp_path / "gone.py"
    gone.write_text("x = 1\n")
    scheduler.store.create_schedule("gone", f"{gone}:arith", "* * * * *")
    gone.unlink()
    assert sorted(scheduler.tick()) == ["gone", "negative"]
    assert scheduler.wait(120)
    negative = scheduler.store.get_schedule("negative")
    assert negative.last_status == "FAILED" and negative.last_run_id is not None
    assert "add" in (negative.last_error or "") and "b must not be negative" in (negative.last_error or "")
    missing = scheduler.store.get_schedule("gone")
    assert missing.last_status == "FAILED" and missing.last_run_id is None
    assert "No such file" in (missing.last_error or "")


def test_the_server_runs_due_schedules_in_the_background(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MODELYARD_SERVER_SCHEDULER_INTERVAL_S", "0.1")
    flow = write_flow(tmp_path)
    app = create_app(
        ServerSettings(
            backend_store_uri=f"sqlite:///{tmp_path / 'srv.db'}", artifacts_uri=str(tmp_path / "a")
        )
    )
    app.state.pipeline_schedules.create_schedule("soon", f"{flow}:arith", "@hourly")
    app.state.pipeline_scheduler.clock = lambda: time.time() + 3700
    with TestClient(app) as http:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            got = http.get("/api/v1/pipelines/schedules/soon").json()
            if got["last_status"] not in (None, "RUNNING"):
                break
            time.sleep(0.2)
        assert got["last_status"] == "FINISHED", got
        described = http.get(f"/api/v1/pipelines/runs/{got['last_run_id']}").json()
        assert described["status"] == "FINISHED" and len(described["steps"]) == 2
    assert not app.state.pipeline_scheduler.running


def test_stop_interrupts_a_running_pipeline_and_records_it(
    tracking: SqlTrackingStore, tmp_path: Path
) -> None:
    slow = tmp_path / "slow.py"
    slow.write_text(SLOW)
    scheduler = _scheduler(tracking, shift_s=120).start()
    scheduler.store.create_schedule("slow", f"{slow}:slow", "* * * * *")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not _step_running(tracking):
        time.sleep(0.1)
    assert _step_running(tracking) and scheduler.runs
    started = time.monotonic()
    scheduler.stop(grace_s=15)
    assert time.monotonic() - started < 20 and not scheduler.running and not scheduler.runs
    stopped = scheduler.store.get_schedule("slow")
    assert stopped.last_status == "KILLED", stopped
    if stopped.last_run_id:  # the pipeline recorded itself as killed
        assert tracking.get_run(stopped.last_run_id).info.status.value == "KILLED"


def _step_running(tracking: SqlTrackingStore) -> bool:
    return any(
        r.data.tags.get("modelyard.step.state") == "RUNNING"
        for e in tracking.search_experiments()
        for r in tracking.search_runs([e.experiment_id]).runs
    )


def test_command_and_outcome() -> None:
    s = PipelineSchedule(
        schedule_id="x", name="n", target="/f.py:p", params={"a": 1, "b": "t x"}, experiment="e",
        cron="@daily", created_time=0,
    )  # fmt: skip
    assert command(s, "py") == [
        "py", "-m", "modelyard", "pipelines", "run", "/f.py:p", "--param", "a=1", "--param", "b=t x",
        "--experiment", "e", "--quiet", "--json",
    ]  # fmt: skip
    report = json.dumps({"run_id": "r1", "status": "FINISHED", "steps": []}, indent=2)
    assert outcome_of(0, report, "").status == "FINISHED" and outcome_of(0, report, "").run_id == "r1"
    failed = json.dumps({"run_id": "r2", "status": "FAILED", "steps": [
        {"instance": "t[1]", "state": "FAILED", "error": "boom"}, {"instance": "u", "state": "SUCCEEDED"}]})  # fmt: skip
    assert outcome_of(1, failed, "").error == "t[1]: boom"
    assert outcome_of(1, "", "Error: No such file: 'x.py'.\n").error == "Error: No such file: 'x.py'."
    assert outcome_of(-9, "", "").status == "KILLED" and "SIGKILL" in (outcome_of(-9, "", "").error or "")


# -- the CLI -------------------------------------------------------------------------------------------------


def run_cli(*args: str, code: int = 0) -> Result:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == code, result.output
    return result


def test_cli_on_a_database(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("MODELYARD_TRACKING_URI", f"sqlite:///{tmp_path / 'cli.db'}")
    write_flow(tmp_path)
    monkeypatch.chdir(tmp_path)
    made = run_cli("pipelines", "schedule", "flow.py:arith", "--cron", "0 3 * * *", "-p", "n=7", "--json")
    got = json.loads(made.stdout)
    assert got["name"] == "arith" and got["target"] == f"{tmp_path / 'flow.py'}:arith"  # stored absolute
    assert got["params"] == {"n": 7} and got["cron"] == "0 3 * * *" and got["enabled"] is True
    run_cli("pipelines", "schedule", "flow.py:arith", "--cron", "@hourly", "--name", "hourly", "--paused")

    listed = run_cli("pipelines", "schedules", "list").stdout
    assert "arith" in listed and "hourly" in listed and "paused" in listed and "never ran" in listed
    assert [s["name"] for s in json.loads(run_cli("pipelines", "schedules", "list", "--json").stdout)] == [
        "arith",
        "hourly",
    ]
    shown = run_cli("pipelines", "schedules", "show", "arith").stdout
    assert "0 3 * * * (UTC)" in shown and "n=7" in shown
    assert "paused" in run_cli("pipelines", "schedules", "pause", "arith").stderr
    assert json.loads(run_cli("pipelines", "schedules", "show", "arith", "--json").stdout)["enabled"] is False
    assert "active" in run_cli("pipelines", "schedules", "resume", "arith").stderr

    ran = run_cli("pipelines", "schedules", "run", "arith", "--json")
    outcome = json.loads(ran.stdout)
    assert outcome["status"] == "FINISHED" and outcome["run_id"]
    after = json.loads(run_cli("pipelines", "schedules", "show", "arith", "--json").stdout)
    assert after["last_run_id"] == outcome["run_id"] and after["last_status"] == "FINISHED"
    assert outcome["run_id"] in run_cli("pipelines", "schedules", "show", "arith").stdout

    run_cli("pipelines", "schedules", "delete", "hourly", "--yes")
    assert [s["name"] for s in json.loads(run_cli("pipelines", "schedules", "list", "--json").stdout)] == [
        "arith"
    ]


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["schedule", "flow.py:arith", "--cron", "61 * * * *"], "Invalid cron expression '61 * * * *'"),
        (["schedule", "flow.py:arith", "--cron", "* * *"], "has 3 fields, not 5"),
        (["schedule", "flow.py:arith", "--cron", "@daily", "-p", "n=x"], "n is int"),
        (["schedule", "flow.py:arith", "--cron", "@daily", "-p", "m=1"], "no parameter 'm'"),
        (["schedule", "nope.py:arith", "--cron", "@daily"], "No such file"),
        (["schedule", "flow.py:arith", "--cron", "@daily", "--timezone", "Mars/X"], "Unknown time zone"),
        (["schedule", "flow.py:arith", "--cron", "@daily", "--name", "a b"], "Invalid schedule name"),
        (["schedules", "show", "ghost"], "No pipeline schedule named 'ghost'"),
        (["schedules", "pause", "ghost"], "No pipeline schedule named 'ghost'"),
        (["schedules", "run", "ghost"], "No pipeline schedule named 'ghost'"),
    ],
)
def test_cli_errors_without_tracebacks(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, args: list[str], fragment: str
) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("MODELYARD_TRACKING_URI", f"sqlite:///{tmp_path / 'cli.db'}")
    write_flow(tmp_path)
    monkeypatch.chdir(tmp_path)
    result = run_cli("pipelines", *args, code=1)
    assert fragment in " ".join(result.stderr.split()) and "Traceback" not in result.output


def test_cli_help_has_examples() -> None:
    for args in (["schedule"], ["schedules"], *[["schedules", c] for c in schedules.commands]):
        text = run_cli("pipelines", *args, "--help").stdout
        assert "Example" in text and "modelyard pipelines" in text, args
