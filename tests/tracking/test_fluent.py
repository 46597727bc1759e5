"""The fluent API as a user writes it: `import modelyard as my; with my.start_run(...)`."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import modelyard as my
from modelyard.errors import InvalidState


def test_run_lifecycle_and_logging() -> None:
    with my.start_run(experiment="fluent", name="r1", params={"lr": 0.01}, tags={"team": "cv"}) as run:
        assert my.active_run() is run
        my.log_param("bs", 32)
        my.log_params({"opt": "adam"})
        my.set_tag("stage", "dev")
        my.set_tags({"a": 1})
        for i in range(5):
            my.log_metric("loss", 1.0 / (i + 1))
        my.log_metrics({"acc": 0.5, "f1": 0.4}, step=3)
    assert my.active_run() is None
    got = my.Client().get_run(run.run_id)
    assert got.info.status == my.RunStatus.FINISHED and got.info.end_time is not None
    assert got.info.run_name == "r1"
    assert got.data.params == {"lr": "0.01", "bs": "32", "opt": "adam"}
    assert {"team": "cv", "stage": "dev", "a": "1"}.items() <= got.data.tags.items()
    assert got.data.metrics == {"loss": 0.2, "acc": 0.5, "f1": 0.4}
    assert my.Client().get_metric_history(run.run_id, "loss").steps == [0, 1, 2, 3, 4]  # auto-incremented


def test_explicit_steps_continue_auto_increment() -> None:
    with my.start_run() as run:
        my.log_metric("x", 1, step=10)
        my.log_metric("x", 2)
        my.log_metric("y", 3)
    assert my.Client().get_metric_history(run.run_id, "x").steps == [10, 11]
    assert my.Client().get_metric_history(run.run_id, "y").steps == [0]


def test_failed_and_killed_status() -> None:
    with pytest.raises(ValueError), my.start_run() as failed:
        raise ValueError("boom")
    with pytest.raises(KeyboardInterrupt), my.start_run() as killed:
        raise KeyboardInterrupt
    client = my.Client()
    assert client.get_run(failed.run_id).info.status == my.RunStatus.FAILED
    assert client.get_run(killed.run_id).info.status == my.RunStatus.KILLED


def test_nested_runs() -> None:
    with my.start_run(experiment="nest") as parent:
        with my.start_run(name="child") as child:
            my.log_metric("m", 1)
        assert my.active_run() is parent
    client = my.Client()
    assert client.get_run(child.run_id).info.parent_run_id == parent.run_id
    assert client.get_run(child.run_id).data.metrics == {"m": 1.0}


def test_resume_run_by_id() -> None:
    with my.start_run() as first:
        my.log_param("p", 1)
    with my.start_run(run_id=first.run_id):
        my.log_metric("late", 2)
    got = my.Client().get_run(first.run_id)
    assert got.data.metrics == {"late": 2.0} and got.info.status == my.RunStatus.FINISHED


def test_logging_without_run_is_a_clear_error() -> None:
    with pytest.raises(InvalidState, match="start_run"):
        my.log_metric("x", 1)


def test_bad_metric_values_fail_at_the_call() -> None:
    with my.start_run(), pytest.raises(my.InvalidArgument, match="number"):
        my.log_metric("x", "not-a-number")


def test_a_metric_past_the_float_range_is_refused_and_infinities_are_kept() -> None:
    with my.start_run() as run:
        for huge in (10**400, -(10**400)):  # float() of either raises OverflowError
            with pytest.raises(my.InvalidArgument, match="past the float range"):
                my.log_metric("x", huge)
        my.log_metric("x", float("inf"))
        my.log_metric("x", float("nan"))
    values = my.Client().get_metric_history(run.run_id, "x").values
    assert values[0] == float("inf") and math.isnan(values[1]) and len(values) == 2


def test_numpy_values_and_steps() -> None:
    with my.start_run() as run:
        my.log_metric("x", np.float32(0.5), step=np.int64(3))
    assert my.Client().get_metric_history(run.run_id, "x").steps == [3]


def test_set_experiment_and_env(monkeypatch: pytest.MonkeyPatch) -> None:
    exp_id = my.set_experiment("chosen")
    with my.start_run() as run:
        pass
    assert run.info.experiment_id == exp_id
    monkeypatch.setenv("MODELYARD_EXPERIMENT_NAME", "from-env")
    import modelyard.tracking.fluent as fluent

    fluent._experiment_name = None
    with my.start_run() as run2:
        pass
    assert my.Client().get_experiment(run2.info.experiment_id).name == "from-env"


def test_start_run_takes_an_experiment_id_as_int_or_str() -> None:
    exp_id = my.Client().create_experiment("by-id")
    for given in (int(exp_id), exp_id):
        with my.start_run(experiment=given) as run:
            pass
        assert run.info.experiment_id == exp_id
    with pytest.raises(my.NotFound):
        my.start_run(experiment=987654)
    with pytest.raises(
        my.InvalidArgument, match=r"experiment must be an experiment name or id, not float 1\.5"
    ):
        my.start_run(experiment=1.5)  # type: ignore[arg-type]
    assert my.active_run() is None


def test_git_and_environment_capture(tmp_path: Path, modelyard_home: Path) -> None:
    """A script in a dirty git repository records commit, branch, dirty flag, diff and packages."""
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-c", "user.email=t@t", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q", "-b", "main"], cwd=repo, check=True)
    subprocess.run([*git, "remote", "add", "origin", "https://example.invalid/r.git"], cwd=repo, check=True)
    script = repo / "train.py"
    script.write_text(
        "import modelyard as my\nwith my.start_run(experiment='git') as r:\n    print(r.run_id)\n"
    )
    subprocess.run([*git, "add", "."], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "init"], cwd=repo, check=True)
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=repo, capture_output=True, text=True
    ).stdout.strip()
    script.write_text(script.read_text() + "# local change\n")
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        check=True,
        env={"MODELYARD_HOME": str(modelyard_home), "PATH": "/usr/bin:/bin"},
    )
    run_id = out.stdout.strip()
    client = my.Client()
    tags = client.get_run(run_id).data.tags
    assert tags["modelyard.source.git.commit"] == commit
    assert tags["modelyard.source.git.branch"] == "main"
    assert tags["modelyard.source.git.dirty"] == "true"
    assert tags["modelyard.source.git.repo_url"] == "https://example.invalid/r.git"
    assert tags["modelyard.source.name"] == str(script)
    assert tags["modelyard.python_version"].count(".") == 2
    assert tags["modelyard.host"] and tags["modelyard.user"]
    diff = (client.download_artifacts(run_id, "_modelyard/git.diff")).read_text()
    assert "+# local change" in diff
    packages = client.download_artifacts(run_id, "_modelyard/requirements.txt").read_text()
    assert "pydantic==" in packages.lower()


def test_script_exiting_with_open_run_stores_everything(modelyard_home: Path) -> None:
    code = (
        "import modelyard as my\nr = my.start_run(experiment='exit')\n"
        "for i in range(1000): my.log_metric('x', i)\nprint(r.run_id)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={"MODELYARD_HOME": str(modelyard_home), "PATH": "/usr/bin:/bin"},
    )
    client = my.Client()
    run = client.get_run(out.stdout.strip())
    assert run.info.status == my.RunStatus.FINISHED
    assert len(client.get_metric_history(run.run_id, "x")) == 1000


def test_search_runs_output_pandas() -> None:
    for lr in ("0.1", "0.01"):
        with my.start_run(experiment="s", params={"lr": lr}):
            my.log_metric("acc", float(lr) * 5)
    df = my.search_runs("s", "params.lr = '0.01'", output="pandas")
    assert list(df["params.lr"]) == ["0.01"] and list(df["metrics.acc"]) == [0.05]
    page = my.search_runs("s", order_by="metrics.acc DESC", max_results=1, output="page")
    assert page.runs[0].data.params["lr"] == "0.1" and page.next_page_token
    with pytest.raises(my.NotFound, match="no-such"):
        my.search_runs("no-such")


def test_import_is_lazy() -> None:
    code = "import sys, modelyard; print(any(m.startswith(('sqlalchemy', 'pydantic', 'numpy')) for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_resumed_run_continues_its_steps_in_a_new_client() -> None:
    with my.start_run() as first:
        for i in range(3):
            my.log_metric("loss", float(i))
    other = my.Client()  # e.g. a new process resuming the run
    other.log_metric(first.run_id, "loss", 9.0)
    other.log_metric(first.run_id, "fresh", 1.0)
    other.flush()
    assert other.get_metric_history(first.run_id, "loss").steps == [0, 1, 2, 3]
    assert other.get_metric_history(first.run_id, "fresh").steps == [0]
