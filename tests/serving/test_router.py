"""Canary split, shadow mirroring and runtime traffic changes, in-process through the real app."""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import Any

import httpx
import numpy as np
import pytest

from modelyard.errors import InvalidArgument
from modelyard.serving import BatchConfig, Deployment, ServedModel
from modelyard.serving.payload_log import PayloadLogConfig, read_payloads
from modelyard.serving.router import Split, agreeing_rows
from tests.serving.conftest import app_client
from tests.serving.models import Broken, Offset, RowSum, Slow
from tests.serving.test_metrics import rows_request, scrape, value

pytestmark = pytest.mark.anyio

EXAMPLE = np.ones((2, 3))


@pytest.fixture
def models(pyfunc: Any) -> dict[str, Any]:
    """Predictors: `sum` (RowSum), `same` (agrees with it), `plus1` (disagrees), `broken`, `slow`."""
    row_sum = pyfunc("router_sum", RowSum(), input_example=EXAMPLE)
    return {
        "sum": row_sum,
        "same": pyfunc("router_same", Offset(0.0), input_example=EXAMPLE),
        "plus1": pyfunc("router_plus1", Offset(1.0), input_example=EXAMPLE),
        "broken": pyfunc("router_broken", Broken(), signature=row_sum.signature),
        "slow": pyfunc("router_slow", Slow(0.2), input_example=EXAMPLE),
    }


async def infer_many(client: httpx.AsyncClient, count: int, path: str = "/v2/models/m/infer") -> list[Any]:
    """`count` requests, 50 at a time, with ids i; each row is [i + 0.5, 1, 1] (never RowSum's poison values),
    so RowSum answers i + 2.5."""
    responses: list[httpx.Response] = []
    for start in range(0, count, 50):
        batch = [
            client.post(path, json=rows_request(np.array([[i + 0.5, 1.0, 1.0]]), id=str(i)))
            for i in range(start, min(start + 50, count))
        ]
        responses += await asyncio.gather(*batch)
    assert {r.status_code for r in responses} == {200}, responses[0].text
    return [r.json() for r in responses]


async def test_canary_split_is_within_3_percent_over_2000_requests(models):
    primary = ServedModel("m", "1", models["sum"])
    canary = ServedModel("m", "2", models["plus1"], role="canary")
    async with app_client(primary, canary) as client:
        deployment = client.app.state.deployment  # type: ignore[attr-defined]
        deployment.set_canary_percent("m", 10)
        answers = await infer_many(client, 2000)
        to_canary = [a for a in answers if a["model_version"] == "2"]
        assert abs(len(to_canary) / 2000 - 0.10) <= 0.03
        for answer in answers:  # each version answered with its own model
            expected = int(answer["id"]) + 2.5 + (1 if answer["model_version"] == "2" else 0)
            assert answer["outputs"][0]["data"] == [expected]
        samples = await scrape(client)
        for version, count in (("1", 2000 - len(to_canary)), ("2", len(to_canary))):
            labels = {"model": "m", "version": version, "protocol": "v2", "code": "200"}
            assert value(samples, "modelyard_serving_requests_total", **labels) == count

        deployment.set_canary_percent("m", 50)
        answers = await infer_many(client, 400)
        assert abs(sum(a["model_version"] == "2" for a in answers) / 400 - 0.5) <= 0.03
        # naming a version bypasses the split
        named = await infer_many(client, 100, "/v2/models/m/versions/1/infer")
        assert {a["model_version"] for a in named} == {"1"}
        # v1 and /invocations go through the split too
        v1 = [
            await client.post("/v1/models/m:predict", json={"instances": [[1.0, 1.0, 1.0]]})
            for _ in range(10)
        ]
        assert sorted(r.json()["predictions"][0] for r in v1) == [3.0] * 5 + [4.0] * 5
        meta = (await client.get("/v2/models/m")).json()
        assert meta["versions"] == ["1", "2"]


def test_smooth_round_robin_gives_exact_evenly_spread_shares(models):
    split = Split(ServedModel("m", "1", models["sum"]))
    assert all(split.choose() is split.primary for _ in range(10))  # no canary: all to the primary
    split.canary = ServedModel("m", "2", models["plus1"])
    for percent in (1, 10, 25, 50, 90, 100):
        split.percent = percent
        picks = [split.choose() is split.canary for _ in range(1000)]
        assert sum(picks) == 10 * percent
        if 0 < percent <= 50:  # never two canary requests in a row below half
            assert not any(a and b for a, b in itertools.pairwise(picks))
    with pytest.raises(InvalidArgument, match="from 0 to 100"):
        split.percent = 120


