"""Deployment records on the SQL store (SQLite and PostgreSQL): create, update with events in the same
transaction, filters, the versions a deployment ever served, the rules on traffic and state, and writers in
several processes appending to one deployment's history at once."""

from __future__ import annotations

import itertools
import multiprocessing
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelyard.errors import AlreadyExists, InvalidArgument, InvalidState, NotFound
from modelyard.schemas.deployments import DeploymentState, EventKind, TrafficRole
from modelyard.store.sql.deployments import SqlDeploymentStore
from modelyard.store.sql.model_registry import SqlModelRegistryStore
from modelyard.store.sql.store import SqlTrackingStore

URL = "http://10.0.0.5:8080"


def primary(version: int | None, percent: float = 100, name: str = "iris") -> dict[str, object]:
    return {"model_name": name, "version": version, "percent": percent, "role": "primary"}


def canary(version: int, percent: float, name: str = "iris") -> dict[str, object]:
    return {"model_name": name, "version": version, "percent": percent, "role": "canary"}


@pytest.fixture
def tracking(store_uri: str, tmp_path: Path) -> Iterator[SqlTrackingStore]:
    t = SqlTrackingStore(store_uri, default_artifact_root=(tmp_path / "artifacts").as_uri())
    registry = SqlModelRegistryStore(t)
    for name in ("iris", "churn"):
        registry.create_registered_model(name)
        for _ in range(3):
            registry.create_model_version(name, f"s3://bucket/{name}")
    yield t
    t.close()


@pytest.fixture
def store(tracking: SqlTrackingStore) -> SqlDeploymentStore:
    return SqlDeploymentStore(tracking)


def test_create_get_and_started_event(store: SqlDeploymentStore) -> None:
    made = store.create_deployment(
        "iris", URL, [primary(1)], info={"host": "10.0.0.5", "pid": 4242}, message="up", user="ann"
    )
    assert len(made.deployment_id) == 16 and made.state is DeploymentState.STARTING
    assert made.created_time == made.updated_time and made.created_by == "ann"
    got = store.get_deployment(made.deployment_id)
    assert got == made
    assert got.traffic[0].role is TrafficRole.PRIMARY and got.traffic[0].percent == 100.0
    assert got.info == {"host": "10.0.0.5", "pid": 4242}
    [event] = store.list_events(made.deployment_id)
    assert event.kind is EventKind.STARTED and event.message == "up" and event.user == "ann"
    assert event.state is DeploymentState.STARTING and event.traffic == got.traffic
    assert event.details == {"endpoint": URL, "target": "local"}


def test_client_chosen_id_is_kept_and_a_second_create_is_refused(store: SqlDeploymentStore) -> None:
    made = store.create_deployment("iris", URL, [primary(1)], deployment_id="iris-prod-1", target="kserve")
    assert made.deployment_id == "iris-prod-1" and made.target.value == "kserve"
    with pytest.raises(AlreadyExists, match="iris-prod-1"):
        store.create_deployment("iris", URL, [primary(1)], deployment_id="iris-prod-1")
    assert len(store.list_events("iris-prod-1")) == 1  # the refused create left nothing behind


