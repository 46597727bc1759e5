"""Prometheus /metrics of the model server: request and error counts by status, latency and batch-size
histograms, queue depth, in-flight requests, replicas and load time; one registry per app."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from modelyard.serving import BatchConfig, ServedModel, ThreadRunner
from modelyard.serving.metrics import BATCH_SIZE_BUCKETS, LATENCY_BUCKETS
from tests.serving.conftest import app_client, oip, served
from tests.serving.models import CRASH_VALUE, POISON_VALUE, RowSum, Slow

pytestmark = pytest.mark.anyio

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(client: httpx.AsyncClient) -> Samples:
    response = await client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


class Replicated(ThreadRunner):
    count = 1

    @property
    def replicas(self) -> int:
        return self.count


def rows_request(values: np.ndarray, **extra: Any) -> dict[str, Any]:
    return {"inputs": [oip("x", values, "FP64")], **extra}


async def test_requests_errors_latency_and_batches_are_counted(pyfunc):
    row_sum = pyfunc("row_sum", RowSum(), input_example=np.ones((2, 3)))
    model = ServedModel(
        "sum", "3", row_sum, BatchConfig(max_batch_size=8, max_batch_delay=0.01), load_seconds=0.42
    )
    async with app_client(model) as client:
        calls = [
            client.post("/v2/models/sum/infer", json=rows_request(np.full((1 + i % 3, 3), i)))
            for i in range(20)
        ]
        calls += [
            client.post("/v1/models/sum:predict", json={"instances": [[1.0, 2.0, 3.0]]}) for _ in range(3)
        ]
        calls += [client.post("/invocations", json={"inputs": [[1.0, 2.0, 3.0]]}) for _ in range(2)]
        calls.append(client.post("/v2/models/sum/infer", json=rows_request(np.array([[POISON_VALUE, 0, 0]]))))
        calls.append(
            client.post("/v2/models/sum/versions/3/infer", json=rows_request(np.array([[CRASH_VALUE, 0, 0]])))
        )
        calls += [client.post("/v2/models/sum/infer", content=b"{not json") for _ in range(2)]
        calls.append(client.post("/v2/models/nope/infer", json=rows_request(np.ones((1, 3)))))
        calls.append(client.post("/v2/models/sum/versions/9/infer", json=rows_request(np.ones((1, 3)))))
        statuses = [r.status_code for r in await asyncio.gather(*calls)]
        assert statuses == [200] * 25 + [400, 500, 400, 400, 404, 404]
        await client.get("/v2/health/ready")  # not an inference request: not counted

        samples = await scrape(client)
        labels = {"model": "sum", "version": "3"}
        requests = "modelyard_serving_requests_total"
        assert value(samples, requests, **labels, protocol="v2", code="200") == 20
        assert value(samples, requests, **labels, protocol="v1", code="200") == 3
        assert value(samples, requests, **labels, protocol="invocations", code="200") == 2
        assert value(samples, requests, **labels, protocol="v2", code="400") == 3
        assert value(samples, requests, **labels, protocol="v2", code="500") == 1
        # an unknown model or version is counted without labels that clients could choose
        assert value(samples, requests, model="", version="", protocol="v2", code="404") == 2
        assert sum(v for (name, _), v in samples.items() if name == requests) == 31
        errors = "modelyard_serving_errors_total"
        assert value(samples, errors, **labels, protocol="v2", code="500", error="MODEL_ERROR") == 1
        assert (
            value(samples, errors, **labels, protocol="v2", code="400", error="INVALID_PARAMETER_VALUE") == 3
        )
        assert sum(v for (name, _), v in samples.items() if name == errors) == 6

        latency = "modelyard_serving_request_duration_seconds"
        assert value(samples, latency + "_count", **labels) == 29
        buckets = [value(samples, latency + "_bucket", **labels, le=str(float(b))) for b in LATENCY_BUCKETS]
        assert buckets == sorted(buckets)  # cumulative
        assert value(samples, latency + "_bucket", **labels, le="+Inf") == 29
        assert 0 < value(samples, latency + "_sum", **labels) < 29 * 10

        stats = client.app.state.deployment.get("sum").batcher.stats  # type: ignore[attr-defined]
        batch = "modelyard_serving_batch_size_rows"
        assert value(samples, batch + "_count", **labels) == stats.batches
        assert value(samples, batch + "_sum", **labels) == stats.rows
        for bound in BATCH_SIZE_BUCKETS:
            want = sum(n for rows, n in stats.batch_rows.items() if rows <= bound)
            assert value(samples, batch + "_bucket", **labels, le=str(float(bound))) == want
        assert max(stats.batch_requests) > 1  # batches of several requests were observed
        assert value(samples, "modelyard_serving_batch_duration_seconds_count", **labels) == stats.batches

        assert value(samples, "modelyard_serving_queue_rows", **labels) == 0
        assert value(samples, "modelyard_serving_requests_in_flight", **labels) == 0
        assert value(samples, "modelyard_serving_replicas", **labels) == 1
        assert value(samples, "modelyard_serving_model_load_seconds", **labels) == 0.42


async def test_queue_depth_in_flight_and_503_under_overload(pyfunc):
    slow = pyfunc("slow", Slow(0.2), input_example=np.ones((1, 2)))
    async with app_client(served("slow", slow, max_batch_size=1, max_batch_delay=0, max_queue=3)) as client:
        labels = {"model": "slow", "version": "1"}
        before = await scrape(client)  # series exist before the first request
        assert ("modelyard_serving_queue_rows", frozenset(labels.items())) in before
        assert value(before, "modelyard_serving_requests_in_flight", **labels) == 0
        calls = [
            asyncio.ensure_future(
                client.post("/v2/models/slow/infer", json=rows_request(np.array([[i, 0.0]])))
            )
            for i in range(8)
        ]
        await asyncio.sleep(0.1)  # one batch runs, the accepted requests wait, the rest were refused
        during = await scrape(client)
        responses = await asyncio.gather(*calls)
        statuses = [r.status_code for r in responses]
        accepted = statuses.count(200)
        assert set(statuses) == {200, 503} and accepted in (3, 4)  # 3 queued rows, maybe 1 taken already
        assert value(during, "modelyard_serving_queue_rows", **labels) == accepted - 1
        assert value(during, "modelyard_serving_requests_in_flight", **labels) == accepted
        after = await scrape(client)
        code = {**labels, "protocol": "v2"}
        assert value(after, "modelyard_serving_requests_total", **code, code="200") == accepted
        assert value(after, "modelyard_serving_requests_total", **code, code="503") == 8 - accepted
        unavailable = {**code, "code": "503", "error": "TEMPORARILY_UNAVAILABLE"}
        assert value(after, "modelyard_serving_errors_total", **unavailable) == 8 - accepted
        assert value(after, "modelyard_serving_queue_rows", **labels) == 0
        assert value(after, "modelyard_serving_requests_in_flight", **labels) == 0
        assert value(after, "modelyard_serving_batch_size_rows_bucket", **labels, le="1.0") == accepted


async def test_each_app_has_its_own_registry_and_metrics_can_be_off(pyfunc):
    row_sum = pyfunc("row_sum", RowSum(), input_example=np.ones((2, 3)))
    async with app_client(served("sum", row_sum)) as first, app_client(served("sum", row_sum)) as second:
        for _ in range(3):
            await first.post("/v2/models/sum/infer", json=rows_request(np.ones((1, 3))))
        await second.post("/v2/models/sum/infer", json=rows_request(np.ones((1, 3))))
        code = {"model": "sum", "version": "1", "protocol": "v2", "code": "200"}
        assert value(await scrape(first), "modelyard_serving_requests_total", **code) == 3
        assert value(await scrape(second), "modelyard_serving_requests_total", **code) == 1
    async with app_client(served("sum", row_sum), metrics=False) as client:
        assert (
            await client.post("/v2/models/sum/infer", json=rows_request(np.ones((1, 3))))
        ).status_code == 200
        assert (await client.get("/metrics")).status_code == 404


async def test_versions_are_labelled_apart_and_replicas_follow_the_runner(pyfunc):
    row_sum = pyfunc("row_sum", RowSum(), input_example=np.ones((2, 3)))
    runner = Replicated(row_sum.predict)
    one, two = ServedModel("sum", "1", row_sum), ServedModel("sum", "2", row_sum, runner=runner)
    async with app_client(one, two) as client:
        await client.post(
            "/v2/models/sum/infer", json=rows_request(np.ones((1, 3)))
        )  # the default: version 1
        for _ in range(2):
            await client.post("/v2/models/sum/versions/2/infer", json=rows_request(np.ones((1, 3))))
        assert value(await scrape(client), "modelyard_serving_replicas", model="sum", version="2") == 1
        runner.count = 3  # as an autoscaler would: the gauge reads the runner when scraped
        samples = await scrape(client)
        for version, count in (("1", 1), ("2", 2)):
            labels = {"model": "sum", "version": version}
            assert value(samples, "modelyard_serving_request_duration_seconds_count", **labels) == count
        assert value(samples, "modelyard_serving_replicas", model="sum", version="2") == 3
        assert (
            "modelyard_serving_model_load_seconds",
            frozenset({"model": "sum", "version": "1"}.items()),
        ) not in samples
