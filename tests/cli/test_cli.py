"""The `modelyard` command line, driven through click's CliRunner against a real store in a temporary home."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np
import pytest
from click.testing import CliRunner, Result

import modelyard
from modelyard.cli.common import fmt_duration
from modelyard.cli.gc import parse_age
from modelyard.cli.main import cli
from modelyard.errors import NotFound
from modelyard.schemas import Run
from modelyard.store.sql.tables import SCHEMA_VERSION
from modelyard.tracking.client import Client

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def _isolate(mp: pytest.MonkeyPatch, home: Path) -> None:
    mp.setenv("MODELYARD_HOME", str(home))
    for var in ("MODELYARD_TRACKING_URI", "MODELYARD_ARTIFACT_URI", "MODELYARD_EXPERIMENT_NAME"):
        mp.delenv(var, raising=False)
    mp.setenv("COLUMNS", "200")  # wide enough that tables show every column


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    _isolate(monkeypatch, tmp_path / "home")
    return tmp_path / "home"


def client_for(home: Path) -> Client:
    return Client(f"sqlite:///{home / 'modelyard.db'}")


def quickstart_runs(home: Path) -> list[Run]:
    """The quickstart's training runs, best first, read through the SDK."""
    runs = client_for(home).search_runs(
        "quickstart", "tags.quickstart = 'true'", order_by=["metrics.accuracy DESC"]
    )
    assert isinstance(runs, list)
    return runs


def run(*args: str, code: int = 0, input: str | None = None) -> Result:
    result = CliRunner().invoke(cli, list(args), input=input)
    if result.exit_code != code:
        raise AssertionError(
            f"exit {result.exit_code} != {code} for {args}\n{result.output}"
        ) from result.exception
    return result


@pytest.fixture(scope="module")
def quickstart_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """One quickstart for the read-only tests of this module: (home, what it printed)."""
    home = tmp_path_factory.mktemp("quickstart") / "home"
    with pytest.MonkeyPatch.context() as mp:
        _isolate(mp, home)
        result = run("quickstart")
    yield home, result.stdout


@pytest.fixture
def qs(quickstart_home: tuple[Path, str], monkeypatch: pytest.MonkeyPatch) -> tuple[Path, str]:
    _isolate(monkeypatch, quickstart_home[0])
    return quickstart_home


# -- quickstart --------------------------------------------------------------------------------------------


def test_quickstart_tracks_runs_with_metrics_artifacts_and_datasets(qs: tuple[Path, str]) -> None:
    home, printed = qs
    client = client_for(home)
    runs = quickstart_runs(home)
    assert len(runs) == 4
    for r in runs:
        assert r.info.status.value == "FINISHED"
        assert {"lr", "alpha", "epochs", "model"} <= r.data.params.keys()
        assert {"accuracy", "f1", "train_loss", "val_accuracy"} <= r.data.metrics.keys()
        assert 0.8 < r.data.metrics["accuracy"] <= 1.0
        history = client.get_metric_history(r.run_id, "val_accuracy")
        assert history.steps == list(range(1, 16))
        assert len(client.get_metric_history(r.run_id, "train_loss")) == 15

        contexts = {i.context: i.dataset for i in r.inputs}
        assert contexts.keys() == {"training", "validation"}
        assert contexts["training"].num_rows == 1347 and contexts["validation"].num_rows == 450
        assert contexts["training"].source == "sklearn.datasets.load_digits"

        root = Path(client.download_artifacts(r.run_id, "", home / "dl" / r.run_id))
        assert (root / "confusion_matrix.png").read_bytes().startswith(PNG_MAGIC)
        assert {"model.yaml", "input_example.json"} <= {p.name for p in (root / "model").iterdir()}
        predictor = modelyard.load_predictor(f"runs:/{r.run_id}/model")
        assert predictor.predict(np.zeros((1, 64))).shape == (1,)

    # the printed table lists the runs best first, and the hints name the best run
    positions = [printed.index(r.run_id) for r in runs]
    assert positions == sorted(positions)
    assert f"modelyard runs show {runs[0].run_id}" in printed
    assert 'modelyard runs search --experiment quickstart --filter "metrics.accuracy > 0.9"' in printed
    assert str(home / "modelyard.db") in printed
    assert runs[0].info.artifact_uri in printed