def test_updates_append_one_event_each_with_the_snapshot(store: SqlDeploymentStore) -> None:
    d = store.create_deployment("iris", URL, [primary(1)], state="RUNNING")
    store.update_deployment(
        d.deployment_id, [primary(1, 90), canary(2, 10)], "ROLLING_OUT", "canary at 10%", details={"step": 1}
    )
    promoted = store.update_deployment(d.deployment_id, [primary(2)], "RUNNING", "v2 wins", kind="promoted")
    assert [t.version for t in promoted.traffic] == [2] and promoted.state is DeploymentState.RUNNING
    failed = store.update_deployment(d.deployment_id, state="FAILED", message="OOM")
    recovered = store.update_deployment(d.deployment_id, state="RUNNING")
    assert failed.state is DeploymentState.FAILED and recovered.state is DeploymentState.RUNNING
    store.update_deployment(d.deployment_id, kind="stopped", message="SIGTERM")

    events = store.list_events(d.deployment_id)
    assert [e.kind.value for e in events] == [
        "started",
        "traffic_changed",
        "promoted",
        "failed",
        "note",
        "stopped",
    ]
    assert [e.state.value for e in events] == [
        "RUNNING",
        "ROLLING_OUT",
        "RUNNING",
        "FAILED",
        "RUNNING",
        "STOPPED",
    ]
    assert [(t.version, t.percent) for t in events[1].traffic] == [(1, 90.0), (2, 10.0)]
    assert events[1].details == {"step": 1, "previous_state": "RUNNING"}
    assert events[4].message == "RUNNING (was FAILED)"  # a bare state change says what changed
    assert events[5].traffic == promoted.traffic  # the state change kept the traffic
    assert [e.event_id for e in events] == sorted(e.event_id for e in events)
    assert store.list_events(d.deployment_id, after_id=events[3].event_id) == events[4:]
    assert store.list_events(d.deployment_id, limit=2) == events[:2]
    final = store.get_deployment(d.deployment_id)
    assert final.state is DeploymentState.STOPPED and final.updated_time >= d.updated_time


def test_stopped_is_final_but_takes_notes(store: SqlDeploymentStore) -> None:
    d = store.create_deployment("iris", URL, [primary(1)])
    store.update_deployment(d.deployment_id, state="STOPPED")
    with pytest.raises(InvalidState, match="STOPPED"):
        store.update_deployment(d.deployment_id, state="RUNNING")
    with pytest.raises(InvalidState):
        store.update_deployment(d.deployment_id, traffic=[primary(2)])
    note = store.add_event(d.deployment_id, "note", "post-mortem written", {"doc": "https://wiki/x"})
    assert note.kind is EventKind.NOTE and note.state is DeploymentState.STOPPED
    assert store.list_events(d.deployment_id)[-1] == note


def test_heartbeats_set_the_time_without_events_and_silence_shows(store: SqlDeploymentStore) -> None:
    d = store.create_deployment("iris", URL, [primary(1)], "local", "RUNNING", {"heartbeat_s": 30}, now=1_000)
    assert d.heartbeat_time is None and d.silent_for(1_000 + 90_000) is None  # three beats may pass
    assert d.silent_for(1_000 + 91_000) == 91.0  # killed before its first heartbeat
    store.heartbeat(d.deployment_id, now=50_000)
    beating = store.get_deployment(d.deployment_id)
    assert beating.heartbeat_time == 50_000 and beating.updated_time == 1_000  # no change, no event
    assert [e.kind for e in store.list_events(d.deployment_id)] == [EventKind.STARTED]
    assert beating.silent_for(50_000 + 90_000) is None and beating.silent_for(50_000 + 120_000) == 120.0
    untimed = store.create_deployment("iris", URL, [primary(1)], "kserve", "RUNNING", now=1_000)
    assert untimed.silent_for(10**12) is None  # records without heartbeats are never silent
    store.update_deployment(d.deployment_id, state="STOPPED", now=60_000)
    assert store.get_deployment(d.deployment_id).silent_for(10**12) is None  # ended on purpose
    with pytest.raises(InvalidState, match="STOPPED"):
        store.heartbeat(d.deployment_id)
    with pytest.raises(NotFound, match="No deployment with id 'nope'"):
        store.heartbeat("nope")


def test_add_event_records_notes_promotions_and_rollbacks_only(store: SqlDeploymentStore) -> None:
    d = store.create_deployment("iris", URL, [primary(1)], state="RUNNING")
    rolled = store.add_event(
        d.deployment_id, "rolled_back", "error rate 4% > 1%", {"error_rate": 0.04}, "bot"
    )
    assert (
        rolled.kind is EventKind.ROLLED_BACK and rolled.user == "bot" and rolled.details["error_rate"] == 0.04
    )
    for kind in ("started", "traffic_changed", "stopped", "failed"):
        with pytest.raises(InvalidArgument, match="make the change with an update"):
            store.add_event(d.deployment_id, kind)
    with pytest.raises(InvalidArgument, match="Unknown deployment event kind 'exploded'"):
        store.add_event(d.deployment_id, "exploded")
    with pytest.raises(NotFound, match="No deployment with id 'nope'"):
        store.add_event("nope", "note")
    assert store.get_deployment(d.deployment_id).updated_time == rolled.time


