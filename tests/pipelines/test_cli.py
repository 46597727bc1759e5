"""`modelyard pipelines ...` as a user types it: run, show, logs, resume, list, bad input and Ctrl-C."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from modelyard.cli.main import cli
from modelyard.pipelines import records
from modelyard.tracking.client import Client

from .helpers import HEADER, pipeline_file

SOURCE = (
    HEADER
    + """
from pathlib import Path

@my.step
def numbers(n: int) -> list:
    return list(range(n))

@my.step
def total(values: list, fail_unless: str) -> int:
    if fail_unless and not Path(fail_unless).exists():
        raise RuntimeError("total is not ready")
    return sum(values)

@my.step
def wait_for(path: str) -> int:
    while not Path(path).exists():
        time.sleep(0.05)
    return 1

@my.pipeline
def sums(n: int = 4, fail_unless: str = ""):
    total(numbers(n), fail_unless)

@my.pipeline
def waiting(path: str = ""):
    wait_for(path)
"""
)


def invoke(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def test_run_show_list_and_a_cached_rerun(tmp_path: Path) -> None:
    target = f"{pipeline_file(tmp_path, SOURCE)}:sums"
    code, output = invoke("pipelines", "run", target, "--param", "n=5")
    assert code == 0, output
    assert "FINISHED pipeline run" in output and "2 succeeded" in output
    assert "✔ total" in output  # the plain-terminal live view: one line per state change

    code, output = invoke("pipelines", "run", target, "--param", "n=5", "--json")
    assert code == 0
    rerun = json.loads(output)
    assert {s["instance"]: (s["state"], s["cache"]) for s in rerun["steps"]} == {
        "numbers": ("CACHED", "hit"),
        "total": ("CACHED", "hit"),
    }

    code, output = invoke("pipelines", "show", rerun["run_id"])
    assert code == 0 and "CACHED" in output and "numbers" in output and "from run" in output
    code, output = invoke("pipelines", "show", rerun["run_id"], "--json")
    shown = json.loads(output)
    assert shown["params"] == {"n": 5, "fail_unless": ""} and shown["status"] == "FINISHED"
    assert [s["id"] for s in shown["graph"]["steps"]] == ["numbers", "total"]

    code, output = invoke("pipelines", "list", "--json")
    assert code == 0 and json.loads(output)[0]["run_id"] == rerun["run_id"]
    code, output = invoke("pipelines", "list")
    assert "sums" in output and "FINISHED" in output


def test_failure_logs_and_resume(tmp_path: Path) -> None:
    marker = tmp_path / "ready"
    target = f"{pipeline_file(tmp_path, SOURCE)}:sums"
    code, output = invoke("pipelines", "run", target, "-p", f"fail_unless={marker}", "--quiet")
    assert code == 1
    assert "FAILED pipeline run" in output and "pipelines resume" in output
    run_id = output.split("pipeline run ")[1].split(":")[0]
    code, output = invoke("pipelines", "logs", run_id, "total")
    assert code == 0 and "RuntimeError: total is not ready" in output
    code, output = invoke("pipelines", "show", run_id)
    assert "FAILED" in output and "total is not ready" in output

    marker.write_text("yes")
    code, output = invoke("pipelines", "resume", run_id, "--json")
    assert code == 0, output
    steps = {s["instance"]: s["state"] for s in json.loads(output)["steps"]}
    assert steps == {"numbers": "SUCCEEDED", "total": "SUCCEEDED"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--param", "m=3"], "Error: Pipeline 'sums' has no parameter 'm'; its parameters: n, fail_unless."),
        (["--param", "n=three"], "Error: --param n='three': n is int."),
        (["--param", "n"], "Error: --param 'n' should be KEY=VALUE."),
        (["--executor", "local", "--address", "1.2.3.4:1"], "--address is for --executor ray."),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path: Path, args: list[str], message: str) -> None:
    target = f"{pipeline_file(tmp_path, SOURCE)}:sums"
    code, output = invoke("pipelines", "run", target, *args)
    assert code != 0
    assert message in output and "Traceback" not in output


def test_bad_targets_and_ids(tmp_path: Path) -> None:
    code, output = invoke("pipelines", "run", "nowhere.py:p")
    assert code == 1 and "Error: No such file: 'nowhere.py'." in output
    code, output = invoke("pipelines", "show", "0" * 32)
    assert code == 1 and "Error:" in output and "Traceback" not in output
    client = Client()
    plain = client.create_run(client.get_or_create_experiment("plain"))
    client.set_terminated(plain.run_id, "FAILED")
    code, output = invoke("pipelines", "resume", plain.run_id)
    assert code == 1 and "is not a pipeline run" in output


@pytest.mark.parametrize("command", ["run", "resume", "list", "show", "logs", "compile"])
def test_every_command_has_help_with_an_example(command: str) -> None:
    code, output = invoke("pipelines", command, "--help")
    assert code == 0 and "Example:" in output


def test_submit_to_a_host_that_does_not_answer_is_one_line(tmp_path: Path) -> None:
    pytest.importorskip("kfp")
    from tests.server.live import free_port

    target = f"{pipeline_file(tmp_path, SOURCE)}:sums"
    host = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    result = CliRunner().invoke(
        cli, ["pipelines", "compile", target, "-o", str(tmp_path / "p.yaml"), "--image", "acme/train:1",
              "--submit", "--host", host],
    )  # fmt: skip
    assert result.exit_code == 1, result.output
    (line,) = [line for line in result.stderr.splitlines() if line.strip()]
    assert line.startswith(f"Error: Cannot reach Kubeflow Pipelines at {host}: connection refused."), line
    assert "MaxRetryError" not in result.output and "urllib3" not in result.output


def test_ctrl_c_cancels_running_steps_and_the_run_resumes(tmp_path: Path, modelyard_home: Path) -> None:
    release = tmp_path / "release"
    target = f"{pipeline_file(tmp_path, SOURCE)}:waiting"
    env = {**os.environ, "MODELYARD_HOME": str(modelyard_home)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "modelyard", "pipelines", "run", target, "-p", f"path={release}", "-q"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        preexec_fn=lambda: signal.signal(
            signal.SIGINT, signal.SIG_DFL
        ),  # as in a terminal (not a background job)
    )
    client = Client()
    deadline = time.monotonic() + 60
    step = None
    while time.monotonic() < deadline and step is None:
        time.sleep(0.2)
        runs = client.search_runs(None, f"tags.`{records.TAG_STATE}` = 'RUNNING'")
        step = runs[0] if runs else None
    assert step is not None, "the step never started"
    proc.send_signal(signal.SIGINT)
    try:
        output, _ = proc.communicate(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
        raise AssertionError(proc.communicate()[0].decode()) from None
    assert proc.returncode == 130, output
    parent = client.get_run(str(step.info.parent_run_id))
    assert f"Continue with: modelyard pipelines resume {parent.info.run_id}".encode() in output
    assert parent.info.status.value == "KILLED"
    assert client.get_run(step.info.run_id).data.tags[records.TAG_STATE] == "CANCELLED"

    release.write_text("go")
    code, output = invoke("pipelines", "resume", parent.info.run_id, "--json")
    assert code == 0, output
    assert [s["state"] for s in json.loads(output)["steps"]] == ["SUCCEEDED"]


def test_resume_force_takes_over_a_run_whose_process_died(tmp_path: Path) -> None:
    target = f"{pipeline_file(tmp_path, SOURCE)}:sums"
    code, output = invoke("pipelines", "run", target, "--json")
    run_id = json.loads(output)["run_id"]
    client = Client()
    client.update_run(run_id, status="RUNNING")  # as if its runner was killed with SIGKILL
    code, output = invoke("pipelines", "resume", run_id)
    assert code == 1 and f"resume it anyway with: modelyard pipelines resume {run_id} --force" in output
    code, output = invoke("pipelines", "resume", run_id, "--force", "--json")
    assert code == 0, output
    assert {s["state"] for s in json.loads(output)["steps"]} == {"SUCCEEDED"}  # reused, not rerun