async def test_shadows_see_every_request_and_never_answer(models, tmp_path):
    primary = ServedModel("m", "1", models["sum"])
    same = ServedModel("m", "2", models["same"], role="shadow")
    plus1 = ServedModel("m", "3", models["plus1"], role="shadow")
    log = PayloadLogConfig(str(tmp_path), sample=1.0)
    async with app_client(primary, same, plus1, payload_log=log) as client:
        deployment = client.app.state.deployment  # type: ignore[attr-defined]
        answers = await infer_many(client, 100)
        assert {a["model_version"] for a in answers} == {"1"}
        assert all(a["outputs"][0]["data"] == [int(a["id"]) + 2.5] for a in answers)
        await client.post("/v2/models/m/versions/1/infer", json=rows_request(np.ones((1, 3)), id="named"))
        await deployment.router.settle()
        samples = await scrape(client)
        for shadow, agreed in (("2", 100), ("3", 0)):
            labels = {"model": "m", "version": "1", "shadow_version": shadow}
            # a request naming a version is not mirrored: 100, not 101
            assert (
                value(samples, "modelyard_serving_shadow_requests_total", **labels, outcome="answered") == 100
            )
            assert value(samples, "modelyard_serving_shadow_rows_total", **labels, outcome="agreed") == agreed
            assert (
                value(samples, "modelyard_serving_shadow_rows_total", **labels, outcome="disagreed")
                == 100 - agreed
            )
            assert value(samples, "modelyard_serving_shadow_agreement", **labels) == agreed / 100
        stats = deployment.router.agreement(primary, plus1, since=0.0)
        assert (stats.requests, stats.rows, stats.agreed_rows, stats.agreement) == (100, 100, 0, 0.0)
        assert deployment.router.agreement(primary, same, since=0.0).agreement == 1.0
    frame = read_payloads(str(tmp_path), "m")
    roles = frame.groupby("version")["role"].unique().to_dict()
    assert {v: list(r) for v, r in roles.items()} == {"1": ["primary"], "2": ["shadow"], "3": ["shadow"]}
    one = frame[frame["request_id"] == "7"].set_index("version")
    assert one["output.output-0"].to_dict() == {"1": 9.5, "2": 9.5, "3": 10.5}  # both outputs, one request id
    both = frame.pivot_table(  # as in docs/serving.md
        index=["request_id", "row"], columns="version", values="output.output-0", aggfunc="first"
    )
    assert (
        len(both) == 101
        and (both["1"] == both["2"]).sum() == 100
        and (both["3"] == both["1"] + 1).sum() == 100
    )
    assert (frame["request_id"] == "named").sum() == 1


async def test_failing_slow_or_full_shadows_never_affect_the_primary(models):
    primary = ServedModel("m", "1", models["sum"], BatchConfig(max_batch_delay=0.001))
    broken = ServedModel("m", "2", models["broken"], role="shadow")
    slow = ServedModel("m", "3", models["slow"], BatchConfig(max_batch_size=1, max_queue=2), role="shadow")
    async with app_client(primary, broken, slow) as client:
        deployment = client.app.state.deployment  # type: ignore[attr-defined]
        await infer_many(client, 5)  # warm up
        timings = []
        for i in range(20):
            started = time.perf_counter()
            response = await client.post("/v2/models/m/infer", json=rows_request(np.array([[i, 1.0, 1.0]])))
            timings.append(time.perf_counter() - started)
            assert response.status_code == 200 and response.json()["outputs"][0]["data"] == [i + 2]
        assert max(timings) < 0.15, timings  # the slow shadow takes 0.2 s per request
        await infer_many(client, 50)  # concurrent: the slow shadow's queue (2 rows) overflows
        await deployment.router.settle()
        samples = await scrape(client)
        labels = {"model": "m", "version": "1"}
        assert value(samples, "modelyard_serving_shadow_requests_total", **labels, shadow_version="2",
                     outcome="failed") == 75  # fmt: skip
        dropped = value(
            samples,
            "modelyard_serving_shadow_requests_total",
            **labels,
            shadow_version="3",
            outcome="dropped",
        )
        answered = value(
            samples,
            "modelyard_serving_shadow_requests_total",
            **labels,
            shadow_version="3",
            outcome="answered",
        )
        assert dropped > 0 and dropped + answered == 75
        assert value(samples, "modelyard_serving_requests_total", **labels, protocol="v2", code="200") == 75


