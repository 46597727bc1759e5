"""A served deployment recorded in the tracking store (serving/recording.py): its traffic when it starts, each
change of the routing, a rollout's steps and outcome, its stop."""

from __future__ import annotations

import asyncio

import pytest

from modelyard.registry import RegistryClient
from modelyard.registry.deployments import DeploymentRecorder, deployment_store_for
from modelyard.serving import Deployment
from modelyard.serving.recording import DeploymentLog, endpoint_for, traffic_of
from modelyard.serving.rollout import Guards, Rollout, RolloutPlan
from tests.serving.conftest import app_client
from tests.serving.models import Flaky, Offset
from tests.serving.test_follow import load, primary, register

pytestmark = pytest.mark.anyio


def recorded(deployment: Deployment) -> DeploymentLog:
    """A log of `m` in `deployment`, written in the caller's thread (the order is the test's)."""
    recorder = DeploymentRecorder.start("m", traffic_of(deployment, "m"), "http://test:1", background=False)
    return DeploymentLog(recorder, deployment, "m")


def history(log: DeploymentLog) -> list[tuple[str, str, list[tuple[int | None, float, str]]]]:
    """(kind, state after it, traffic after it) of each recorded event."""
    store = deployment_store_for()
    return [
        (
            e.kind.value,
            e.state.value if e.state else "",
            [(t.version, t.percent, t.role.value) for t in e.traffic or []],
        )
        for e in store.list_events(log.deployment_id)
    ]


async def test_every_change_of_the_routing_is_recorded_with_the_traffic_after_it():
    one, two, three = register(Offset(0.0)), register(Offset(1.0)), register(Offset(2.0))
    canary = primary(two)
    canary.role = "canary"
    deployment = Deployment([primary(one), canary], canary_percent=20)
    log = recorded(deployment)
    deployment.set_canary_percent("m", 35)
    shadow = primary(three)
    shadow.role = "shadow"
    deployment.add(shadow)
    await deployment.promote("m", two)
    await deployment.remove("m", three)
    log.stop()
    a, b, c = int(one), int(two), int(three)
    events = history(log)
    assert [kind for kind, _, _ in events] == [
        "started", "traffic_changed", "traffic_changed", "promoted", "traffic_changed", "stopped",
    ]  # fmt: skip
    assert events[0][2] == [(a, 80.0, "primary"), (b, 20.0, "canary")]
    assert events[1][2] == [(a, 65.0, "primary"), (b, 35.0, "canary")]
    assert events[2][2] == [(a, 65.0, "primary"), (b, 35.0, "canary"), (c, 100.0, "shadow")]
    assert events[3][2] == [(b, 100.0, "primary"), (c, 100.0, "shadow")]
    assert events[4][2] == [(b, 100.0, "primary")]
    record = deployment_store_for().get_deployment(log.deployment_id)
    assert record.state.value == "STOPPED" and record.endpoint == "http://test:1"
    await deployment.close()


async def test_a_rollout_records_its_steps_and_its_rollback():
    registry = RegistryClient()
    one = register(Offset(0.0))
    two = register(Flaky(), signature=primary(one).signature)  # fails 30% of the requests
    registry.set_alias("m", "champion", one)
    plan = RolloutPlan("m", two, guards=Guards(max_error_rate=0.05, min_requests=30), registry_name="m",
                       registry_version=int(two), promote_alias="champion", hold=0.3, check_interval=0.05)  # fmt: skip
    canary = primary(two)
    canary.role = "canary"
    async with app_client(primary(one), canary) as client:
        deployment = client.app.state.deployment  # type: ignore[attr-defined]
        log = recorded(deployment)
        async with load(client, workers=4):
            result = await Rollout(deployment, plan).run()
            await asyncio.sleep(0.05)
    log.stop()
    assert result.outcome == "rolled back"
    events = history(log)
    kinds = [kind for kind, _, _ in events]
    assert kinds[:3] == ["started", "note", "traffic_changed"] and kinds[-2:] == ["rolled_back", "stopped"]
    assert events[1][1] == "ROLLING_OUT"  # the rollout started
    assert events[2][2] == [(int(one), 90.0, "primary"), (int(two), 10.0, "canary")]  # its first step
    _, state, traffic = events[-2]
    assert state == "RUNNING" and traffic == [(int(one), 100.0, "primary")]
    assert "error rate" in deployment_store_for().list_events(log.deployment_id)[-2].message


def test_endpoint_names_this_machine_when_listening_everywhere():
    import socket

    assert endpoint_for("127.0.0.1", 8080) == "http://127.0.0.1:8080"
    assert endpoint_for("0.0.0.0", 80) == f"http://{socket.gethostname()}:80"
    assert endpoint_for("::1", 8080) == "http://[::1]:8080"
