"""Replicas as worker processes (ProcessRunner): batching in parallel under concurrent load, error isolation,
a crashing worker replaced, scaling, clean shutdown; and `modelyard serve --replicas 2` as a real server."""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from modelyard.errors import InvalidArgument, NotFound
from modelyard.models import save_model
from modelyard.serving import BatchConfig, ServedModel
from modelyard.serving.replicas import ProcessRunner
from tests.serving.conftest import oip, serving
from tests.serving.models import CRASH_VALUE, EXIT_VALUE, POISON_VALUE, ExitOn, RowSum, Stamp

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def folders(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Model folders the workers load by path."""
    root = tmp_path_factory.mktemp("replica-models")
    models = {"row_sum": RowSum(), "exit_on": ExitOn(), "stamp": Stamp(0.15)}
    for name, model in models.items():
        save_model(model, root / name, input_example=np.ones((2, 3)))
    return {name: root / name for name in models}


def replicated(name: str, runner: ProcessRunner, **config: float) -> ServedModel:
    return ServedModel(name, "1", runner, BatchConfig(**config), runner=runner)


def rows_request(values: np.ndarray) -> dict:
    return {"inputs": [oip("x", values, "FP64")]}


def alive(pid: int) -> bool:
    """Whether process `pid` runs (a zombie waiting to be reaped by someone else counts as gone)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state != "Z"


def wait_until(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


async def test_replicas_predict_batches_in_parallel_and_answer_each_request(folders):
    runner = ProcessRunner(folders["stamp"], 2, trusted=True, name="stamp/1")
    pids = runner.pids()
    assert len(set(pids)) == 2 and os.getpid() not in pids
    async with serving(replicated("stamp", runner, max_batch_size=4, max_batch_delay=0.02)) as client:
        assert client.deployment.get("stamp").platform == "modelyard_python_function"
        values = [np.array([[i, 0.0, 1.0]] * (1 + i % 2)) for i in range(24)]
        responses = await asyncio.gather(
            *(client.post("/v2/models/stamp/infer", json=rows_request(v)) for v in values)
        )
        batches = set()
        for value, response in zip(values, responses):
            assert response.status_code == 200, response.text
            out = response.json()["outputs"][0]
            rows = np.array(out["data"]).reshape(out["shape"])
            assert rows[:, 0].tolist() == value[:, 0].tolist()  # its own rows, from whichever worker
            batches.update(tuple(row[1:]) for row in rows)
        stats = client.deployment.get("stamp").batcher.stats
        assert max(stats.batch_requests) > 1 and max(stats.batch_rows) <= 4, stats.snapshot()
        assert {int(pid) for pid, _, _ in batches} == set(pids)  # both workers predicted
        spans = sorted((start, end) for _, start, end in batches)
        assert any(b_start < a_end for (_, a_end), (b_start, _) in itertools.pairwise(spans)), (
            "no two batches ran at the same time"
        )
    assert not any(alive(pid) for pid in pids)  # the deployment closed: the workers exited


async def test_a_failing_batch_is_retried_request_by_request_in_the_workers(folders):
    runner = ProcessRunner(folders["row_sum"], 2, trusted=True, name="sum/1")
    async with serving(replicated("sum", runner, max_batch_size=16, max_batch_delay=0.05)) as client:
        values = [np.array([[i, 1.0, 2.0]]) for i in range(8)]
        values[2] = np.array([[POISON_VALUE, 1.0, 2.0]])
        values[5] = np.array([[CRASH_VALUE, 1.0, 2.0]])
        responses = await asyncio.gather(
            *(client.post("/v2/models/sum/infer", json=rows_request(v)) for v in values)
        )
        for i, (value, response) in enumerate(zip(values, responses)):
            if i == 2:
                assert response.status_code == 400
                assert (
                    "The model rejected the inputs: 666.0 is not a valid reading" in response.json()["error"]
                )
            elif i == 5:
                assert response.status_code == 500
                assert response.json()["error"] == (
                    "The model failed on this request: RuntimeError: the model crashed"
                )
            else:
                assert response.status_code == 200, response.text
                assert response.json()["outputs"][0]["data"] == value.sum(axis=1).tolist()
        stats = client.deployment.get("sum").batcher.stats
        assert stats.retried_batches >= 1 and stats.failed == 2
        assert runner.replicas == 2  # exceptions in predict leave the workers running


async def test_a_crashed_worker_fails_its_batch_and_is_replaced(folders):
    runner = ProcessRunner(folders["exit_on"], 1, trusted=True, name="exit/1")
    (first,) = runner.pids()
    async with serving(replicated("exit", runner, max_batch_size=8, max_batch_delay=0.05)) as client:
        values = [np.array([[i, 1.0, 1.0]]) for i in range(4)]
        values[1] = np.array([[EXIT_VALUE, 1.0, 1.0]])
        responses = await asyncio.wait_for(
            asyncio.gather(*(client.post("/v2/models/exit/infer", json=rows_request(v)) for v in values)), 30
        )
        assert [r.status_code for r in responses] == [500] * 4  # one batch, failed whole: no hang
        message = responses[0].json()["error"]
        assert re.fullmatch(
            r"Replica 1 of model 'exit/1' exited with code 3 while predicting this request's batch; "
            r"it is being replaced\.",
            message,
        ), message
        assert not alive(first)
        response = await client.post("/v2/models/exit/infer", json=rows_request(np.array([[1.0, 2.0, 3.0]])))
        assert response.status_code == 200 and response.json()["outputs"][0]["data"] == [6.0]
        (second,) = runner.pids()
        assert second != first and runner.replicas == 1
    assert not alive(second)


def test_scale_retires_busy_workers_after_their_batch_and_close_stops_all(folders):
    runner = ProcessRunner(folders["stamp"], 1, trusted=True, name="stamp/1")
    try:
        runner.scale(3)
        assert runner.target == 3
        wait_until(lambda: runner.replicas == 3)
        pids = runner.pids()
        assert len(set(pids)) == 3
        with ThreadPoolExecutor(3) as pool:
            busy = [pool.submit(runner.predict, np.array([[i, 0.0, 0.0]])) for i in range(3)]
            wait_until(lambda: len(runner._busy) == 3)
            runner.scale(1)  # every worker is busy: two retire once their batch is answered
            assert [f.result()[0][0] for f in busy] == [0.0, 1.0, 2.0]
        wait_until(lambda: runner.replicas == 1)
        wait_until(lambda: sum(alive(pid) for pid in pids) == 1)
        assert runner.predict(np.array([[8.0, 0.0, 0.0]]))[0][0] == 8.0
        with pytest.raises(InvalidArgument, match="at least one replica"):
            runner.scale(0)
    finally:
        runner.close()
    assert not any(alive(pid) for pid in pids)


def test_a_model_that_does_not_load_fails_the_start_with_its_error(tmp_path):
    with pytest.raises(NotFound, match="No model folder at"):
        ProcessRunner(tmp_path / "missing", 2)


def test_a_remote_model_is_downloaded_once_for_every_replica(folders, s3_bucket):
    """The front process fetches an S3 model once; a replica added later loads the same local copy (here
    the bucket is emptied first, so a second download would fail the start); close() removes the copy."""
    from modelyard.artifacts import artifact_store_for

    uri = f"{s3_bucket}/models/row_sum"
    store = artifact_store_for(uri)
    store.put_dir(folders["row_sum"])
    runner = ProcessRunner(uri, 1, trusted=True, name="sum/1")
    copy = Path(runner._folder)
    try:
        assert copy.is_dir() and not str(copy).startswith(str(folders["row_sum"]))
        store.delete()
        assert not store.list_recursive()
        runner.scale(2)
        wait_until(lambda: runner.replicas == 2, timeout=30)
        assert runner.predict(np.ones((2, 3))).tolist() == [3.0, 3.0]
    finally:
        runner.close()
    assert not copy.exists()
    with pytest.raises(NotFound):
        ProcessRunner(uri, 1, trusted=True)  # nothing left to fetch: the start fails in the front process


def descendants(pid: int) -> set[int]:
    """Every process below `pid` (the fork server and the workers it forked), from /proc."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (FileNotFoundError, ProcessLookupError, IndexError):
                continue
    found, frontier = set(), {pid}
    while frontier:
        frontier = {child for child, parent in parents.items() if parent in frontier} - found
        found |= frontier
    return found


@pytest.mark.slow
def test_serve_cli_with_two_replicas(folders):
    from tests.serving.test_serve_cli import ServeProcess

    server = ServeProcess(str(folders["row_sum"]), "--name", "sum", "--trusted", "--replicas", "2")
    try:
        workers = descendants(server.process.pid)
        assert len(workers) >= 2  # two replicas (and the fork server they come from)
        values = [np.array([[i, 2.0, 3.0]]) for i in range(12)]

        async def send() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                return await asyncio.gather(
                    *(client.post("/v2/models/sum/infer", json=rows_request(v)) for v in values)
                )

        for value, response in zip(values, asyncio.run(send())):
            assert response.status_code == 200, response.text
            assert response.json()["outputs"][0]["data"] == value.sum(axis=1).tolist()
        metrics = httpx.get(server.url + "/metrics").text
        assert 'modelyard_serving_replicas{model="sum",version="1"} 2.0' in metrics
    finally:
        assert server.stop(), server.output()
    assert "Serving sum version 1 (python_function)" in server.output()
    assert "2 worker processes" in server.output()
    wait_until(lambda: not any(alive(pid) for pid in workers), timeout=10)
