"""`modelyard models ...` and `modelyard runs reproduce` on the embedded store, as a user types them."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner, Result

import modelyard as my
from modelyard.cli.main import cli


def run(*args: str, code: int = 0, input: str | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), input=input)
    assert result.exit_code == code, result.output
    return result


@pytest.fixture
def runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Three finished runs with an accuracy, a param and a dataset, in the temp home's store."""
    monkeypatch.setenv("MODELYARD_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("MODELYARD_TRACKING_URI", raising=False)
    monkeypatch.setenv("COLUMNS", "250")
    monkeypatch.setenv("MODELYARD_USER", "ann")
    my.set_tracking_uri(None)
    ids = []
    for acc in (0.91, 0.95, 0.80):
        with my.start_run(experiment="churn", params={"lr": 0.1}) as active:
            my.log_metric("accuracy", acc)
            my.log_dataset(np.array([[1, 2], [3, 4]]), name="train", context="training")
            ids.append(active.run_id)
    return ids


def test_register_gate_promote_alias_and_lineage(runs: list[str]) -> None:
    for run_id in runs:
        run("models", "register", f"runs:/{run_id}/model", "churn", "--tag", "team=growth")
    listed = run("models", "list").stdout
    assert "churn" in listed and "v3" in listed
    run("models", "gates", "set", "churn", "metrics.accuracy >= 0.9", "metrics.accuracy >= champion on @champion",
        "approvals >= 1 on Production")  # fmt: skip
    assert "approvals >= 1 (on Production)" in run("models", "gates", "show", "churn").stdout

    refused = run("models", "promote", "churn", "3", "Staging", code=1)
    assert "`metrics.accuracy >= 0.9` failed" in refused.stderr and "0.8" in refused.stderr
    assert "Traceback" not in refused.output
    check = run("models", "gates", "check", "churn", "1", "Production", code=1).stdout
    assert "PASS" in check and "FAIL" in check and "approvals" in check
    run("models", "approve", "churn", "1")
    run("models", "promote", "churn", "1", "production", "--comment", "first")
    run("models", "alias", "set", "churn", "champion", "1")
    assert "needs >= 0.95" not in run("models", "alias", "set", "churn", "champion", "2").stderr
    refused = run("models", "alias", "set", "churn", "champion", "1", code=1)
    assert "needs >= 0.95" in refused.stderr
    run("models", "approve", "churn", "2", "--user", "bob")
    run("models", "promote", "churn", "2", "Production", "--archive-existing")

    shown = run("models", "show", "churn").stdout
    assert "Production" in shown and "Archived" in shown and "champion" in shown and "team=growth" in shown
    history = json.loads(run("models", "history", "churn", "--json").stdout)
    assert [(h["version"], h["to_stage"], h["user"]) for h in history] == [
        (1, "Production", "ann"), (2, "Production", "ann"), (1, "Archived", "ann"),
    ]  # fmt: skip
    assert "model_alias.moved" in run("models", "events", "churn").stdout

    tree = run("models", "lineage", "models:/churn/Production").stdout
    assert "churn version 2" in tree and runs[1] in tree and "lr" in tree and "dataset train" in tree
    graph = json.loads(run("models", "lineage", "models:/churn@champion", "--json").stdout)
    kinds = {n["kind"] for n in graph["nodes"]}
    assert {"model_version", "run", "params", "dataset"} <= kinds

    recipe = run("runs", "reproduce", runs[1]).stdout
    assert "lr" in recipe and "Run:" in recipe and "digest" in recipe
    assert json.loads(run("runs", "reproduce", runs[1], "--json").stdout)["params"] == {"lr": "0.1"}


def test_show_gives_key_metrics_and_a_short_rollout_history(runs: list[str]) -> None:
    from modelyard.registry.client import RegistryClient

    for run_id in runs[:2]:
        run("models", "register", f"runs:/{run_id}/model", "churn")
    registry = RegistryClient()
    steps = {  # what `modelyard rollout` records on the candidate (serving/rollout.py)
        "rollout.state": "promoted to Production; version 1 drained",
        "rollout.step.0": "10%: 30 s, 1,234 requests, errors 0%, p99 12.3 ms -> next",
        "rollout.step.1": "100%: 30 s, 9,876 requests, errors 0%, p99 11.0 ms -> done",
    }
    for key, value in steps.items():
        registry.set_model_version_tag("churn", 2, key, value)
    shown = run("models", "show", "churn").stdout
    assert "rollout.step" not in shown and "p99" not in shown  # one short line per step, not the raw tags
    assert "promoted to Production" in shown
    assert "10%: 30 s, 1,234 requests, errors 0% -> next" in shown
    assert "100%: 30 s, 9,876 requests, errors 0% -> done" in shown
    assert "accuracy=0.91" in shown and "accuracy=0.95" in shown  # each version's metric, from its run
    assert re.search(r"\d{4}-\d\d-\d\d \d\d:\d\d \S+", shown)  # times with their date and zone


def test_deleting_needs_force_while_something_points_at_it(runs: list[str]) -> None:
    run("models", "register", f"runs:/{runs[0]}/model", "m")
    run("models", "alias", "set", "m", "champion", "1")
    refused = run("models", "delete", "m", "1", "--yes", code=1)
    assert "alias 'champion'" in refused.stderr and "--force" in refused.stderr
    run("models", "delete", "m", "1", "--force", "--yes")
    run("models", "delete", "m", "--yes")
    assert "No registered models" in run("models", "list").stderr


def test_bad_input_is_one_line_with_what_to_do(runs: list[str]) -> None:
    assert "No registered model named 'nope'" in run("models", "show", "nope", code=1).stderr
    assert "Unknown stage" in run("models", "promote", "nope", "1", "Live", code=1).stderr
    assert "Cannot read gate rule" in run("models", "gates", "set", "x", "accuracy big", code=1).stderr
    assert "models:/" in run("models", "lineage", "churn", code=1).stderr


def test_every_models_command_has_help() -> None:
    for args in (["models"], ["models", "list"], ["models", "show"], ["models", "register"], ["models", "promote"],
                 ["models", "approve"], ["models", "alias"], ["models", "alias", "set"], ["models", "alias", "delete"],
                 ["models", "gates"], ["models", "gates", "set"], ["models", "gates", "show"],
                 ["models", "gates", "check"], ["models", "history"], ["models", "events"], ["models", "delete"],
                 ["models", "lineage"], ["runs", "reproduce"]):  # fmt: skip
        assert "Example" in run(*args, "--help").stdout