async def test_versions_are_added_promoted_and_removed_while_serving(models):
    primary = ServedModel("m", "1", models["sum"])
    async with app_client(primary) as client:
        deployment: Deployment = client.app.state.deployment  # type: ignore[attr-defined]
        candidate = ServedModel("m", "2", models["plus1"], role="canary")
        deployment.add(candidate)
        assert {a["model_version"] for a in await infer_many(client, 20)} == {
            "1"
        }  # a new canary starts at 0%
        deployment.set_canary_percent("m", 100)
        assert {a["model_version"] for a in await infer_many(client, 20)} == {"2"}
        samples = await scrape(client)
        assert value(samples, "modelyard_serving_queue_rows", model="m", version="2") == 0  # its series exist
        await deployment.promote("m", "2")
        assert primary.role == "retired" and primary.batcher.closing and candidate.role == "primary"
        assert deployment.versions("m") == ["2"] and deployment.split("m").canary is None
        assert (await client.get("/v2/models/m/versions/1")).status_code == 404
        samples = await scrape(client)
        assert (
            "modelyard_serving_queue_rows",
            frozenset({"model": "m", "version": "1"}.items()),
        ) not in samples
        assert value(samples, "modelyard_serving_requests_total", model="m", version="1", protocol="v2",
                     code="200") == 20  # counters of the drained version stay  # fmt: skip

        shadow = ServedModel("m", "3", models["sum"], role="shadow")
        deployment.add(shadow)
        await infer_many(client, 10)
        await deployment.remove("m", "3")
        assert shadow.batcher.closing and deployment.split("m").shadows == []
        with pytest.raises(InvalidArgument, match="is the primary"):
            await deployment.remove("m", "2")
        with pytest.raises(InvalidArgument, match="has a primary already"):
            deployment.add(ServedModel("m", "4", models["sum"]))
        with pytest.raises(InvalidArgument, match="served twice"):
            deployment.add(ServedModel("m", "2", models["sum"], role="version"))


async def test_a_version_leaving_answers_its_requests_in_flight(models):
    """Replacing the primary while requests are queued on it: every one is answered, by the old version."""
    old = ServedModel("m", "1", models["slow"], BatchConfig(max_batch_size=4))
    async with app_client(old) as client:
        deployment: Deployment = client.app.state.deployment  # type: ignore[attr-defined]
        pending = [
            asyncio.ensure_future(
                client.post("/v2/models/m/infer", json=rows_request(np.array([[i, 0.0, 0.0]])))
            )
            for i in range(8)
        ]
        await asyncio.sleep(0.05)
        await deployment.replace(ServedModel("m", "2", models["sum"]))
        assert old.batcher.closing
        answers = [r.json() for r in await asyncio.gather(*pending)]
        assert {a["model_version"] for a in answers} == {"1"}
        after = await infer_many(client, 5)
        assert {a["model_version"] for a in after} == {"2"}


def test_agreement_is_per_row_and_tolerates_rounding():
    a = np.array([1.0, 2.0, 3.0])
    assert agreeing_rows(a, a + 1e-9, 3) == 3
    assert agreeing_rows(a, np.array([1.0, 2.5, 3.0]), 3) == 2
    assert agreeing_rows(a, np.array([1.0, 2.0]), 3) == 0  # shapes differ
    assert agreeing_rows({"p": a, "q": a}, {"p": a, "q": np.array([0.0, 2.0, 0.0])}, 3) == 1
    labels = np.array(["x", "y", "z"], dtype=object)
    assert agreeing_rows(labels, np.array(["x", "y", "q"], dtype=object), 3) == 2
    assert agreeing_rows(np.ones((3, 2)), np.array([[1, 1], [1, 0], [1, 1]]), 3) == 2
    assert agreeing_rows({"p": a}, a, 3) == 0  # named output vs a lone tensor


def test_deployment_roles_are_checked(models):
    def version(number: str, role: str = "primary") -> ServedModel:
        return ServedModel("m", number, models["sum"], role=role)

    with pytest.raises(InvalidArgument, match="has a canary but no primary"):
        Deployment([version("2", "canary")])
    with pytest.raises(InvalidArgument, match="has no primary version"):
        Deployment([version("2", "version")])
    with pytest.raises(InvalidArgument, match="has a canary already"):
        Deployment([version("1"), version("2", "canary"), version("3", "canary")])
    with pytest.raises(InvalidArgument, match="role is one of"):
        version("1", "leader")
    deployment = Deployment([version("1"), version("2"), version("3", "canary")], canary_percent=25)
    assert [m.role for m in deployment.models] == [
        "primary",
        "version",
        "canary",
    ]  # a second primary: named only
    assert deployment.split("m").percent == 25
    with pytest.raises(InvalidArgument, match="cannot mirror itself"):
        deployment.mirror("m", "1")
