"""The model registry contract on SQLite and PostgreSQL, on the store directly and through the REST API:
versions, stages and their history, aliases, gates, deletion guards, events, search."""

from __future__ import annotations

import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.errors import AlreadyExists, GateFailed, InvalidArgument, InvalidState, NotFound
from modelyard.schemas import Metric
from modelyard.schemas.registry import GatePolicy, GateRule, Stage
from modelyard.store.model_registry import ModelRegistryStore
from modelyard.store.sql.model_registry import SqlModelRegistryStore
from modelyard.store.sql.store import SqlTrackingStore
from tests.store.conftest import served


@pytest.fixture
def tracking(store_uri: str, tmp_path: Path) -> Iterator[SqlTrackingStore]:
    store = SqlTrackingStore(store_uri, default_artifact_root=str(tmp_path / "artifacts"))
    yield store
    store.close()


@pytest.fixture(params=["direct", "rest"])
def registry(
    request: pytest.FixtureRequest, tracking: SqlTrackingStore, store_uri: str, tmp_path: Path
) -> Iterator[ModelRegistryStore]:
    if request.param == "direct":
        yield SqlModelRegistryStore(tracking)
        return
    from modelyard.store.rest_registry import RestModelRegistryStore

    with served(store_uri, str(tmp_path / "artifacts")) as client:
        store = RestModelRegistryStore("http://testserver", client=client)
        yield store
        store.close()


def _run(tracking: SqlTrackingStore, **metrics: float) -> str:
    run = tracking.create_run("0", params={"lr": "0.1"})
    tracking.log_batch(
        run.run_id, metrics=[Metric(key=k, value=v, step=0, timestamp=0) for k, v in metrics.items()]
    )
    return run.run_id


def test_registered_models(registry: ModelRegistryStore) -> None:
    made = registry.create_registered_model("churn", "predicts churn", {"team": "growth"})
    assert (made.name, made.description, made.tags) == ("churn", "predicts churn", {"team": "growth"})
    with pytest.raises(AlreadyExists, match="churn"):
        registry.create_registered_model("churn")
    for bad in ("", " churn", "a/b", "x" * 300, "-x"):
        with pytest.raises(InvalidArgument, match="Invalid model name"):
            registry.create_registered_model(bad)
    registry.create_registered_model("fraud")
    registry.set_registered_model_tag("fraud", "team", "risk")
    assert [m.name for m in registry.search_registered_models().registered_models] == ["churn", "fraud"]
    assert [m.name for m in registry.search_registered_models("tags.team = 'risk'").registered_models] == [
        "fraud"
    ]
    assert [m.name for m in registry.search_registered_models("name LIKE 'ch%'").registered_models] == [
        "churn"
    ]
    first = registry.search_registered_models(max_results=1)
    assert [m.name for m in first.registered_models] == ["churn"] and first.next_page_token
    second = registry.search_registered_models(max_results=1, page_token=first.next_page_token)
    assert [m.name for m in second.registered_models] == ["fraud"] and second.next_page_token is None
    with pytest.raises(InvalidArgument, match="Unknown field 'owner'"):
        registry.search_registered_models("owner = 'x'")
    assert registry.update_registered_model("fraud", "new words").description == "new words"
    registry.delete_registered_model_tag("fraud", "team")
    assert registry.get_registered_model("fraud").tags == {}
    with pytest.raises(NotFound, match="no tag"):
        registry.delete_registered_model_tag("fraud", "team")
    with pytest.raises(NotFound, match="No registered model named 'nope'"):
        registry.get_registered_model("nope")


def test_versions_tags_search_and_rename(registry: ModelRegistryStore, tracking: SqlTrackingStore) -> None:
    run_id = _run(tracking, accuracy=0.8)
    registry.create_registered_model("churn")
    v1 = registry.create_model_version("churn", f"runs:/{run_id}/model", run_id, "first", {"k": "v"},
                                       signature={"inputs": [{"name": "x", "type": "double"}]})  # fmt: skip
    v2 = registry.create_model_version("churn", "s3://bucket/model")
    assert (v1.version, v2.version) == (1, 2) and v1.run_id == run_id and v1.stage is Stage.NONE
    assert registry.get_model_version("churn", "1").signature == {"inputs": [{"name": "x", "type": "double"}]}
    # a run another server holds
    elsewhere = registry.create_model_version("churn", "runs:/x/model", "f" * 32)
    assert elsewhere.run_id == "f" * 32  # stored as given, as MLflow's registry stores it
    registry.delete_model_version("churn", elsewhere.version)
    with pytest.raises(NotFound, match="no version 9"):
        registry.get_model_version("churn", 9)
    with pytest.raises(InvalidArgument, match="whole numbers"):
        registry.get_model_version("churn", "one")
    registry.set_model_version_tag("churn", 2, "validated", "yes")
    assert registry.update_model_version("churn", 2, "second").description == "second"
    by_tag = registry.search_model_versions("name = 'churn' AND tags.validated = 'yes'").model_versions
    assert [mv.version for mv in by_tag] == [2]
    assert [mv.version for mv in registry.search_model_versions(f"run_id = '{run_id}'").model_versions] == [1]
    assert [mv.version for mv in registry.search_model_versions("name = 'churn'").model_versions] == [2, 1]
    assert [
        mv.version
        for mv in registry.search_model_versions("version IN (1, 2) AND name = 'churn'").model_versions
    ] == [2, 1]
    registry.delete_model_version_tag("churn", 2, "validated")
    renamed = registry.rename_registered_model("churn", "churn-v2")
    assert renamed.name == "churn-v2" and registry.get_model_version("churn-v2", 1).tags == {"k": "v"}
    with pytest.raises(NotFound):
        registry.get_registered_model("churn")


