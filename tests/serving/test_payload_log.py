"""Payload logging: a sample of requests and responses written as Parquet by day, read back by time window;
writing never blocks or fails a request."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np
import pytest

from modelyard.artifacts.local import LocalArtifactStore
from modelyard.errors import InvalidArgument
from modelyard.serving.payload_log import PayloadLogConfig, PayloadLogger, PayloadRecord, read_payloads
from tests.serving.conftest import app_client, oip, served
from tests.serving.models import Identity, RowSum, TextLength

pytestmark = pytest.mark.anyio


def parquet_files(root: Path) -> list[Path]:
    return sorted(root.rglob("*.parquet"))


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.02)


def record(
    request_id: str, when: datetime, rows: int = 1, model: str = "m", version: str = "1"
) -> PayloadRecord:
    x = np.arange(rows * 2, dtype=np.float64).reshape(rows, 2)
    return PayloadRecord(
        request_id, when.timestamp(), model, version, "v2", 200, 0.002, None, x, x[:, 0], rows
    )


async def test_every_request_is_logged_with_its_request_id_inputs_and_outputs(iris, tmp_path):
    config = PayloadLogConfig(str(tmp_path), sample=1.0)
    started = datetime.now(timezone.utc)
    sent: dict[str, tuple[slice, str]] = {}
    async with app_client(served("iris", iris.predictor), payload_log=config) as client:
        for i in range(6):
            rows = slice(i * 10, i * 10 + 1 + i % 3)
            tensor = oip("x", iris.rows[rows], "FP64")
            response = await client.post("/v2/models/iris/infer", json={"id": f"req-{i}", "inputs": [tensor]})
            assert response.json()["id"] == f"req-{i}"
            sent[f"req-{i}"] = (rows, "v2")
        response = await client.post(
            "/v2/models/iris/infer", json={"inputs": [oip("x", iris.rows[70:72], "FP64")]}
        )
        sent[response.json()["id"]] = (slice(70, 72), "v2")  # the generated id, as answered
        response = await client.post(
            "/v1/models/iris:predict",
            json={"instances": iris.rows[80:83].tolist()},
            headers={"X-Request-Id": "v1-a"},
        )
        assert response.status_code == 200
        sent["v1-a"] = (slice(80, 83), "v1")
        split = iris.X.iloc[90:92].to_dict(orient="split")
        response = await client.post(
            "/invocations", json={"dataframe_split": split}, headers={"X-Request-Id": "inv"}
        )
        sent["inv"] = (slice(90, 92), "invocations")
        bad = await client.post(
            "/v2/models/iris/infer", json={"id": "bad", "inputs": [oip("x", [[1.0, 2.0]], "FP64")]}
        )
        assert bad.status_code == 400
        assert parquet_files(tmp_path) == []  # buffered until a flush: here, at shutdown
    logger = client.app.state.payload_log  # type: ignore[attr-defined]
    assert logger.written_rows == sum(s.stop - s.start for s, _ in sent.values()) + 1 and logger.errors == 0

    frame = read_payloads(str(tmp_path), "iris")
    assert set(frame["request_id"]) == {*sent, "bad"}
    assert frame["timestamp"].min() >= started and frame["timestamp"].max() <= datetime.now(timezone.utc)
    for request_id, (rows, protocol) in sent.items():
        part = frame[frame["request_id"] == request_id]
        assert part["row"].tolist() == list(range(rows.stop - rows.start))
        assert set(part["protocol"]) == {protocol} and set(part["status"]) == {200}
        assert set(part["model"]) == {"iris"} and set(part["version"]) == {"1"}
        assert part["error"].isna().all() and (part["latency_ms"] > 0).all()
        for j, column in enumerate(iris.columns):
            assert part[f"input.{column}"].tolist() == iris.rows[rows, j].tolist()
        assert part["output.output-0"].tolist() == iris.expected[rows].tolist()
    bad_row = frame[frame["request_id"] == "bad"].iloc[0]
    assert bad_row["status"] == 400 and "shape (1, 2)" in bad_row["error"]
    assert np.isnan(bad_row["output.output-0"]) and np.isnan(bad_row[f"input.{iris.columns[0]}"])


async def test_tensors_are_logged_one_row_per_batch_row_with_list_columns(pyfunc, tmp_path):
    identity = pyfunc("identity", Identity(), signature=False)
    text = pyfunc("text", TextLength(), input_example=np.array(["ab", "c"], dtype=object))
    config = PayloadLogConfig(str(tmp_path), sample=1.0)
    async with app_client(served("echo", identity), served("text", text), payload_log=config) as client:
        matrix = np.arange(6, dtype=np.float32).reshape(2, 3)
        cube = np.arange(8, dtype=np.int32).reshape(2, 2, 2)
        for request_id, array, datatype in (("matrix", matrix, "FP32"), ("cube", cube, "INT32")):
            body = {"id": request_id, "inputs": [oip("t", array, datatype)]}
            assert (await client.post("/v2/models/echo/infer", json=body)).status_code == 200
        body = {"id": "words", "inputs": [oip("t", ["héllo", "ok"], "BYTES")]}
        assert (await client.post("/v2/models/text/infer", json=body)).status_code == 200

    echo = read_payloads(str(tmp_path), "echo", version="1")
    by_id = {request_id: part for request_id, part in echo.groupby("request_id")}
    assert by_id["matrix"]["input.input-0"].map(list).tolist() == matrix.tolist()
    assert by_id["matrix"]["output.output-0"].map(list).tolist() == matrix.tolist()
    assert [[list(r) for r in row] for row in by_id["cube"]["input.input-0"]] == cube.tolist()
    words = read_payloads(str(tmp_path), "text")
    assert words["input.input-0"].tolist() == ["héllo", "ok"]
    assert words["output.length"].tolist() == [5, 2] and words["output.upper"].tolist() == ["HÉLLO", "OK"]


async def test_a_zero_sample_logs_nothing(pyfunc, tmp_path):
    row_sum = pyfunc("row_sum", RowSum(), input_example=np.ones((2, 3)))
    async with app_client(
        served("sum", row_sum), payload_log=PayloadLogConfig(str(tmp_path), sample=0.0)
    ) as client:
        assert client.app.state.payload_log is None  # type: ignore[attr-defined]
        for _ in range(20):
            response = await client.post(
                "/v2/models/sum/infer", json={"inputs": [oip("x", np.ones((1, 3)), "FP64")]}
            )
            assert response.status_code == 200
    assert parquet_files(tmp_path) == []
    logger = PayloadLogger(PayloadLogConfig(str(tmp_path), sample=0.0))
    assert not any(logger.sampled() for _ in range(1000))


async def test_a_half_sample_logs_about_half_of_2000_requests(pyfunc, tmp_path):
    row_sum = pyfunc("row_sum", RowSum(), input_example=np.ones((2, 3)))
    config = PayloadLogConfig(str(tmp_path), sample=0.5, flush_rows=500)
    sent = [f"r{i}" for i in range(2000)]
    async with app_client(served("sum", row_sum, max_batch_delay=0.001), payload_log=config) as client:
        for start in range(0, len(sent), 100):
            calls = [
                client.post(
                    "/v2/models/sum/infer", json={"id": i, "inputs": [oip("x", np.ones((1, 3)), "FP64")]}
                )
                for i in sent[start : start + 100]
            ]
            assert {r.status_code for r in await asyncio.gather(*calls)} == {200}
    logged = read_payloads(str(tmp_path), "sum")
    assert logged["request_id"].is_unique and set(logged["request_id"]) <= set(sent)
    assert abs(len(logged) / len(sent) - 0.5) < 0.05, len(logged)  # 0.05 is over 4 standard deviations
    assert len(parquet_files(tmp_path)) >= 2  # written every 500 rows, not only at shutdown


def test_files_are_partitioned_by_day_and_read_by_time_window(tmp_path):
    logger = PayloadLogger(PayloadLogConfig(str(tmp_path), flush_seconds=3600))
    day = datetime(2026, 3, 1, 23, 59, 59, tzinfo=timezone.utc)
    for i in range(3):
        logger.log(record(f"a{i}", day + timedelta(days=i), rows=2))
    logger.log(record("b0", day + timedelta(seconds=2), version="2"))
    logger.close()
    files = sorted(p.relative_to(tmp_path).as_posix() for p in parquet_files(tmp_path))
    assert [f.rsplit("/", 1)[0] for f in files] == [
        "m/1/date=2026-03-01",
        "m/1/date=2026-03-02",
        "m/1/date=2026-03-03",
        "m/2/date=2026-03-02",
    ]
    assert all(f.rsplit("/", 1)[1].startswith("part-") for f in files)

    everything = read_payloads(str(tmp_path), "m")
    assert everything["request_id"].tolist() == ["a0", "a0", "b0", "a1", "a1", "a2", "a2"]
    assert read_payloads(str(tmp_path), "m", version="1")["request_id"].unique().tolist() == [
        "a0",
        "a1",
        "a2",
    ]
    window = read_payloads(
        str(tmp_path), "m", since=day + timedelta(seconds=1), until=day + timedelta(days=2)
    )
    assert window["request_id"].unique().tolist() == ["b0", "a1"]
    naive = read_payloads(str(tmp_path), "m", since=datetime(2026, 3, 3))  # naive: UTC
    assert naive["request_id"].unique().tolist() == ["a2"]
    assert read_payloads(str(tmp_path), "other").empty


def test_flushes_every_n_rows_and_every_t_seconds(tmp_path):
    by_rows = PayloadLogger(PayloadLogConfig(str(tmp_path / "rows"), flush_rows=5, flush_seconds=3600))
    now = datetime.now(timezone.utc)
    for i in range(4):
        by_rows.log(record(f"r{i}", now))
    time.sleep(0.2)
    assert parquet_files(tmp_path / "rows") == []
    by_rows.log(record("r4", now, rows=3))
    wait_for(lambda: len(parquet_files(tmp_path / "rows")) == 1)
    by_rows.close()
    assert len(read_payloads(str(tmp_path / "rows"), "m")) == 7

    by_time = PayloadLogger(PayloadLogConfig(str(tmp_path / "time"), flush_rows=1000, flush_seconds=0.3))
    by_time.log(record("t0", now))
    wait_for(lambda: len(parquet_files(tmp_path / "time")) == 1)
    by_time.log(record("t1", now))
    wait_for(lambda: len(parquet_files(tmp_path / "time")) == 2)
    by_time.close()
    assert read_payloads(str(tmp_path / "time"), "m")["request_id"].tolist() == ["t0", "t1"]


class FailingStore(LocalArtifactStore):
    """A store that takes a while, then fails, on every write."""

    def __init__(self, root_uri: str, delay: float = 0.0) -> None:
        super().__init__(root_uri)
        self.delay = delay
        self.attempts = 0

    def _put_file(self, local_path: Path, rel: str) -> None:
        self.attempts += 1
        time.sleep(self.delay)
        raise OSError("the artifact store is down")


async def test_a_failing_artifact_store_never_affects_responses(pyfunc, tmp_path, caplog):
    row_sum = pyfunc("row_sum", RowSum(), input_example=np.ones((2, 3)))
    store = FailingStore(str(tmp_path), delay=0.5)
    logger = PayloadLogger(PayloadLogConfig(str(tmp_path), flush_rows=10), store=store)
    async with app_client(served("sum", row_sum), payload_log=logger) as client:
        started = time.perf_counter()
        for start in range(0, 60, 20):
            values = [np.full((1, 3), float(i)) for i in range(start, start + 20)]
            calls = [
                client.post("/v2/models/sum/infer", json={"inputs": [oip("x", v, "FP64")]}) for v in values
            ]
            for response, v in zip(await asyncio.gather(*calls), values):
                assert response.status_code == 200
                assert response.json()["outputs"][0]["data"] == v.sum(axis=1).tolist()
        assert time.perf_counter() - started < 1.5  # the writes take 0.5 s each, in the background
        metrics = client.app.state.metrics  # type: ignore[attr-defined]
    assert store.attempts >= 1 and logger.errors == store.attempts
    assert logger.written_rows == 0 and logger.dropped_rows == 60
    exposition = metrics.exposition().decode()
    assert f"modelyard_serving_payload_log_errors_total {float(store.attempts)}" in exposition
    assert 'modelyard_serving_payload_log_rows_total{outcome="dropped"} 60.0' in exposition
    assert "the artifact store is down" in caplog.text
    assert parquet_files(tmp_path) == []


def test_an_unsupported_uri_is_refused_at_start_up():
    with pytest.raises(InvalidArgument, match="Unsupported artifact URI"):
        PayloadLogger(PayloadLogConfig("nope://bucket/logs"))
    for bad in ({"sample": 1.5}, {"sample": -0.1}, {"flush_rows": 0}, {"flush_seconds": 0}):
        with pytest.raises(InvalidArgument):
            PayloadLogConfig("logs", **bad)


def test_a_full_buffer_drops_new_records_and_counts_them(tmp_path):
    release = threading.Event()

    class BlockedStore(LocalArtifactStore):
        def _put_file(self, local_path: Path, rel: str) -> None:
            release.wait(10)
            super()._put_file(local_path, rel)

    config = PayloadLogConfig(str(tmp_path), flush_rows=4, max_buffer_rows=4, flush_seconds=3600)
    logger = PayloadLogger(config, store=BlockedStore(str(tmp_path)))
    now = datetime.now(timezone.utc)
    for i in range(4):
        logger.log(record(f"a{i}", now))
    wait_for(lambda: logger._rows == 0)  # the writer took the first four and is blocked writing them
    for i in range(6):
        logger.log(record(f"b{i}", now))  # four fit in the buffer, two are dropped
    assert logger.dropped_rows == 2
    release.set()
    logger.close()
    assert logger.written_rows == 8
    assert len(read_payloads(str(tmp_path), "m")) == 8