def test_quickstart_releases_the_best_model_through_its_gate(qs: tuple[Path, str]) -> None:
    """The best run's model is registered, passes the gate into Production, is the champion, and its lineage
    (run, params, datasets) is printed."""
    home, printed = qs
    best = quickstart_runs(home)[0]
    registry = modelyard.RegistryClient(f"sqlite:///{home / 'modelyard.db'}")
    production = registry.get_latest_versions("quickstart-digits", ["Production"])
    assert [(v.run_id, v.aliases) for v in production] == [(best.run_id, ["champion"])]
    assert [r.rule for r in registry.get_gates("quickstart-digits").rules] == [
        "metrics.accuracy >= 0.9", "metrics.accuracy >= champion",
    ]  # fmt: skip
    assert "gate metrics.accuracy >= 0.9" in printed and "models:/quickstart-digits@champion" in printed
    assert (
        f"produced_by: run {best.info.run_name}" in printed
        and "input:training: dataset digits-train" in printed
    )
    assert "modelyard models show quickstart-digits" in printed


def test_quickstart_serves_the_champion_and_sends_it_traffic(qs: tuple[Path, str]) -> None:
    """`modelyard serve` ran on the champion: every request answered, mostly right, in batches."""
    import re

    printed = " ".join(qs[1].split())  # the console folds long lines
    assert "Served models:/quickstart-digits@champion with modelyard serve" in printed
    answered = re.search(r"400 requests from 8 clients: all answered, ([\d.]+)% correct", printed)
    assert answered is not None and float(answered.group(1)) > 90
    batched = re.search(r"batched into (\d+) model calls", printed)
    assert batched is not None and 1 <= int(batched.group(1)) <= 400
    assert "modelyard serve models:/quickstart-digits@champion" in printed  # the hint


def test_quickstart_is_a_pipeline_whose_second_run_comes_from_the_cache(qs: tuple[Path, str]) -> None:
    home, printed = qs
    client = client_for(home)
    first = client.search_runs("quickstart", "tags.`modelyard.pipeline` = 'quickstart'")
    assert isinstance(first, list) and len(first) == 1
    steps = client.search_runs("quickstart", f"attributes.parent_run_id = '{first[0].run_id}'")
    assert isinstance(steps, list)
    assert sorted(r.info.run_name for r in steps) == sorted(
        ["load_data", "validate", "split", "pick_best", "register", "promote"]
        + [f"train[{i}]" for i in range(4)]
    )
    assert {r.run_id for r in quickstart_runs(home)} == {
        r.run_id for r in steps if r.info.run_name.startswith("train")
    }
    assert "Run it again: all 10 steps will come from the cache." in printed

    again = run("quickstart").stdout
    assert "10 of 10 steps came from the cache" in again
    assert f"modelyard runs show {quickstart_runs(home)[0].run_id}" in again  # the run that trained it


def test_quickstart_honours_the_global_tracking_uri(qs: tuple[Path, str], tmp_path: Path) -> None:
    import modelyard

    home, _ = qs
    other = f"sqlite:///{tmp_path / 'other.db'}"
    before = len(quickstart_runs(home))
    printed = run("--tracking-uri", other, "quickstart", "--experiment", "elsewhere", "--no-plot").stdout
    runs = Client(other).search_runs("elsewhere", "tags.quickstart = 'true'")
    assert isinstance(runs, list) and len(runs) == 4
    assert all(r.info.artifact_uri.startswith((home / "artifacts").as_uri()) for r in runs)
    assert not any(f.path == "confusion_matrix.png" for f in Client(other).list_artifacts(runs[0].run_id))
    assert "--experiment elsewhere" in printed and str(tmp_path / "other.db") in printed
    assert len(quickstart_runs(home)) == before  # nothing went to the default store
    assert client_for(home).get_experiment_by_name("elsewhere") is None
    assert modelyard.get_tracking_uri() == f"sqlite:///{home / 'modelyard.db'}"  # the fluent API is restored


