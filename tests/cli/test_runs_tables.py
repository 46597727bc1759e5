"""`modelyard runs list/search/compare/metric` as a user reads them: the params and metrics that differ, the
experiment and dated start times, pipeline step runs left out, whole ids when piped, and the metric chart."""

from __future__ import annotations

import json
import re

from click.testing import CliRunner, Result

from modelyard.cli.main import cli
from modelyard.tracking.client import Client

DATE = re.compile(r"\d{4}-\d{2}-\d{2} \d{2}:\d{2} \S+")  # a date, a time and a time zone


def invoke(*args: str, columns: int = 200) -> Result:
    return CliRunner().invoke(cli, list(args), env={"COLUMNS": str(columns)})


def two_runs() -> list[str]:
    client = Client()
    ids = []
    for lr, experiment in ((0.1, "sweep-a"), (0.01, "sweep-b")):
        exp = client.get_or_create_experiment(experiment)
        run = client.create_run(exp, run_name=f"lr-{lr}", params={"lr": lr, "model": "cnn"})
        for step in range(12):
            client.log_metric(run.run_id, "loss", 1 / (step + 1) + lr, step=step)
        client.log_metric(run.run_id, "acc", 0.9 - lr)
        client.log_metric(run.run_id, "same", 1.0)
        client.set_terminated(run.run_id)
        ids.append(run.run_id)
    client.flush()
    return ids


def header(result: Result) -> str:
    return result.output.splitlines()[0]


def test_list_shows_what_differs_the_experiment_and_dates() -> None:
    ids = two_runs()
    result = invoke("runs", "list")
    assert result.exit_code == 0, result.output
    head = header(result)
    assert "params.lr" in head and "Experiment" in head and "acc" in head and "loss" in head
    assert "params.model" not in head and "same" not in head  # the same in every run: no column
    assert "sweep-a" in result.output and "sweep-b" in result.output
    for run_id in ids:
        row = next(line for line in result.output.splitlines() if line.startswith(run_id))
        assert DATE.search(row), row
    assert " 0.01 " in result.output + " "


def test_search_shows_the_params_its_filter_names() -> None:
    two_runs()
    result = invoke("runs", "search", "--filter", "params.model = 'cnn'")
    assert result.exit_code == 0, result.output
    assert "params.model" in header(result) and "params.lr" in header(result)


def test_cached_pipeline_step_runs_are_hidden_unless_all() -> None:
    client = Client()
    exp = client.get_or_create_experiment("pipe")
    parent = client.create_run(exp, run_name="the-pipeline", tags={"modelyard.pipeline": "p"})
    steps = {
        cache: client.create_run(
            exp,
            run_name=f"step-{cache}",
            parent_run_id=parent.run_id,
            tags={"modelyard.step.id": "train", "modelyard.step.cache": cache},
        ).run_id
        for cache in ("hit", "miss", "off")
    }
    listed = invoke("runs", "list")
    assert listed.exit_code == 0, listed.output
    assert parent.run_id in listed.output and steps["hit"] not in listed.output  # an empty copy
    assert steps["miss"] in listed.output and steps["off"] in listed.output  # steps that ran
    everything = invoke("runs", "list", "--all")
    assert all(run_id in everything.output for run_id in steps.values())


def test_piped_output_keeps_ids_whole_and_every_column() -> None:
    ids = two_runs()
    result = invoke("runs", "list", columns=40)  # CliRunner's output is no terminal
    assert result.exit_code == 0, result.output
    for run_id in ids:
        assert run_id in result.output
    assert "params.lr" in header(result) and "Started" in header(result)


def test_compare_puts_runs_side_by_side_and_marks_differences() -> None:
    first, second = two_runs()
    result = invoke("runs", "compare", first, second)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    lr = next(line for line in lines if "params.lr" in line)
    model = next(line for line in lines if "params.model" in line)
    assert lr.lstrip().startswith("*") and "0.1" in lr and "0.01" in lr
    assert not model.lstrip().startswith("*") and model.count("cnn") == 2
    assert first in result.output and second in result.output
    only = invoke("runs", "compare", first, second, "--diff-only")
    assert "params.model" not in only.output and "params.lr" in only.output
    data = json.loads(invoke("runs", "compare", first, second, "--json").output)
    assert data["params"]["lr"] == ["0.1", "0.01"]
    assert data["differ"] == {"params": ["lr"], "metrics": ["acc", "loss"]}
    alone = invoke("runs", "compare", first)
    assert alone.exit_code == 1 and "at least two runs" in alone.output and "Traceback" not in alone.output


def test_metric_prints_the_history_with_a_chart() -> None:
    first, _ = two_runs()
    result = invoke("runs", "metric", first, "loss")
    assert result.exit_code == 0, result.output
    assert "12 (steps 0 to 11)" in result.output and "Min" in result.output
    assert "┤" in result.output and "└" in result.output  # plotext's axes
    assert "\x1b[" not in result.output  # no colour codes when piped
    points = json.loads(invoke("runs", "metric", first, "loss", "--json").output)
    assert points["steps"] == list(range(12))
    missing = invoke("runs", "metric", first, "nope")
    assert missing.exit_code == 1 and "has no metric 'nope'" in missing.output and "acc" in missing.output
    assert "Traceback" not in missing.output


def test_every_new_command_has_help_with_an_example() -> None:
    for command in ("compare", "metric"):
        result = invoke("runs", command, "--help")
        assert result.exit_code == 0 and "Example:" in result.output
