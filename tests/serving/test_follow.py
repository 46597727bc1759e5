"""Following `models:/NAME@ALIAS` (and stages) while serving, on the embedded registry (SQLite in a tmp
MODELYARD_HOME): the new version takes over under load without a failed request."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, NamedTuple

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

import modelyard as my
from modelyard.errors import InvalidArgument
from modelyard.models import load_predictor, log_model
from modelyard.registry import RegistryClient
from modelyard.serving import ServedModel
from modelyard.serving.follow import AliasFollower, Switch, followable
from tests.serving.conftest import app_client
from tests.serving.models import Broken, Offset
from tests.serving.test_metrics import rows_request
from tests.serving.test_serve_cli import ServeProcess, cli_with_serve

pytestmark = pytest.mark.anyio

EXAMPLE = np.ones((2, 3))


def register(model: Any, **options: Any) -> str:
    """Log `model` in a new run and register it as the next version of `m`; its version number."""
    with my.start_run(capture=False):
        info = log_model(model, "model", input_example=EXAMPLE, registered_model_name="m", **options)
    return str(info.registered_model_version.version)


class Answer(NamedTuple):
    status: int
    version: str
    x: float  # the first value of the row sent: [x, 1, 1]
    output: float | None


@asynccontextmanager
async def load(
    client: httpx.AsyncClient, workers: int = 8, seed: int = 0, path: str = "/v2/models/m/infer"
) -> AsyncIterator[list[Answer]]:
    """`workers` clients sending one-row requests [x, 1, 1] back to back (x: a random whole number from 0
    to 999, plus 0.5) until the block ends; the answers, in the order they came."""
    answers: list[Answer] = []
    stop = asyncio.Event()
    rng = np.random.default_rng(seed)

    async def send() -> None:
        while not stop.is_set():
            x = float(rng.integers(0, 1000)) + 0.5
            response = await client.post(path, json=rows_request(np.array([[x, 1.0, 1.0]])))
            body = response.json()
            output = body["outputs"][0]["data"][0] if response.status_code == 200 else None
            answers.append(Answer(response.status_code, body.get("model_version", ""), x, output))

    tasks = [asyncio.ensure_future(send()) for _ in range(workers)]
    try:
        yield answers
    finally:
        stop.set()
        await asyncio.gather(*tasks)


def primary(version: str) -> ServedModel:
    return ServedModel("m", version, load_predictor(f"models:/m/{version}", trusted=True))


def test_followable_uris():
    assert followable("models:/m@champion") and followable("models:/m/Production")
    assert followable("models:/m/latest")
    assert not followable("models:/m/3") and not followable("runs:/abc/model") and not followable("./m")


async def test_alias_follow_under_load_fails_no_request():
    registry = RegistryClient()
    one, two = register(Offset(0.0)), register(Offset(10.0))
    registry.set_alias("m", "champion", one)
    old = primary(one)
    switches: list[Switch] = []
    async with app_client(old) as client:
        deployment = client.app.state.deployment  # type: ignore[attr-defined]
        follower = AliasFollower(
            deployment, "models:/m@champion", interval=0.05, trusted=True, on_switch=switches.append
        )
        task = asyncio.ensure_future(follower.run())
        async with load(client) as answers:
            await asyncio.sleep(0.3)
            await asyncio.to_thread(registry.set_alias, "m", "champion", two)
            for _ in range(200):  # the follower polls every 50 ms; loading takes a moment
                await asyncio.sleep(0.05)
                if switches:
                    break
            await asyncio.sleep(0.3)
        task.cancel()

    assert switches and switches[0].error is None
    assert (switches[0].old_version, switches[0].new_version) == (one, two)
    assert len(answers) > 100
    assert {a.status for a in answers} == {200}, [a for a in answers if a.status != 200][:3]
    versions = [a.version for a in answers]
    switched_at = versions.index(two)
    assert set(versions[:switched_at]) == {one} and versions[-20:] == [two] * 20
    for answer in answers:  # each answer came from the version it names: x + 2 (+ 10 for version 2)
        assert answer.output == answer.x + 2 + (10 if answer.version == two else 0)
    assert old.batcher.closing and old.role == "retired" and deployment.versions("m") == [two]


async def test_a_stage_is_followed_and_a_version_that_fails_its_example_is_not(caplog):
    registry = RegistryClient()
    one, two = register(Offset(0.0)), register(Offset(1.0))
    broken = register(Broken(), signature=load_predictor("models:/m/1", trusted=True).signature)
    registry.transition_stage("m", one, "Production")
    async with app_client(primary(one)) as client:
        deployment = client.app.state.deployment  # type: ignore[attr-defined]
        follower = AliasFollower(deployment, "models:/m/Production", trusted=True)
        assert await follower.check() is None  # nothing moved
        registry.transition_stage("m", two, "Production", archive_existing=True)
        switch = await follower.check()
        assert switch is not None and switch.error is None and deployment.get("m").version == two
        response = await client.post("/v2/models/m/infer", json=rows_request(np.ones((1, 3))))
        assert response.json()["outputs"][0]["data"] == [4.0]

        registry.transition_stage("m", broken, "Production", archive_existing=True)
        with caplog.at_level(logging.ERROR, logger="modelyard.serving.follow"):
            switch = await follower.check()
        assert switch is not None and "fails on its own input example" in (switch.error or "")
        assert "Not following models:/m/Production to version 3" in caplog.text
        assert deployment.get("m").version == two  # still serving the last good version
        assert await follower.check() is None  # the refused version is not retried at every poll


async def test_only_moving_uris_can_be_followed():
    one = register(Offset(0.0))
    async with app_client(primary(one)) as client:
        deployment = client.app.state.deployment  # type: ignore[attr-defined]
        with pytest.raises(InvalidArgument, match="always names the same model"):
            AliasFollower(deployment, "models:/m/1")
        with pytest.raises(InvalidArgument, match="interval must be positive"):
            AliasFollower(deployment, "models:/m@champion", interval=0)


@pytest.mark.slow
def test_serve_splits_mirrors_and_follows_from_the_command_line():
    registry = RegistryClient()
    one, two, three, four = (register(Offset(offset)) for offset in (0.0, 1.0, 2.0, 10.0))
    registry.set_alias("m", "champion", one)
    server = ServeProcess("models:/m@champion", "--trusted", "--canary", f"models:/m/{two}", "--canary-percent",
                          "50", "--shadow", f"models:/m/{three}", "--follow-interval", "0.2")  # fmt: skip
    try:
        with httpx.Client(base_url=server.url, timeout=10) as http:
            body = rows_request(np.ones((1, 3)))
            answers = [http.post("/v2/models/m/infer", json=body).json() for _ in range(20)]
            assert sorted(a["model_version"] for a in answers) == [one] * 10 + [two] * 10
            assert {a["outputs"][0]["data"][0] for a in answers} == {3.0, 4.0}
            assert http.get("/v2/models/m").json()["versions"] == [one, two, three]
            metrics = http.get("/metrics").text
            assert f'outcome="disagreed",shadow_version="{three}",version="{one}"}} 10.0' in metrics
            registry.set_alias("m", "champion", four)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                versions = {
                    http.post("/v2/models/m/infer", json=body).json()["model_version"] for _ in range(4)
                }
                if four in versions:
                    break
                time.sleep(0.1)
            assert four in versions
            after = {http.post("/v2/models/m/infer", json=body).json()["model_version"] for _ in range(8)}
            assert after == {two, four}  # the canary stays; the primary followed the alias
    finally:
        assert server.stop(), server.output()
    assert f"canary version {two} (50% of the requests)" in server.output()
    assert f"Following models:/m@champion: now serving version {four} (was {one}" in server.output()
    # the deployment was recorded from start to stop, the alias move as a promotion
    from modelyard.registry.deployments import deployment_store_for

    store = deployment_store_for()
    (record,) = store.list_deployments(model_name="m", version=int(four))
    assert record.state.value == "STOPPED" and record.info["follows"] == "models:/m@champion"
    assert [(t.version, t.percent, t.role.value) for t in record.traffic] == [
        (int(four), 50.0, "primary"), (int(two), 50.0, "canary"), (int(three), 100.0, "shadow"),
    ]  # fmt: skip
    kinds = [e.kind.value for e in store.list_events(record.deployment_id)]
    assert kinds == ["started", "traffic_changed", "promoted", "stopped"], kinds  # loaded, switched, stopped


def test_a_canary_or_shadow_cannot_be_a_version_served_already():
    one = register(Offset(0.0))
    result = CliRunner().invoke(
        cli_with_serve(), ["serve", f"models:/m/{one}", "--trusted", "--shadow", "models:/m@x"]
    )
    assert result.exit_code == 1 and "Traceback" not in result.output and "alias" in result.output
    result = CliRunner().invoke(
        cli_with_serve(), ["serve", f"models:/m/{one}", "--trusted", "--canary", f"models:/m/{one}"]
    )
    assert result.exit_code != 0 and f"is version {one} of 'm', which is served already" in result.output


async def test_an_alias_moving_to_the_canary_promotes_it():
    registry = RegistryClient()
    one, two = register(Offset(0.0)), register(Offset(1.0))
    registry.set_alias("m", "champion", one)
    canary = primary(two)
    canary.role = "canary"
    async with app_client(primary(one), canary) as client:
        deployment = client.app.state.deployment  # type: ignore[attr-defined]
        deployment.set_canary_percent("m", 10)
        follower = AliasFollower(deployment, "models:/m@champion", trusted=True)
        registry.set_alias("m", "champion", two)
        switch = await follower.check()
        assert switch is not None and switch.error is None
        assert deployment.get("m") is canary and deployment.split("m").canary is None
        assert deployment.versions("m") == [two]