# -- experiments -------------------------------------------------------------------------------------------


def experiments_json(*flags: str) -> dict[str, dict[str, object]]:
    return {e["name"]: e for e in json.loads(run("experiments", "list", "--json", *flags).stdout)}


def test_experiments_create_list_rename_delete_restore(home: Path, tmp_path: Path) -> None:
    location = (tmp_path / "elsewhere").as_uri()
    created = run("experiments", "create", "churn", "--tag", "team=growth", "--artifact-location", location)
    assert "Created experiment churn" in created.stdout

    listed = experiments_json()
    assert listed["churn"]["tags"] == {"team": "growth"}
    assert listed["churn"]["artifact_location"] == location
    exp_id = str(listed["churn"]["experiment_id"])
    assert "churn" in run("experiments", "list").stdout

    run("experiments", "rename", "churn", "churn-2024")
    assert "churn-2024" in experiments_json() and "churn" not in experiments_json()

    run("experiments", "delete", exp_id)
    assert "churn-2024" not in experiments_json()
    assert experiments_json("--deleted")["churn-2024"]["lifecycle_stage"] == "deleted"
    assert "deleted" in run("experiments", "list", "--all").stdout

    run("experiments", "restore", "churn-2024")
    assert experiments_json()["churn-2024"]["lifecycle_stage"] == "active"
    assert client_for(home).get_experiment(exp_id).name == "churn-2024"

    dup = run("experiments", "create", "churn-2024", code=1)
    assert dup.stderr.startswith("Error: ") and "already exists" in dup.stderr
    bad_tag = run("experiments", "create", "x", "--tag", "novalue", code=1)
    assert "Error: Invalid value for --tag" in bad_tag.stderr
    missing = run("experiments", "delete", "no-such-experiment", code=1)
    assert "Error: No experiment with id or name 'no-such-experiment'" in missing.stderr


def test_global_tracking_uri_option_picks_the_store(home: Path, tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path / 'other.db'}"
    run("--tracking-uri", other, "experiments", "create", "elsewhere")
    assert Client(other).get_experiment_by_name("elsewhere") is not None
    assert client_for(home).get_experiment_by_name("elsewhere") is None


# -- runs --------------------------------------------------------------------------------------------------


def test_runs_list_and_show(qs: tuple[Path, str]) -> None:
    home, _ = qs
    every = json.loads(run("runs", "list", "--experiment", "quickstart", "--json").stdout)
    listed = [r for r in every if r["data"]["tags"].get("quickstart") == "true"]  # the training steps
    assert len(listed) == 4 and len(every) > 4  # with the pipeline run and its other steps
    ids = {r["info"]["run_id"] for r in listed}

    table = run("runs", "list", "-e", "quickstart").stdout
    for header in ("Run ID", "Name", "Status", "Started", "Duration", "accuracy"):
        assert header in table
    assert all(run_id in table for run_id in ids) and "FINISHED" in table
    assert len(json.loads(run("runs", "list", "-n", "2", "--json").stdout)) == 2

    run_id = listed[0]["info"]["run_id"]
    shown = json.loads(run("runs", "show", run_id, "--json").stdout)
    assert shown["info"]["run_id"] == run_id
    assert shown["data"]["params"]["epochs"] == "15"
    assert {i["context"] for i in shown["inputs"]} == {"training", "validation"}
    assert shown == client_for(home).get_run(run_id).model_dump(mode="json", by_alias=True)

    text = run("runs", "show", run_id).stdout
    for expected in ("Params", "Metrics", "Datasets", "Tags", "digits-train", "validation", "val_accuracy"):
        assert expected in text
    assert shown["info"]["artifact_uri"] in text


