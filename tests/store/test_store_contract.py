"""One contract suite for the tracking store, run on SQLite and on the real PostgreSQL."""

from __future__ import annotations

import math

import pytest

from modelyard.errors import AlreadyExists, Conflict, InvalidArgument, InvalidState, NotFound
from modelyard.schemas import BatchSequence, Dataset, DatasetInput, Metric, Param, RunStatus, RunTag, ViewType
from modelyard.store.sql.store import SqlTrackingStore


def m(key: str, value: float, step: int = 0, ts: int = 0) -> Metric:
    return Metric(key=key, value=value, step=step, timestamp=ts)


# experiments -------------------------------------------------------------------------------------------
def test_default_experiment_exists(store: SqlTrackingStore) -> None:
    exp = store.get_experiment("0")
    assert exp.name == "Default"
    assert exp.artifact_location.endswith("/0")


def test_create_get_experiment_with_tags(store: SqlTrackingStore) -> None:
    eid = store.create_experiment("vision", tags={"team": "cv"})
    exp = store.get_experiment(eid)
    assert (exp.name, exp.tags, exp.lifecycle_stage.value) == ("vision", {"team": "cv"}, "active")
    assert exp.artifact_location.endswith(f"/{eid}")
    assert store.get_experiment_by_name("vision") == exp
    assert store.get_experiment_by_name("nope") is None


def test_experiment_names_unique_among_active(store: SqlTrackingStore) -> None:
    eid = store.create_experiment("dup")
    with pytest.raises(AlreadyExists, match="dup"):
        store.create_experiment("dup")
    store.delete_experiment(eid)
    # a deleted experiment keeps its name reserved from restore's point of view, but a new one may take it
    other = store.create_experiment("dup")
    with pytest.raises(AlreadyExists):
        store.restore_experiment(eid)
    store.delete_experiment(other)
    store.purge_experiment(other)
    store.restore_experiment(eid)
    assert store.get_experiment(eid).lifecycle_stage.value == "active"


def test_delete_restore_experiment_takes_runs_along(store: SqlTrackingStore) -> None:
    eid = store.create_experiment("e")
    kept = store.create_run(eid)
    deleted_before = store.create_run(eid)
    store.delete_run(deleted_before.run_id)
    store.delete_experiment(eid)
    assert store.get_run(kept.run_id).info.lifecycle_stage.value == "deleted"
    with pytest.raises(InvalidState, match="deleted"):
        store.create_run(eid)
    store.restore_experiment(eid)
    assert store.get_run(kept.run_id).info.lifecycle_stage.value == "active"
    # a run deleted on its own before the experiment stays deleted
    assert store.get_run(deleted_before.run_id).info.lifecycle_stage.value == "deleted"


def test_purge_experiment_requires_delete_and_removes_runs(store: SqlTrackingStore) -> None:
    eid = store.create_experiment("gone")
    run = store.create_run(eid, params={"a": "1"})
    store.log_batch(run.run_id, metrics=[m("x", 1.0)])
    with pytest.raises(InvalidState, match="delete it before purging"):
        store.purge_experiment(eid)
    store.delete_experiment(eid)
    store.purge_experiment(eid)
    with pytest.raises(NotFound):
        store.get_experiment(eid)
    with pytest.raises(NotFound):
        store.get_run(run.run_id)


def test_search_and_rename_experiments(store: SqlTrackingStore) -> None:
    a = store.create_experiment("alpha")
    b = store.create_experiment("beta")
    store.delete_experiment(b)
    assert [e.name for e in store.search_experiments()] == ["Default", "alpha"]
    assert [e.name for e in store.search_experiments(ViewType.DELETED_ONLY)] == ["beta"]
    assert len(store.search_experiments(ViewType.ALL)) == 3
    assert [e.name for e in store.search_experiments(name_like="AL%")] == ["alpha"]
    store.rename_experiment(a, "gamma")
    assert store.get_experiment(a).name == "gamma"
    with pytest.raises(AlreadyExists):
        store.rename_experiment(a, "Default")
    store.set_experiment_tag(a, "k", "v1")
    store.set_experiment_tag(a, "k", "v2")
    assert store.get_experiment(a).tags == {"k": "v2"}
    store.set_experiment_tag(a, "team/owner", "ana")
    store.delete_experiment_tag(a, "team/owner")
    assert store.get_experiment(a).tags == {"k": "v2"}
    with pytest.raises(NotFound, match="no tag 'team/owner'"):
        store.delete_experiment_tag(a, "team/owner")
    with pytest.raises(NotFound, match="No experiment"):
        store.delete_experiment_tag("987654", "k")