@pytest.mark.parametrize(
    ("traffic", "message"),
    [
        ([primary(1, 90)], "must add up to 100%, got 90% (primary iris v1 90%)"),
        ([primary(1, 80), canary(2, 30)], "got 110%"),
        ([primary(1, 120)], "percent: Input should be less than or equal to 100"),
        ([primary(1, -5)], "percent: Input should be greater than or equal to 0"),
        ([canary(1, 100)], "has no primary"),
        ([], "at least one model"),
        ([primary(1, 50), canary(1, 50)], "listed twice"),
        ([{"model_name": "iris", "version": 1, "percent": 100, "role": "boss"}], "role"),
        ([{"model_name": "", "percent": 100}], "model_name"),
        ([{"model_name": "iris", "version": 0, "percent": 100}], "version"),
    ],
)
def test_bad_traffic_is_refused_with_what_to_fix(
    store: SqlDeploymentStore, traffic: list[dict[str, object]], message: str
) -> None:
    with pytest.raises(InvalidArgument, match=message.replace("(", r"\(").replace(")", r"\)")):
        store.create_deployment("iris", URL, traffic)
    assert store.list_deployments() == []


def test_shadows_are_not_counted_and_unregistered_models_have_no_version(store: SqlDeploymentStore) -> None:
    split = [
        primary(1, 95),
        canary(2, 5),
        {"model_name": "iris", "version": 3, "percent": 100, "role": "shadow"},
    ]
    d = store.create_deployment("iris", URL, split)
    assert [t.role.value for t in d.traffic] == ["primary", "canary", "shadow"]
    folder = store.create_deployment("my-model", URL, [{"model_name": "my-model", "percent": 100,
                                                        "model_uri": "/models/my-model"}])  # fmt: skip
    assert folder.traffic[0].version is None and folder.traffic[0].model_uri == "/models/my-model"
    assert [x.deployment_id for x in store.list_deployments(model_name="my-model")] == [folder.deployment_id]


def test_unknown_versions_and_other_bad_input(store: SqlDeploymentStore) -> None:
    with pytest.raises(NotFound, match="No version 9 of registered model 'iris'"):
        store.create_deployment("iris", URL, [primary(9)])
    d = store.create_deployment("iris", URL, [primary(1)])
    with pytest.raises(NotFound, match="No version 7 of registered model 'churn'"):
        store.update_deployment(d.deployment_id, [primary(1, 50), canary(7, 50, "churn")])
    with pytest.raises(InvalidArgument, match="endpoint"):
        store.create_deployment("iris", "ftp://host/x", [primary(1)])
    with pytest.raises(InvalidArgument, match="endpoint"):
        store.create_deployment("iris", "localhost:8080", [primary(1)])
    with pytest.raises(InvalidArgument, match="Unknown deployment state 'DANCING'"):
        store.create_deployment("iris", URL, [primary(1)], state="DANCING")
    with pytest.raises(InvalidArgument, match="cannot start STOPPED"):
        store.create_deployment("iris", URL, [primary(1)], state="STOPPED")
    with pytest.raises(InvalidArgument, match="Unknown deployment target 'lambda'"):
        store.create_deployment("iris", URL, [primary(1)], target="lambda")
    with pytest.raises(InvalidArgument, match="Invalid deployment id"):
        store.create_deployment("iris", URL, [primary(1)], deployment_id="../x")
    with pytest.raises(InvalidArgument, match="must be JSON"):
        store.create_deployment("iris", URL, [primary(1)], info={"x": float("nan")})
    with pytest.raises(InvalidArgument, match="Nothing to change"):
        store.update_deployment(d.deployment_id, message="hi")
    with pytest.raises(InvalidArgument, match="sets the state STOPPED, not RUNNING"):
        store.update_deployment(d.deployment_id, state="RUNNING", kind="stopped")
    with pytest.raises(InvalidArgument, match="needs the new traffic"):
        store.update_deployment(d.deployment_id, state="RUNNING", kind="traffic_changed")
    with pytest.raises(NotFound, match="modelyard deployments list"):
        store.get_deployment("0123456789abcdef")
    with pytest.raises(NotFound):
        store.update_deployment("0123456789abcdef", state="RUNNING")
    with pytest.raises(NotFound):
        store.list_events("0123456789abcdef")
    with pytest.raises(InvalidArgument, match="needs the model's name"):
        store.list_deployments(version=1)
    with pytest.raises(InvalidArgument, match="limit"):
        store.list_deployments(limit=0)
    assert [e.kind.value for e in store.list_events(d.deployment_id)] == ["started"]  # refused: no events