def test_runs_search_filter_order_and_pages(qs: tuple[Path, str]) -> None:
    home, _ = qs
    accuracies = sorted(r.data.metrics["accuracy"] for r in quickstart_runs(home))
    threshold = (accuracies[1] + accuracies[2]) / 2
    args = ["runs", "search", "-e", "quickstart", "--filter", f"metrics.accuracy > {threshold}"]
    page = json.loads(run(*args, "--order-by", "metrics.accuracy ASC", "--json").stdout)
    found = [r["data"]["metrics"]["accuracy"] for r in page["runs"]]
    assert found == accuracies[2:] and page["next_page_token"] is None

    by_alpha = json.loads(run("runs", "search", "-f", "params.alpha = '0.05'", "--json").stdout)["runs"]
    assert [r["data"]["params"]["alpha"] for r in by_alpha] == ["0.05"]

    trained = ["-f", "tags.quickstart = 'true'"]
    first = json.loads(run("runs", "search", "-e", "quickstart", *trained, "-n", "3", "--json").stdout)
    assert len(first["runs"]) == 3 and first["next_page_token"]
    rest = json.loads(
        run(
            "runs",
            "search",
            "-e",
            "quickstart",
            *trained,
            "-n",
            "3",
            "--page-token",
            first["next_page_token"],
            "--json",
        ).stdout
    )
    seen = [r["info"]["run_id"] for r in first["runs"] + rest["runs"]]
    assert len(seen) == len(set(seen)) == 4 and rest["next_page_token"] is None

    by_f1 = ["runs", "search", "-e", "quickstart", *trained, "-o", "metrics.f1 DESC"]
    table = run(*by_f1, "-n", "3").stdout
    token = next(line for line in table.splitlines() if line.startswith("Next page token: ")).split()[-1]
    assert len(json.loads(run(*by_f1, "--page-token", token, "--json").stdout)["runs"]) == 1
    assert "f1" in table.splitlines()[0]


def test_malformed_filter_points_at_the_position(home: Path) -> None:
    result = run("runs", "search", "--filter", "metrics.acc >> 0.9", code=1)
    assert result.stderr.startswith("Error: Invalid filter at position 13:")
    lines = result.stderr.splitlines()
    caret = next(line for line in lines if line.strip() == "^")
    assert caret.index("^") == lines[lines.index(caret) - 1].index(">>") + 1
    assert "Traceback" not in result.output and result.stdout == ""

    bad_order = run("runs", "search", "--order-by", "accuracy DESC", code=1)
    assert "Error: Invalid order_by at position 0" in bad_order.stderr


def test_unknown_or_malformed_run_id_is_a_clean_error(home: Path) -> None:
    unknown = "0123456789abcdef0123456789abcdef"
    for args in (["runs", "show", unknown], ["artifacts", "list", unknown], ["runs", "delete", unknown]):
        result = run(*args, code=1)
        assert result.stderr.startswith("Error: ") and unknown in result.stderr
        assert "Traceback" not in result.output
    assert run("runs", "show", "not-an-id", code=1).stderr.startswith("Error: ")