@pytest.mark.parametrize("bad", ["", "x" * 300])
def test_invalid_experiment_names(store: SqlTrackingStore, bad: str) -> None:
    with pytest.raises(InvalidArgument):
        store.create_experiment(bad)


def test_invalid_experiment_id(store: SqlTrackingStore) -> None:
    with pytest.raises(InvalidArgument, match="integers"):
        store.get_experiment("abc")
    with pytest.raises(NotFound):
        store.get_experiment("424242")


# runs -------------------------------------------------------------------------------------------------
def test_create_and_get_run(store: SqlTrackingStore) -> None:
    eid = store.create_experiment("r")
    run = store.create_run(eid, run_name="first", params={"lr": "0.1"}, tags={"t": "1"}, description="d")
    got = store.get_run(run.run_id)
    assert got.info.run_name == "first"
    assert got.info.status == RunStatus.RUNNING
    assert got.info.description == "d"
    assert got.data.params == {"lr": "0.1"}
    assert got.data.tags == {"t": "1"}
    assert got.info.artifact_uri.endswith(f"/{eid}/{run.run_id}/artifacts")
    assert len(run.run_id) == 32


def test_generated_run_names(store: SqlTrackingStore) -> None:
    run = store.create_run("0")
    assert run.info.run_name.count("-") == 2


def test_update_run_status_sets_end_time(store: SqlTrackingStore) -> None:
    run = store.create_run("0")
    info = store.update_run(run.run_id, status=RunStatus.FAILED)
    assert info.status == RunStatus.FAILED and info.end_time is not None
    assert store.get_run(run.run_id).info.end_time == info.end_time
    with pytest.raises(InvalidArgument, match="RUNNING"):
        store.update_run(run.run_id, status="DONE")  # type: ignore[arg-type]


def test_nested_runs(store: SqlTrackingStore) -> None:
    parent = store.create_run("0")
    child = store.create_run("0", parent_run_id=parent.run_id)
    assert store.get_run(child.run_id).info.parent_run_id == parent.run_id
    with pytest.raises(NotFound):
        store.create_run("0", parent_run_id="f" * 32)


def test_delete_restore_purge_run(store: SqlTrackingStore) -> None:
    run = store.create_run("0")
    with pytest.raises(InvalidState):
        store.purge_run(run.run_id)
    store.delete_run(run.run_id)
    assert [r.run_id for r in store.deleted_runs()] == [run.run_id]
    with pytest.raises(InvalidState, match="restore it"):
        store.log_batch(run.run_id, metrics=[m("x", 1)])
    store.restore_run(run.run_id)
    store.log_batch(run.run_id, metrics=[m("x", 1)])
    store.delete_run(run.run_id)
    store.purge_run(run.run_id)
    with pytest.raises(NotFound):
        store.get_run(run.run_id)
    assert store.deleted_runs() == []


@pytest.mark.parametrize("bad", ["", "../etc", "a" * 100, "id with space"])
def test_invalid_run_ids(store: SqlTrackingStore, bad: str) -> None:
    with pytest.raises(InvalidArgument):
        store.get_run(bad)


# params, tags, metrics ----------------------------------------------------------------------------------
def test_params_are_immutable(store: SqlTrackingStore) -> None:
    run = store.create_run("0", params={"lr": "0.1"})
    store.log_batch(run.run_id, params=[Param(key="lr", value="0.1"), Param(key="bs", value="32")])
    with pytest.raises(Conflict) as err:
        store.log_batch(run.run_id, params=[Param(key="lr", value="0.2")])
    assert "'0.1'" in err.value.message and "'0.2'" in err.value.message
    with pytest.raises(Conflict, match="twice"):
        store.log_batch(run.run_id, params=[Param(key="x", value="1"), Param(key="x", value="2")])
    assert store.get_run(run.run_id).data.params == {"lr": "0.1", "bs": "32"}


def test_failed_batch_writes_nothing(store: SqlTrackingStore) -> None:
    run = store.create_run("0", params={"lr": "0.1"})
    with pytest.raises(Conflict):
        store.log_batch(
            run.run_id,
            metrics=[m("loss", 1.0)],
            params=[Param(key="lr", value="9")],
            tags=[RunTag(key="t", value="x")],
        )
    got = store.get_run(run.run_id)
    assert got.data.metrics == {} and got.data.tags == {}


def test_tags_are_mutable_and_deletable(store: SqlTrackingStore) -> None:
    run = store.create_run("0", tags={"a": "1"})
    store.log_batch(run.run_id, tags=[RunTag(key="a", value="2"), RunTag(key="b", value="3")])
    assert store.get_run(run.run_id).data.tags == {"a": "2", "b": "3"}
    store.delete_tag(run.run_id, "a")
    assert store.get_run(run.run_id).data.tags == {"b": "3"}
    with pytest.raises(NotFound):
        store.delete_tag(run.run_id, "a")