def test_list_filters_newest_first_and_versions_ever_served(store: SqlDeploymentStore) -> None:
    a = store.create_deployment("iris", URL, [primary(1)], state="RUNNING", now=1_000)
    b = store.create_deployment("iris", "http://10.0.0.6:8080", [primary(1, 90), canary(2, 10)], now=2_000)
    c = store.create_deployment("churn", URL, [primary(3, name="churn")], state="RUNNING", now=3_000)
    assert [d.deployment_id for d in store.list_deployments()] == [
        c.deployment_id,
        b.deployment_id,
        a.deployment_id,
    ]
    assert [d.deployment_id for d in store.list_deployments(limit=2)] == [c.deployment_id, b.deployment_id]
    assert [d.deployment_id for d in store.list_deployments("iris")] == [b.deployment_id, a.deployment_id]
    assert [d.deployment_id for d in store.list_deployments("iris", 2)] == [b.deployment_id]
    assert store.list_deployments("iris", 3) == []
    assert [d.deployment_id for d in store.list_deployments(state="running")] == [
        c.deployment_id,
        a.deployment_id,
    ]
    assert [d.deployment_id for d in store.list_deployments(name="churn")] == [c.deployment_id]
    assert [d.deployment_id for d in store.list_deployments("iris", 1, DeploymentState.STARTING)] == [
        b.deployment_id
    ]

    # Deployment a moves from v1 to v3: it still served v1 (lineage keeps it), and now serves v3.
    store.update_deployment(a.deployment_id, [primary(3)], now=4_000)
    assert {d.deployment_id for d in store.deployments_of_version("iris", 1)} == {
        a.deployment_id,
        b.deployment_id,
    }
    assert [d.deployment_id for d in store.deployments_of_version("iris", 3)] == [a.deployment_id]
    moved = store.get_deployment(a.deployment_id)
    assert moved.share_of("iris", 1) is None and moved.share_of("iris", 3).percent == 100  # type: ignore[union-attr]


def _append(uri: str, deployment_id: str, worker: int, count: int) -> None:
    store = SqlDeploymentStore.open(uri)
    try:
        for i in range(count):
            if i % 5 == 4:  # traffic changes interleaved with notes
                split = [primary(1, 100 - i), canary(2, i)]
                store.update_deployment(
                    deployment_id, split, message=f"w{worker} #{i}", details={"w": worker}
                )
            else:
                store.add_event(deployment_id, "note", f"w{worker} #{i}", {"w": worker, "i": i})
    finally:
        store.close()


def test_writers_in_four_processes_lose_no_event(store: SqlDeploymentStore, store_uri: str) -> None:
    d = store.create_deployment("iris", URL, [primary(1)], state="RUNNING")
    workers, count = 4, 25
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_append, args=(store_uri, d.deployment_id, w, count)) for w in range(workers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0] * workers
    events = store.list_events(d.deployment_id)
    assert len(events) == 1 + workers * count
    assert len({e.event_id for e in events}) == len(events)
    for w in range(workers):
        mine = [e.message for e in events if e.details.get("w") == w]
        assert mine == [f"w{w} #{i}" for i in range(count)], f"worker {w} lost or reordered events"
    # each event's snapshot is the traffic its own change left (or the latest change's, for a note)
    last_change = [e for e in events if e.kind is EventKind.TRAFFIC_CHANGED][-1]
    assert store.get_deployment(d.deployment_id).traffic == last_change.traffic
    for before, after in itertools.pairwise(events):
        if after.kind is EventKind.NOTE:
            assert after.traffic == before.traffic
