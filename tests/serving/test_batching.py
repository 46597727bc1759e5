"""Dynamic batching under concurrent load, error isolation, overload (503), timeouts (504) and draining."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from modelyard.errors import Unavailable
from modelyard.serving import BatchConfig, Batcher, ThreadRunner
from modelyard.serving.payload import from_tensors
from tests.serving.conftest import oip, served, serving
from tests.serving.models import CRASH_VALUE, POISON_VALUE, RowSum, Slow

pytestmark = pytest.mark.anyio


def rows_request(values: np.ndarray) -> dict:
    return {"inputs": [oip("x", values, "FP64")]}


async def test_concurrent_requests_form_batches_and_get_their_own_rows(iris, pyfunc):
    row_sum = pyfunc("row_sum", RowSum(), input_example=np.ones((2, 3)))
    async with serving(
        served("iris", iris.predictor, max_batch_size=32, max_batch_delay=0.02),
        served("sum", row_sum, max_batch_size=16, max_batch_delay=0.02),
    ) as client:
        # 50 iris requests of 1-3 rows each (OIP, v1 and invocations mixed) and 50 row-sum requests.
        calls, expected = [], []
        for i in range(50):
            rows = slice(i * 3 % 148, i * 3 % 148 + 1 + i % 3)
            if i % 3 == 0:
                calls.append(client.post("/v2/models/iris/infer", json=rows_request(iris.rows[rows])))
            elif i % 3 == 1:
                calls.append(
                    client.post("/v1/models/iris:predict", json={"instances": iris.rows[rows].tolist()})
                )
            else:
                split = iris.X.iloc[rows].to_dict(orient="split")
                calls.append(client.post("/invocations", json={"dataframe_split": split}))
            expected.append(iris.expected[rows].tolist())
        for i in range(50):
            values = np.array([[i, i * 1000.0, 0.5]] * (1 + i % 2))
            calls.append(client.post("/v2/models/sum/infer", json=rows_request(values)))
            expected.append(values.sum(axis=1).tolist())
        responses = await asyncio.gather(*calls)
        for i, (response, want) in enumerate(zip(responses, expected)):
            assert response.status_code == 200, response.text
            body = response.json()
            got = body["outputs"][0]["data"] if "outputs" in body else body["predictions"]
            assert got == want, f"request {i} got another request's rows"
        for name, limit in (("iris", 32), ("sum", 16)):
            stats = client.deployment.get(name).batcher.stats
            assert stats.requests == 50 and stats.queue_rows == 0
            assert max(stats.batch_requests) > 1, stats.snapshot()  # batches of several requests formed
            assert max(stats.batch_rows) <= limit
            assert sum(stats.batch_rows.values()) == stats.batches


async def test_a_failing_request_does_not_fail_its_batch(pyfunc):
    row_sum = pyfunc("row_sum", RowSum(), input_example=np.ones((2, 3)))
    async with serving(served("sum", row_sum, max_batch_size=64, max_batch_delay=0.05)) as client:
        values = [np.array([[float(i), 1.0, 2.0]]) for i in range(20)]
        values[7][0, 1] = POISON_VALUE
        values[13][0, 2] = CRASH_VALUE
        responses = await asyncio.gather(
            *(client.post("/v2/models/sum/infer", json=rows_request(v)) for v in values)
        )
        for i, response in enumerate(responses):
            if i == 7:
                assert response.status_code == 400
                assert response.json() == {
                    "error": "The model rejected the inputs: 666.0 is not a valid reading"
                }
            elif i == 13:
                assert response.status_code == 500
                assert response.json() == {
                    "error": "The model failed on this request: RuntimeError: the model crashed"
                }
            else:
                assert response.status_code == 200
                assert response.json()["outputs"][0]["data"] == [i + 3.0]
        stats = client.deployment.get("sum").batcher.stats
        assert stats.retried_batches >= 1 and stats.failed == 2
        assert max(stats.batch_requests) > 1


async def test_overload_answers_503_with_retry_after_at_once(pyfunc):
    slow = pyfunc("slow", Slow(0.3), input_example=np.ones((1, 2)))
    async with serving(served("slow", slow, max_batch_size=1, max_batch_delay=0, max_queue=2)) as client:

        async def call(i: int) -> tuple[int, float, str | None]:
            started = time.perf_counter()
            response = await client.post("/v2/models/slow/infer", json=rows_request(np.array([[i, 0.0]])))
            return response.status_code, time.perf_counter() - started, response.headers.get("retry-after")

        results = await asyncio.gather(*(call(i) for i in range(8)))
        rejected = [r for r in results if r[0] == 503]
        assert {r[0] for r in results} == {200, 503}
        assert len(rejected) >= 4
        assert all(seconds < 0.25 for _, seconds, _ in rejected)  # refused at once, not after waiting
        assert all(retry is not None and int(retry) >= 1 for _, _, retry in rejected)
        response = await client.post("/v2/models/slow/infer", json=rows_request(np.zeros((3, 2))))
        assert response.status_code == 413 and "at most 2 per request" in response.json()["error"]
        assert client.deployment.get("slow").batcher.stats.rejected == len(rejected)


async def test_timeout_answers_504_and_frees_the_queue(pyfunc):
    slow = pyfunc("slow", Slow(0.3), input_example=np.ones((1, 2)))
    async with serving(served("slow", slow, max_batch_size=1, max_batch_delay=0, timeout=0.1)) as client:
        first, second = await asyncio.gather(
            client.post("/v2/models/slow/infer", json=rows_request(np.ones((1, 2)))),
            client.post("/v2/models/slow/infer", json=rows_request(np.ones((1, 2)))),
        )
        for response in (first, second):
            assert response.status_code == 504
            assert "did not answer within 100 ms" in response.json()["error"]
        stats = client.deployment.get("slow").batcher.stats
        assert stats.timed_out == 2 and stats.queue_rows == 0
        await asyncio.sleep(0.35)  # the running batch finishes; the queued request was dropped
        assert stats.batches == 1


async def test_close_drains_queued_requests_then_refuses(pyfunc):
    slow = pyfunc("slow", Slow(0.05), input_example=np.ones((1, 2)))
    batcher = Batcher(ThreadRunner(slow.predict), BatchConfig(max_batch_size=2, max_batch_delay=0))
    payloads = [from_tensors(slow.signature.inputs, {"x": np.full((1, 2), float(i))}) for i in range(5)]
    pending = [asyncio.ensure_future(batcher.submit(p)) for p in payloads]
    await asyncio.sleep(0)  # all queued
    await batcher.close()
    assert [float(t.result()[0]) for t in pending] == [0.0, 1.0, 2.0, 3.0, 4.0]
    with pytest.raises(Unavailable, match="shutting down"):
        await batcher.submit(payloads[0])


async def test_batch_config_is_checked():
    from modelyard.errors import InvalidArgument

    for bad in ({"max_batch_size": 0}, {"max_batch_delay": -1}, {"max_queue": 0}, {"timeout": 0}):
        with pytest.raises(InvalidArgument):
            BatchConfig(**bad)