@pytest.mark.parametrize("key", ["", "../x", "/abs", "a" * 251, "tab\tkey", " padded"])
def test_invalid_keys(store: SqlTrackingStore, key: str) -> None:
    run = store.create_run("0")
    with pytest.raises(InvalidArgument):
        store.log_batch(run.run_id, metrics=[m(key, 1.0)])


def test_special_float_values_round_trip(store: SqlTrackingStore) -> None:
    run = store.create_run("0")
    values = [0.5, float("nan"), float("inf"), float("-inf"), -0.0, 1e-300, 1.7976931348623157e308]
    store.log_batch(run.run_id, metrics=[m("v", x, step=i) for i, x in enumerate(values)])
    hist = store.get_metric_history(run.run_id, "v")
    assert hist.steps == list(range(len(values)))
    for got, want in zip(hist.values, values):
        assert got == want or (math.isnan(got) and math.isnan(want))
    store.log_batch(run.run_id, metrics=[m("n", float("nan"))])
    assert math.isnan(store.get_run(run.run_id).data.metrics["n"])


def test_latest_metric_is_by_step_then_timestamp(store: SqlTrackingStore) -> None:
    run = store.create_run("0")
    store.log_batch(run.run_id, metrics=[m("loss", 3.0, step=5, ts=10), m("loss", 2.0, step=7, ts=5)])
    store.log_batch(run.run_id, metrics=[m("loss", 9.0, step=6, ts=99)])  # older step: latest unchanged
    assert store.get_run(run.run_id).data.metrics == {"loss": 2.0}
    store.log_batch(run.run_id, metrics=[m("loss", 1.0, step=7, ts=6)])  # same step, newer time
    assert store.get_run(run.run_id).data.metrics == {"loss": 1.0}
    hist = store.get_metric_history(run.run_id, "loss")
    assert hist.steps == [5, 6, 7, 7] and hist.values == [3.0, 9.0, 2.0, 1.0]


WRITER = "0123456789abcdef0123456789abcdef"


def test_a_numbered_batch_sent_again_is_stored_once(store: SqlTrackingStore) -> None:
    run = store.create_run("0")
    points = [m("x", float(i), step=i) for i in range(10)]
    store.log_batch(run.run_id, metrics=points[:6], sequence=BatchSequence(writer_id=WRITER, first_seq=1))
    store.log_batch(run.run_id, metrics=points[:6], sequence=BatchSequence(writer_id=WRITER, first_seq=1))
    # Overlapping the stored ones (a retry that grew): only the new points are stored.
    store.log_batch(run.run_id, metrics=points[4:], sequence=BatchSequence(writer_id=WRITER, first_seq=5))
    assert store.get_metric_history(run.run_id, "x").steps == list(range(10))
    # Another writer's numbers are its own; points without numbers are stored as sent.
    store.log_batch(run.run_id, metrics=points[:2], sequence=BatchSequence(writer_id="f" * 32, first_seq=1))
    store.log_batch(run.run_id, metrics=points[:1])
    assert store.get_metric_history(run.run_id, "x").steps == [0, 0, 0, 1, 1, 2, 3, 4, 5, 6, 7, 8, 9]


