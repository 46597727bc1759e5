"""A real uvicorn server process: the SDK and CLI over HTTP, a restart in the middle of training, and
16 concurrent clients that lose nothing."""

from __future__ import annotations

import multiprocessing as mp
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import modelyard as my
from tests.server.live import LiveServer


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'server.db'}"
    from tests.store.conftest import _reset_postgres

    url: str = request.getfixturevalue("postgres_url")
    _reset_postgres(url)
    return url


@pytest.fixture
def server(backend: str, tmp_path: Path) -> Iterator[LiveServer]:
    live = LiveServer(backend, tmp_path / "artifacts").start()
    yield live
    live.stop()


def test_fluent_api_and_cli_over_http(server: LiveServer, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MODELYARD_TRACKING_URI", server.url)
    with my.start_run(experiment="remote", params={"lr": 0.1}) as run:
        for i in range(500):
            my.log_metric("loss", 1 / (i + 1))
        my.log_text("hello", "notes.txt")
    client = my.Client()
    got = client.get_run(run.run_id)
    assert got.info.status == my.RunStatus.FINISHED and got.data.params == {"lr": "0.1"}
    assert len(client.get_metric_history(run.run_id, "loss")) == 500
    assert [r.run_id for r in my.search_runs("remote", "params.lr = '0.1'")] == [run.run_id]
    from click.testing import CliRunner

    from modelyard.cli.main import cli

    result = CliRunner().invoke(cli, ["runs", "show", run.run_id, "--json"])
    assert result.exit_code == 0 and run.run_id in result.output
    # artifacts went through the server's proxy; purging removes them through it too
    assert "notes.txt" in [f.path for f in client.list_artifacts(run.run_id)]
    store = client.artifact_store(run.run_id)
    assert type(store).__name__ == "HttpArtifactStore"
    with pytest.raises(my.ModelyardError, match="delete it before purging"):
        client.purge_run(run.run_id)  # refused before any artifact goes
    assert store.exists("notes.txt")
    client.delete_run(run.run_id)
    client.purge_run(run.run_id)
    assert not list(Path(server.artifacts).rglob("notes.txt"))  # gone from the server's artifact root


def test_server_restart_mid_training_loses_no_point(
    backend: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    live = LiveServer(backend, tmp_path / "artifacts").start()
    monkeypatch.setenv("MODELYARD_TRACKING_URI", live.url)
    monkeypatch.setenv("MODELYARD_HTTP_RETRIES", "1")  # give up fast: the points wait in the journal
    client = my.Client()
    run_id = client.create_run("0").run_id
    for i in range(1000):
        client.log_metric(run_id, "x", float(i), step=i)
    assert client.flush()
    live.stop()
    for i in range(1000, 2000):  # the server is down: training goes on
        client.log_metric(run_id, "x", float(i), step=i)
    assert client.flush() is False  # in the journal, not lost
    live.start()
    for i in range(2000, 3000):
        client.log_metric(run_id, "x", float(i), step=i)
    assert client.flush() is True
    client.set_terminated(run_id)
    assert client.get_metric_history(run_id, "x").steps == list(range(3000))
    live.stop()


POINTS_PER_CLIENT = 100_000
CLIENTS = 16


def _load_client(url: str, run_id: str, worker: int) -> None:
    from modelyard.schemas import Metric

    client = my.Client(url)
    now = int(time.time() * 1000)
    batch = 10_000
    for start in range(0, POINTS_PER_CLIENT, batch):
        client.log_batch(
            run_id,
            metrics=[
                Metric(key=f"w{worker}", value=float(i), step=i, timestamp=now)
                for i in range(start, start + batch)
            ],
        )


@pytest.mark.slow
def test_sixteen_concurrent_clients_lose_nothing(tmp_path: Path) -> None:
    live = LiveServer(f"sqlite:///{tmp_path / 'load.db'}", tmp_path / "artifacts").start()
    try:
        run_id = my.Client(live.url).create_run("0").run_id
        ctx = mp.get_context("spawn")
        procs = [ctx.Process(target=_load_client, args=(live.url, run_id, w)) for w in range(CLIENTS)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(600)
        assert [p.exitcode for p in procs] == [0] * CLIENTS
        client = my.Client(live.url)
        for w in range(CLIENTS):
            hist = client.get_metric_history(
                run_id,
                f"w{w}",
            )
            assert len(hist) == POINTS_PER_CLIENT and hist.steps[-1] == POINTS_PER_CLIENT - 1, w
    finally:
        live.stop()


def test_multi_worker_server_answers_small_requests_without_nagle_delay(tmp_path: Path) -> None:
    """Without TCP_NODELAY each keep-alive response waits ~40 ms for a delayed ACK (see server/protocol.py)."""
    import statistics

    import httpx

    live = LiveServer(f"sqlite:///{tmp_path / 'w.db'}", tmp_path / "artifacts", workers=2).start()
    try:
        with httpx.Client(base_url=live.url) as http:
            for _ in range(10):
                http.get("/api/v1/experiments/0")
            samples = []
            for _ in range(40):
                start = time.perf_counter()
                assert http.get("/api/v1/experiments/0").status_code == 200
                samples.append(time.perf_counter() - start)
        assert statistics.median(samples) < 0.02, f"median {statistics.median(samples) * 1000:.1f} ms"
    finally:
        live.stop()


def test_a_response_goes_out_in_one_send() -> None:
    """uvicorn writes a response's head and body separately; the protocol's transport sends what one turn of
    the event loop wrote in one write, a big body as it comes, and what is left when the connection closes."""
    import asyncio

    from modelyard.server.protocol import FLUSH_BYTES, _OneSendTransport

    class Recorder:
        def __init__(self) -> None:
            self.writes: list[bytes] = []
            self.closed = False

        def write(self, data: bytes) -> None:
            self.writes.append(data)

        def is_closing(self) -> bool:
            return self.closed

        def close(self) -> None:
            self.closed = True

        def get_write_buffer_size(self) -> int:
            return 0

        def get_extra_info(self, name: str) -> str:
            return f"info:{name}"

    async def scenario() -> Recorder:
        real = Recorder()
        transport = _OneSendTransport(real, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n")
        transport.write(b"{}")
        assert real.writes == [] and transport.get_write_buffer_size() == 40
        await asyncio.sleep(0)  # the turn ends
        assert real.writes == [b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\n{}"]
        transport.write(b"x" * FLUSH_BYTES)  # big: sent at once
        assert len(real.writes) == 2
        transport.write(b"tail")
        transport.close()
        assert real.writes[-1] == b"tail" and real.closed
        assert transport.get_extra_info("peername") == "info:peername"  # the rest is the real transport's
        return real

    real = asyncio.run(scenario())
    assert len(real.writes) == 3