def test_unexpected_errors_keep_their_traceback(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(self: Client, run_id: str) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(Client, "get_run", boom)
    result = CliRunner().invoke(cli, ["runs", "show", "0" * 32])
    assert result.exit_code == 1 and isinstance(result.exception, RuntimeError)


# -- artifacts ---------------------------------------------------------------------------------------------


def test_artifacts_list_and_download(qs: tuple[Path, str], tmp_path: Path) -> None:
    home, _ = qs
    run_id = quickstart_runs(home)[0].run_id
    top = {f["path"]: f for f in json.loads(run("artifacts", "list", run_id, "--json").stdout)}
    assert top["model"]["is_dir"]
    assert top["confusion_matrix.png"]["file_size"] > 1000
    assert "confusion_matrix.png" in run("artifacts", "list", run_id).stdout
    recursive = [f["path"] for f in json.loads(run("artifacts", "list", run_id, "-r", "--json").stdout)]
    assert "model/model.yaml" in recursive and "model/requirements.txt" in recursive
    pipeline_run = quickstart_runs(home)[0].info.parent_run_id
    environment = json.loads(run("artifacts", "list", str(pipeline_run), "-r", "--json").stdout)
    assert "_modelyard/requirements.txt" in [
        f["path"] for f in environment
    ]  # the packages the steps ran with
    assert "model/model.yaml" in [
        f["path"] for f in json.loads(run("artifacts", "list", run_id, "model", "--json").stdout)
    ]

    dest = tmp_path / "out"
    printed = run("artifacts", "download", run_id, "confusion_matrix.png", "--dest", str(dest)).stdout.strip()
    assert Path(printed) == (dest / "confusion_matrix.png").resolve()
    assert Path(printed).read_bytes().startswith(PNG_MAGIC)
    folder = Path(run("artifacts", "download", run_id, "model", "-d", str(dest)).stdout.strip())
    assert (folder / "model.yaml").is_file()
    everything = Path(run("artifacts", "download", run_id).stdout.strip())
    assert (everything / "model" / "model.yaml").is_file() and (everything / "confusion_matrix.png").is_file()

    missing = run("artifacts", "download", run_id, "nope.txt", "--dest", str(dest), code=1)
    assert missing.stderr.startswith("Error: No artifact 'nope.txt'")
    escape = run("artifacts", "list", run_id, "../other", code=1)
    assert "Error: " in escape.stderr and "'..'" in escape.stderr


# -- runs delete / restore and gc --------------------------------------------------------------------------


def _run_with_artifact(client: Client, experiment_id: str, name: str, tmp: Path) -> tuple[str, Path]:
    created = client.create_run(experiment_id, run_name=name)
    file = tmp / f"{name}.txt"
    file.write_text(name)
    client.log_artifact(created.run_id, file)
    client.set_terminated(created.run_id)
    local = Path(created.info.artifact_uri.removeprefix("file://"))
    assert (local / file.name).is_file()
    return created.run_id, local


def test_runs_delete_restore_and_gc_purges_with_artifacts(home: Path, tmp_path: Path) -> None:
    client = client_for(home)
    keep_exp = client.create_experiment("keep")
    gone_exp = client.create_experiment("gone")
    kept, kept_dir = _run_with_artifact(client, keep_exp, "kept", tmp_path)
    doomed, doomed_dir = _run_with_artifact(client, keep_exp, "doomed", tmp_path)
    restored, _ = _run_with_artifact(client, keep_exp, "restored", tmp_path)
    inner, inner_dir = _run_with_artifact(client, gone_exp, "inner", tmp_path)

    assert "Deleted run" in run("runs", "delete", doomed, restored).stdout
    deleted = {r["info"]["run_id"] for r in json.loads(run("runs", "list", "--deleted", "--json").stdout)}
    assert deleted == {doomed, restored}
    run("runs", "restore", restored)
    run("experiments", "delete", "gone")

    dry = run("gc", "--dry-run")
    assert doomed in dry.stdout and "gone" in dry.stdout and "Nothing was deleted" in dry.stdout
    assert restored not in dry.stdout and kept not in dry.stdout
    assert client.get_run(doomed).info.lifecycle_stage.value == "deleted" and doomed_dir.is_dir()

    assert "Nothing to purge" in run("gc", "--older-than", "1h", "--yes").stdout
    declined = run("gc", input="n\n", code=1)
    assert "Permanently delete 1 run and 1 experiment (with their 1 run)" in declined.stderr
    assert doomed_dir.is_dir() and client.get_run(doomed)

    purged = run("gc", "--yes")
    assert "Purged 1 run and 1 experiment" in purged.stdout
    for run_id in (doomed, inner):
        with pytest.raises(NotFound):
            client.get_run(run_id)
    assert not doomed_dir.exists() and not inner_dir.exists()
    assert client.get_experiment_by_name("gone") is None
    assert kept_dir.is_dir() and client.get_run(restored).info.lifecycle_stage.value == "active"
    assert "Nothing to purge" in run("gc", "--yes").stdout

    bad = run("gc", "--older-than", "7 fortnights", code=1)
    assert bad.stderr.startswith("Error: Invalid value for --older-than")


@pytest.mark.parametrize(
    ("text", "ms"),
    [("30s", 30_000), ("30m", 1_800_000), ("12h", 43_200_000), ("7d", 604_800_000), ("1.5h", 5_400_000)],
)
def test_parse_age(text: str, ms: int) -> None:
    assert parse_age(text) == ms


def test_parse_age_rejects_nonsense() -> None:
    with pytest.raises(click.BadParameter):
        parse_age("soon")


@pytest.mark.parametrize(
    ("ms", "text"),
    [
        (None, "-"),
        (850, "850ms"),
        (4_200, "4.2s"),
        (185_000, "3m 05s"),
        (7_380_000, "2h 03m"),
        (273_600_000, "3d 4h"),
    ],
)
def test_durations_read_like_people_write_them(ms: int | None, text: str) -> None:
    assert fmt_duration(ms) == text


# -- db ----------------------------------------------------------------------------------------------------


def test_db_current_and_upgrade_on_a_fresh_store(home: Path) -> None:
    before = run("db", "current").stdout
    assert "none" in before and SCHEMA_VERSION in before
    assert f"empty → {SCHEMA_VERSION}" in run("db", "upgrade").stdout
    assert "up to date" in run("db", "current").stdout
    assert "already up to date" in run("db", "upgrade").stdout
    assert run("experiments", "list", "--json").exit_code == 0  # the migrated store is usable


def test_db_upgrade_migrates_an_old_schema(home: Path) -> None:
    from modelyard.store.sql.migrate import upgrade

    uri = f"sqlite:///{home / 'old.db'}"
    upgrade(uri, "0001")
    outdated = run("--tracking-uri", uri, "experiments", "list", code=1)
    assert "schema version 0001" in outdated.stderr and "modelyard db upgrade" in outdated.stderr
    assert "needs an upgrade" in run("db", "current", "--tracking-uri", uri).stdout
    assert f"0001 → {SCHEMA_VERSION}" in run("db", "upgrade", "--tracking-uri", uri).stdout
    run("--tracking-uri", uri, "experiments", "list")


def test_db_refuses_a_server_uri(home: Path) -> None:
    result = run("db", "current", "--tracking-uri", "http://localhost:5000", code=1)
    assert "tracking server" in result.stderr


def test_a_database_that_cannot_be_opened_is_one_line_and_left_as_it_was(home: Path) -> None:
    not_a_db = home.parent / "notes.db"
    not_a_db.write_text("not a database")
    unreachable = "postgresql+psycopg://nobody@127.0.0.1:1/x"  # nothing listens on port 1
    cases = [
        (f"sqlite:///{not_a_db}", "Cannot open the tracking database", "file is not a database"),
        (unreachable, "Cannot open the tracking database", "127.0.0.1"),
        (
            "sqlite:////proc/no-such-folder/x.db",
            "Cannot create the folder /proc/no-such-folder",
            "can write to",
        ),
    ]
    for uri, *expected in cases:
        for args in (["db", "current", "--tracking-uri", uri], ["db", "upgrade", "--tracking-uri", uri],
                     ["--tracking-uri", uri, "runs", "list"]):  # fmt: skip
            result = run(*args, code=1)
            assert all(text in result.stderr for text in expected), (args, result.output)
            assert "Traceback" not in result.output
    assert not_a_db.read_text() == "not a database"


# -- help and entry points ---------------------------------------------------------------------------------


def _walk(command: click.Command, path: tuple[str, ...] = ()) -> Iterator[tuple[str, ...]]:
    yield path
    if isinstance(command, click.Group):
        for name, sub in command.commands.items():
            yield from _walk(sub, (*path, name))


def test_every_command_has_help_with_an_example() -> None:
    paths = list(_walk(cli))
    assert len(paths) >= 20
    for path in paths:
        result = run(*path, "--help")
        assert result.stdout.startswith("Usage: "), path
        if path:
            assert "Example:" in result.stdout, f"{' '.join(path)} --help has no example"


def test_version() -> None:
    assert run("--version").stdout.startswith("modelyard 0.1.0")


def test_console_script_and_python_m(home: Path) -> None:
    script = Path(sys.executable).with_name("modelyard")
    result = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=30, check=True)
    assert "quickstart" in result.stdout and "experiments" in result.stdout
    module = subprocess.run(
        [sys.executable, "-m", "modelyard", "runs", "show", "f" * 32],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert module.returncode == 1 and module.stderr.startswith("Error: No run with id")
    assert "Traceback" not in module.stderr