def test_search_filters_at_and_past_the_limits(registry: ModelRegistryStore) -> None:
    """Past a limit: InvalidArgument naming it (was a database error, a 503, or minutes of planning on
    PostgreSQL for many tag conditions); at the limits: answered on both databases."""
    registry.create_registered_model("churn", tags={"k": "v"})
    registry.create_model_version("churn", "s3://b/m", tags={"k": "v"})
    many = ", ".join(f"'n{i}'" for i in range(9_999))  # over the 64 KB of a URL: the REST client's GET can't
    direct = isinstance(registry, SqlModelRegistryStore)
    fine = [
        " AND ".join(f"name != 'x{i}'" for i in range(499)) + " AND name = 'churn'",
        " AND ".join(f"tags.k != 'x{i}'" for i in range(25)),
        *([f"name IN ({many}, 'churn')"] if direct else []),
    ]
    for flt in fine:
        assert [m.name for m in registry.search_registered_models(flt).registered_models] == ["churn"]
        assert [v.version for v in registry.search_model_versions(flt).model_versions] == [1]
    refused = [
        (" AND ".join(f"name != 'x{i}'" for i in range(1100)), "at most 500 conditions"),
        (" AND ".join(f"tags.k != 'x{i}'" for i in range(26)), "at most 25 conditions on tags"),
        *([(f"name IN ({many}, 'a', 'b')", "at most 10,000 values")] if direct else []),
    ]
    for flt, fragment in refused:
        for search in (registry.search_registered_models, registry.search_model_versions):
            with pytest.raises(InvalidArgument, match=fragment):
                search(flt)


def test_stages_history_and_archive_existing(registry: ModelRegistryStore) -> None:
    registry.create_registered_model("m")
    for _ in range(3):
        registry.create_model_version("m", "s3://b/m")
    registry.transition_stage("m", 1, "production", comment="first release", user="ann")
    registry.transition_stage("m", 2, Stage.STAGING)
    moved = registry.transition_stage("m", 2, "Production", archive_existing=True)
    assert moved.stage is Stage.PRODUCTION and registry.get_model_version("m", 1).stage is Stage.ARCHIVED
    assert {mv.version: mv.stage for mv in registry.get_latest_versions("m")} == {
        2: Stage.PRODUCTION, 1: Stage.ARCHIVED, 3: Stage.NONE,
    }  # fmt: skip
    assert [mv.version for mv in registry.get_latest_versions("m", ["Production"])] == [2]
    history = [(t.version, t.from_stage.value, t.to_stage.value) for t in registry.stage_history("m")]
    assert history == [
        (1, "None", "Production"),
        (2, "None", "Staging"),
        (2, "Staging", "Production"),
        (1, "Production", "Archived"),
    ]
    assert registry.stage_history("m", 1)[0].comment == "first release"
    with pytest.raises(InvalidArgument, match="Unknown stage 'Prod'"):
        registry.transition_stage("m", 3, "Prod")


def test_aliases_and_deletion_guards(registry: ModelRegistryStore) -> None:
    registry.create_registered_model("m")
    for _ in range(3):
        registry.create_model_version("m", "s3://b/m")
    registry.set_alias("m", "champion", 1)
    registry.set_alias("m", "challenger", 2)
    assert registry.set_alias("m", "champion", 2).aliases == ["challenger", "champion"]  # moved
    assert registry.get_version_by_alias("m", "champion").version == 2
    assert registry.get_registered_model("m").aliases == {"challenger": 2, "champion": 2}
    for bad in ("1", "v2", "latest", "has space", ""):
        with pytest.raises(InvalidArgument):
            registry.set_alias("m", bad, 1)
    with pytest.raises(InvalidState, match=r"alias 'challenger'.*--force"):
        registry.delete_model_version("m", 2)
    registry.transition_stage("m", 3, "Staging")
    with pytest.raises(InvalidState, match="stage Staging"):
        registry.delete_model_version("m", 3)
    with pytest.raises(InvalidState, match="Refusing to delete model"):
        registry.delete_registered_model("m")
    registry.delete_model_version("m", 1)  # nothing points at it
    registry.delete_model_version("m", 2, force=True)
    with pytest.raises(NotFound, match="no alias 'champion'"):
        registry.get_version_by_alias("m", "champion")
    registry.delete_model_version("m", 3, force=True)
    registry.delete_registered_model("m")
    with pytest.raises(NotFound):
        registry.get_registered_model("m")


