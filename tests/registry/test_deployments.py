"""`DeploymentRecorder` on the embedded store (writes in order, in the background, never raising), and the
deployments in a model version's lineage (graph, labels, the `modelyard models lineage` tree)."""

from __future__ import annotations

import logging
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

import modelyard as my
from modelyard.cli.main import cli
from modelyard.errors import InvalidState, Unavailable
from modelyard.registry.deployments import DeploymentRecorder, deployment_store_for
from modelyard.schemas.deployments import DeploymentState
from modelyard.store.deployments import DeploymentStore
from modelyard.store.sql.deployments import SqlDeploymentStore
from tests.server.live import LiveServer

URL = "http://10.0.0.5:8080"


def split(v1: float, v2: float | None = None, shadow: int | None = None) -> list[dict[str, Any]]:
    traffic: list[dict[str, Any]] = [{"model_name": "iris", "version": 1, "percent": v1}]
    if v2 is not None:
        traffic.append({"model_name": "iris", "version": 2, "percent": v2, "role": "canary"})
    if shadow is not None:
        traffic.append({"model_name": "iris", "version": shadow, "percent": 100, "role": "shadow"})
    return traffic


@pytest.fixture
def uri(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """An embedded store with iris versions 1-3, registered from a finished run."""
    monkeypatch.setenv("MODELYARD_USER", "ann")
    monkeypatch.setenv("COLUMNS", "250")
    uri = f"sqlite:///{tmp_path / 'store.db'}"
    client = my.Client(uri)
    run_id = client.create_run("0", run_name="train").run_id
    client.log_param(run_id, "lr", "0.1")
    client.set_terminated(run_id)
    registry = my.RegistryClient(uri)
    for _ in range(3):
        registry.register_model(f"runs:/{run_id}/model", "iris")
    yield uri
    from modelyard.store.registry import clear_cache

    clear_cache()


def _events(uri: str, deployment_id: str) -> list[tuple[str, str, str]]:
    store = deployment_store_for(uri)
    return [(e.kind.value, e.state.value, e.message) for e in store.list_events(deployment_id)]


def test_recorder_writes_in_order_in_the_background(uri: str) -> None:
    started = time.perf_counter()
    recorder = DeploymentRecorder.start("iris", split(100), URL, info={"pid": 42}, tracking_uri=uri)
    assert len(recorder.deployment_id) == 16  # known at once, before anything is written
    for percent in (5, 25, 50):
        recorder.traffic_changed(split(100 - percent, percent), f"canary {percent}%", state="ROLLING_OUT")
    recorder.event("promoted", "v2 passed", error_rate=0.001)
    recorder.traffic_changed(split(0, 100), "all on v2", state="RUNNING")
    recorder.event("note", "fine")
    assert time.perf_counter() - started < 0.5
    assert recorder.state is DeploymentState.RUNNING and recorder.traffic[1].percent == 100
    recorder.stop("SIGTERM")
    assert not recorder._thread.is_alive()  # type: ignore[union-attr]
    assert _events(uri, recorder.deployment_id) == [
        ("started", "RUNNING", ""),
        ("traffic_changed", "ROLLING_OUT", "canary 5%"),
        ("traffic_changed", "ROLLING_OUT", "canary 25%"),
        ("traffic_changed", "ROLLING_OUT", "canary 50%"),
        ("promoted", "ROLLING_OUT", "v2 passed"),
        ("traffic_changed", "RUNNING", "all on v2"),
        ("note", "RUNNING", "fine"),
        ("stopped", "STOPPED", "SIGTERM"),
    ]
    store = deployment_store_for(uri)
    found = store.get_deployment(recorder.deployment_id)
    assert found.info == {"pid": 42, "heartbeat_s": 30.0} and found.created_by == "ann"
    assert found.state is DeploymentState.STOPPED
    assert store.list_events(recorder.deployment_id)[4].details == {"error_rate": 0.001}
    recorder.event("note", "after the end")  # a closed recorder records nothing, and does not raise
    assert len(_events(uri, recorder.deployment_id)) == 8


class FlakyStore(DeploymentStore):
    """The real store, behind writes that fail with Unavailable until `down` of them did."""

    def __init__(self, inner: SqlDeploymentStore, down: int) -> None:
        self.inner, self.down = inner, down

    def _write(self) -> SqlDeploymentStore:
        if self.down > 0:
            self.down -= 1
            raise Unavailable("tracking server restarting")
        return self.inner

    def create_deployment(self, *args: Any, **kwargs: Any) -> Any:
        return self._write().create_deployment(*args, **kwargs)

    def update_deployment(self, *args: Any, **kwargs: Any) -> Any:
        return self._write().update_deployment(*args, **kwargs)

    def add_event(self, *args: Any, **kwargs: Any) -> Any:
        return self._write().add_event(*args, **kwargs)

    def get_deployment(self, deployment_id: str) -> Any:
        return self.inner.get_deployment(deployment_id)

    def list_deployments(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.list_deployments(*args, **kwargs)

    def list_events(self, *args: Any, **kwargs: Any) -> Any:
        return self.inner.list_events(*args, **kwargs)

    def heartbeat(self, deployment_id: str) -> None:
        self._write().heartbeat(deployment_id)

    def close(self) -> None:
        self.inner.close()


def test_failed_writes_are_logged_and_the_create_is_retried(
    uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    flaky = FlakyStore(SqlDeploymentStore.open(uri), down=2)
    recorder = DeploymentRecorder.start("iris", split(100), URL, tracking_uri=uri, store=flaky)
    recorder.traffic_changed(split(90, 10), "canary 10%")  # its create is retried first, and fails again
    recorder.traffic_changed(split(80, 20), "canary 20%")  # the create goes through, then this
    recorder.failed("replica crashed", replica=1)
    recorder.stop("bye")
    assert _events(uri, recorder.deployment_id) == [
        ("started", "RUNNING", ""),
        ("traffic_changed", "RUNNING", "canary 20%"),
        ("failed", "FAILED", "replica crashed"),
        ("stopped", "STOPPED", "bye"),
    ]
    warned = [r.getMessage() for r in caplog.records if r.name == "modelyard.deployments"]
    assert len(warned) == 2 and all("tracking server restarting" in w for w in warned)


def test_bad_input_is_logged_never_raised(uri: str, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, "modelyard.deployments")
    broken = DeploymentRecorder.start("iris", split(90), URL, tracking_uri=uri)  # 90% in all
    broken.traffic_changed(split(100), "ignored")
    broken.stop()
    assert deployment_store_for(uri).list_deployments() == []
    recorder = DeploymentRecorder.start("iris", split(100), URL, tracking_uri=uri, background=False)
    recorder.traffic_changed(split(100, 50), "too much")  # refused here: logged, the recorder goes on
    recorder.traffic_changed(split(100, shadow=9), "no such version")  # refused by the store: logged
    recorder.event("traffic_changed", "without traffic")
    recorder.event("exploded")
    recorder.set_state("ASLEEP")
    recorder.traffic_changed(split(100, shadow=3), "shadow v3")
    recorder.stop()
    assert _events(uri, recorder.deployment_id) == [
        ("started", "RUNNING", ""),
        ("traffic_changed", "RUNNING", "shadow v3"),
        ("stopped", "STOPPED", ""),
    ]
    text = "\n".join(r.getMessage() for r in caplog.records)
    for fragment in ("got 90%", "got 150%", "No version 9 of registered model 'iris'", "use traffic_changed()",
                     "Unknown deployment event kind 'exploded'", "Unknown deployment state 'ASLEEP'"):  # fmt: skip
        assert fragment in text, fragment


def test_context_manager_records_a_failure_then_the_stop(uri: str) -> None:
    with (
        pytest.raises(RuntimeError, match="model crashed"),
        DeploymentRecorder.start("iris", split(100), URL, tracking_uri=uri, state="STARTING") as recorder,
    ):
        recorder.set_state("RUNNING", "ready")
        raise RuntimeError("model crashed")
    assert _events(uri, recorder.deployment_id) == [
        ("started", "STARTING", ""),
        ("note", "RUNNING", "ready"),
        ("failed", "FAILED", "RuntimeError: model crashed"),
        ("stopped", "STOPPED", "stopped after a failure"),
    ]


KILLED_SERVER = """
import os, signal, sys, time
from modelyard.registry.deployments import DeploymentRecorder

recorder = DeploymentRecorder.start("iris", [{"model_name": "iris", "version": 1, "percent": 100}],
                                    "http://10.0.0.5:8080", tracking_uri=sys.argv[1], heartbeat_s=0.2)
deadline = time.monotonic() + 30
while recorder._store is None or recorder._store.get_deployment(recorder.deployment_id).heartbeat_time is None:
    assert time.monotonic() < deadline, "no heartbeat recorded"
    time.sleep(0.05)
print(recorder.deployment_id, flush=True)
os.kill(os.getpid(), signal.SIGKILL)  # as `kill -9`: no stop recorded
"""


def test_heartbeats_tell_a_killed_server_from_a_running_one(uri: str) -> None:
    done = subprocess.run(
        [sys.executable, "-c", KILLED_SERVER, uri], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    deployment_id = done.stdout.strip()
    store = deployment_store_for(uri)
    found = store.get_deployment(deployment_id)
    assert found.state is DeploymentState.RUNNING and found.info["heartbeat_s"] == 0.2
    assert found.heartbeat_time is not None and found.silent_for(found.heartbeat_time + 500) is None
    time.sleep(0.8)  # more than three missed heartbeats
    silent = found.silent_for(int(time.time() * 1000))
    assert silent is not None and silent > 0.6
    listed = CliRunner().invoke(cli, ["deployments", "list", "--tracking-uri", uri])
    assert listed.exit_code == 0 and "RUNNING (silent" in listed.output, listed.output
    assert "record its stop with `modelyard deployments stop ID`" in listed.output
    stopped = CliRunner().invoke(cli, ["deployments", "stop", deployment_id, "--tracking-uri", uri])
    assert stopped.exit_code == 0 and "STOPPED" in stopped.output, stopped.output
    assert store.get_deployment(deployment_id).silent_for(int(time.time() * 1000)) is None
    assert store.list_events(deployment_id)[-1].message == "stopped by hand"
    with DeploymentRecorder.start("iris", split(100), URL, tracking_uri=uri, heartbeat_s=0.1) as alive:
        time.sleep(0.5)  # heartbeats keep a live one from looking silent
        assert store.get_deployment(alive.deployment_id).silent_for(int(time.time() * 1000)) is None


def test_stop_by_hand_through_a_server(uri: str, tmp_path: Path) -> None:
    """`modelyard deployments stop` on `http://...`: the record stops, and the killed server's recorder, were
    it only cut off, would be told its deployment is over."""
    live = LiveServer(uri, tmp_path / "artifacts").start()
    try:
        store = deployment_store_for(live.url)
        created = store.create_deployment("iris", URL, split(100), state="RUNNING")
        done = CliRunner().invoke(cli, ["deployments", "stop", created.deployment_id, "-m", "host lost",
                                        "--tracking-uri", live.url])  # fmt: skip
        assert done.exit_code == 0 and "STOPPED" in done.output, done.output
        event = store.list_events(created.deployment_id)[-1]
        assert (event.kind.value, event.message, event.state) == (
            "stopped",
            "host lost",
            DeploymentState.STOPPED,
        )
        with pytest.raises(InvalidState, match="is STOPPED"):
            store.heartbeat(created.deployment_id)
        store.close()
    finally:
        live.stop()


# -- lineage -----------------------------------------------------------------------------------------------


def _deploy(uri: str) -> Mapping[str, Any]:
    store = deployment_store_for(uri)
    a = store.create_deployment("iris", URL, split(90, 10), state="ROLLING_OUT", deployment_id="dep-a")
    b = store.create_deployment("iris-shadow", "http://10.0.0.6:8080", split(100, shadow=2), state="RUNNING",
                                deployment_id="dep-b")  # fmt: skip
    c = store.create_deployment("iris", "http://10.0.0.7:8080", split(100), deployment_id="dep-c")
    store.update_deployment(c.deployment_id, state="STOPPED")
    d = store.create_deployment("iris", "http://10.0.0.8:8080", split(100), deployment_id="dep-d")
    store.update_deployment(d.deployment_id, traffic=[{"model_name": "iris", "version": 3, "percent": 100}])
    return {"a": a, "b": b, "c": c, "d": d}


def test_lineage_lists_the_deployments_that_served_the_version(uri: str) -> None:
    _deploy(uri)
    graph = my.lineage("models:/iris/2", uri)
    deployed = {n.id: n for n in graph.nodes if n.kind == "deployment"}
    assert {n.label for n in deployed.values()} == {
        "iris on http://10.0.0.5:8080 (ROLLING_OUT, canary 10%)",
        "iris-shadow on http://10.0.0.6:8080 (RUNNING, shadow 100%)",
    }
    served = {e.target for e in graph.edges if e.source == graph.root and e.relation == "served_by"}
    assert served == set(deployed) == {"deployment:dep-a", "deployment:dep-b"}
    a = deployed["deployment:dep-a"].attributes
    assert (
        a["state"] == "ROLLING_OUT"
        and a["role"] == "canary"
        and a["percent"] == 10
        and a["target"] == "local"
    )
    assert any(n.kind == "run" for n in graph.nodes)  # the rest of the lineage is still there

    labels = {n.label for n in my.lineage("models:/iris/1", uri).nodes if n.kind == "deployment"}
    assert labels == {
        "iris on http://10.0.0.5:8080 (ROLLING_OUT, 90%)",
        "iris-shadow on http://10.0.0.6:8080 (RUNNING, 100%)",
        "iris on http://10.0.0.7:8080 (STOPPED, was 100%)",
        "iris on http://10.0.0.8:8080 (STARTING, not in its traffic now)",
    }
    assert (
        len([n for n in my.lineage("models:/iris/1", uri, max_deployments=2).nodes if n.kind == "deployment"])
        == 2
    )
    assert [n.label for n in my.lineage("models:/iris/3", uri).nodes if n.kind == "deployment"] == [
        "iris on http://10.0.0.8:8080 (STARTING, 100%)"
    ]


def test_lineage_tree_shows_deployments(uri: str) -> None:
    _deploy(uri)
    result = CliRunner().invoke(cli, ["models", "lineage", "models:/iris/2", "--tracking-uri", uri])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "served_by: iris on http://10.0.0.5:8080 (ROLLING_OUT, canary 10%)" in out
    assert "deployment_id=dep-a" in out and "target=local" in out
    assert "updated_time=20" in out  # a date, not milliseconds
    as_json = CliRunner().invoke(
        cli, ["models", "lineage", "models:/iris/2", "--json", "--tracking-uri", uri]
    )
    assert '"kind": "deployment"' in as_json.stdout