def test_one_numbered_batch_sent_concurrently_is_stored_once(store: SqlTrackingStore) -> None:
    import threading

    run = store.create_run("0")
    points = [m("x", float(i), step=i) for i in range(50)]
    start = threading.Barrier(4)

    def send() -> None:
        start.wait()
        store.log_batch(run.run_id, metrics=points, sequence=BatchSequence(writer_id=WRITER, first_seq=1))

    threads = [threading.Thread(target=send) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert store.get_metric_history(run.run_id, "x").steps == list(range(50))


def test_the_end_of_a_run_skips_points_it_already_has(store: SqlTrackingStore) -> None:
    run = store.create_run("0")
    points = [m("x", float(i), step=i) for i in range(4)]
    store.log_batch(run.run_id, metrics=points[:3], sequence=BatchSequence(writer_id=WRITER, first_seq=1))
    info = store.end_run(
        run.run_id,
        RunStatus.FINISHED,
        metrics=points[2:],
        sequence=BatchSequence(writer_id=WRITER, first_seq=3),
    )
    assert info.status == RunStatus.FINISHED
    assert store.get_metric_history(run.run_id, "x").steps == [0, 1, 2, 3]


def test_numbered_batches_for_missing_runs_are_refused(store: SqlTrackingStore) -> None:
    with pytest.raises(NotFound):
        store.log_batch(
            "a" * 32, metrics=[m("x", 1.0)], sequence=BatchSequence(writer_id=WRITER, first_seq=1)
        )


@pytest.mark.parametrize("count", [1, 255, 256, 777, 1000])
def test_batches_of_any_size_store_every_point_in_order(store: SqlTrackingStore, count: int) -> None:
    # Big batches go in as multi-row INSERTs of 256, 128, ..., 1 rows: every size and remainder must land.
    run = store.create_run("0")
    points = [m("loss" if i % 3 else "acc", i / 7, step=i, ts=1000 + i) for i in range(count)]
    points[count // 2] = m(points[count // 2].key, float("nan"), step=count // 2, ts=1000 + count // 2)
    store.log_batch(run.run_id, metrics=points)
    for key in ("loss", "acc"):
        want = [p for p in points if p.key == key]
        hist = store.get_metric_history(run.run_id, key)
        assert hist.steps == [p.step for p in want] and hist.timestamps == [p.timestamp for p in want]
        for got, p in zip(hist.values, want):
            assert got == p.value or (math.isnan(got) and math.isnan(p.value))
    latest = {x.key: x.step for x in store.get_latest_metrics(run.run_id)}
    assert latest == {k: max(p.step for p in points if p.key == k) for k in latest} and len(latest) == min(
        count, 2
    )


def test_latest_metric_tie_in_one_batch_is_the_last_point(store: SqlTrackingStore) -> None:
    run = store.create_run("0")
    store.log_batch(
        run.run_id, metrics=[m("x", 1.0, step=2, ts=5), m("x", 2.0, step=2, ts=5), m("x", 0.0, 1, 9)]
    )
    assert store.get_run(run.run_id).data.metrics == {"x": 2.0}


def test_metric_history_unknown(store: SqlTrackingStore) -> None:
    run = store.create_run("0")
    assert len(store.get_metric_history(run.run_id, "nope")) == 0
    with pytest.raises(NotFound):
        store.get_metric_history("a" * 32, "x")


def test_dataset_inputs(store: SqlTrackingStore) -> None:
    run = store.create_run("0")
    ds = Dataset(
        name="train",
        digest="abc123",
        source="file:///d.csv",
        source_type="file",
        schema={"x": "float64"},
        num_rows=10,
    )
    store.log_inputs(run.run_id, [DatasetInput(dataset=ds, context="training")])
    store.log_inputs(run.run_id, [DatasetInput(dataset=ds, context="training")])  # idempotent
    store.log_inputs(run.run_id, [DatasetInput(dataset=ds, context="validation")])
    inputs = store.get_run(run.run_id).inputs
    assert sorted(i.context or "" for i in inputs) == ["training", "validation"]
    assert inputs[0].dataset == ds


def test_latest_metrics_with_steps(store: SqlTrackingStore) -> None:
    run = store.create_run("0")
    store.log_batch(
        run.run_id, metrics=[m("b", 1.0, step=3, ts=5), m("b", 2.0, step=9, ts=1), m("a", float("inf"))]
    )
    latest = store.get_latest_metrics(run.run_id)
    assert [(x.key, x.value, x.step, x.timestamp) for x in latest] == [
        ("a", float("inf"), 0, 0),
        ("b", 2.0, 9, 1),
    ]


@pytest.mark.parametrize("bad", ["nul\x00byte", "lone\ud800surrogate"])
def test_text_the_database_cannot_store_is_refused(store: SqlTrackingStore, bad: str) -> None:
    with pytest.raises(InvalidArgument):
        store.create_experiment(bad)
    run = store.create_run("0")
    with pytest.raises(InvalidArgument):
        store.log_batch(run.run_id, params=[Param(key="p", value=bad)])
    with pytest.raises(InvalidArgument):
        store.log_batch(run.run_id, tags=[RunTag(key="t", value=bad)])
    with pytest.raises(InvalidArgument):
        store.create_run("0", run_name=bad)
    with pytest.raises(InvalidArgument):
        store.search_runs(["0"], f"params.p = '{bad}'")
    assert store.get_run(run.run_id).data.params == {}


def test_integers_beyond_64_bits_are_refused(store: SqlTrackingStore) -> None:
    run = store.create_run("0")
    with pytest.raises(InvalidArgument):
        store.get_experiment(str(2**64))
    with pytest.raises(InvalidArgument):
        store.log_batch(run.run_id, metrics=[m("x", 1.0, step=2**63)])
    with pytest.raises(InvalidArgument):
        store.deleted_runs(older_than=2**70)
    with pytest.raises(InvalidArgument):
        store.create_run("0", start_time=-(2**64))