def test_gates_refuse_with_the_rule_and_the_values(
    registry: ModelRegistryStore, tracking: SqlTrackingStore
) -> None:
    registry.create_registered_model("m")
    good, better, worse = (_run(tracking, accuracy=a) for a in (0.91, 0.95, 0.85))
    for run_id in (good, better, worse):
        registry.create_model_version("m", f"runs:/{run_id}/model", run_id)
    with pytest.raises(InvalidArgument, match="Cannot read gate rule"):
        registry.set_gate_policy("m", GatePolicy(rules=[GateRule(rule="accuracy > 0.9")]))
    registry.set_gate_policy("m", GatePolicy(rules=[
        GateRule(rule="metrics.accuracy >= 0.9"),
        GateRule(rule="metrics.accuracy >= champion", on=["@champion"]),
        GateRule(rule="approvals >= 1", on=["Production"]),
    ]))  # fmt: skip
    assert registry.get_gate_policy("m").rules[0].rule == "metrics.accuracy >= 0.9"

    registry.set_alias("m", "champion", 1)  # no champion yet: nothing to beat
    with pytest.raises(
        GateFailed,
        match=r"`metrics.accuracy >= 0.9` failed: metrics.accuracy of version 3 is 0.85; needs >= 0.9",
    ):
        registry.transition_stage("m", 3, "Staging")
    registry.transition_stage("m", 2, "Staging")  # 0.95 passes; approvals only guard Production
    with pytest.raises(GateFailed, match=r"approvals of version 2 is 0; needs >= 1"):
        registry.transition_stage("m", 2, "Production")
    registry.set_model_version_tag("m", 2, "approval.ann", "lgtm")
    registry.transition_stage("m", 2, "Production")
    registry.set_alias("m", "champion", 2)  # 0.95 >= 0.91
    with pytest.raises(GateFailed, match="to @challenger"):  # the threshold guards every alias
        registry.set_alias("m", "challenger", 3)
    with pytest.raises(
        GateFailed, match=r"version 1 to @champion.*needs >= 0.95"
    ):  # the champion must be beaten
        registry.set_alias("m", "champion", 1)
    assert registry.get_version_by_alias("m", "champion").version == 2  # a refused move changes nothing
    checks = registry.check_gates("m", 1, "@champion")
    assert [c.passed for c in checks] == [True, False]
    assert "0.91; needs >= 0.95 (version 2, @champion)" in checks[1].detail
    registry.transition_stage("m", 3, "Archived")  # demotions are never gated


def test_events_record_every_change(registry: ModelRegistryStore) -> None:
    registry.create_registered_model("m")
    registry.create_model_version("m", "s3://b/m")
    registry.transition_stage("m", 1, "Staging")
    registry.set_alias("m", "champion", 1)
    registry.set_alias("m", "champion", 1)
    registry.delete_alias("m", "champion")
    events = registry.list_events("m")
    assert [e.type for e in events] == [
        "registered_model.created", "model_version.created", "model_version.stage_changed",
        "model_alias.set", "model_alias.moved", "model_alias.deleted",
    ]  # fmt: skip
    assert events[2].payload["to_stage"] == "Staging" and events[3].payload["alias"] == "champion"
    assert [e.type for e in registry.list_events("m", after_id=events[4].event_id)] == ["model_alias.deleted"]


def _register(uri: str, count: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    store = SqlModelRegistryStore.open(uri)
    try:
        out.put([store.create_model_version("race", "s3://b/m").version for _ in range(count)])
    finally:
        store.close()


def test_eight_parallel_registrations_get_unique_increasing_versions(
    tracking: SqlTrackingStore, store_uri: str
) -> None:
    SqlModelRegistryStore(tracking).create_registered_model("race")
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    procs = [ctx.Process(target=_register, args=(store_uri, 5, out)) for _ in range(8)]
    for p in procs:
        p.start()
    got = [out.get(timeout=120) for _ in procs]
    for p in procs:
        p.join(60)
    assert all(p.exitcode == 0 for p in procs)
    assert all(seq == sorted(seq) for seq in got)  # increasing within each process
    assert sorted(v for seq in got for v in seq) == list(range(1, 41))  # unique, no gaps
