"""The buffered writer never loses a point: an unreachable store spools to disk, a later flush replays."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import modelyard as my
from modelyard.errors import Unavailable
from modelyard.schemas import Metric
from modelyard.tracking.writer import MAX_BATCH, BufferedWriter


class FlakyStore:
    """The real store behind a switch that makes it unreachable."""

    def __init__(self, client: my.Client) -> None:
        self.client = client
        self.down = False
        self.calls = 0

    def __call__(self, run_id: str, metrics: Sequence[Metric]) -> None:
        self.calls += 1
        if self.down:
            raise Unavailable("connection refused")
        self.client.store.log_batch(run_id, metrics=metrics)


def _run() -> tuple[my.Client, str]:
    client = my.Client()
    return client, client.create_run("0").run_id


def test_points_spool_while_store_is_down_and_replay_later(tmp_path: Path) -> None:
    client, run_id = _run()
    sink = FlakyStore(client)
    writer = BufferedWriter(sink, tmp_path / "spool", flush_interval=60)
    for i in range(100):
        writer.add(run_id, "loss", float(i), i, i)
    sink.down = True
    for i in range(100, 250):
        writer.add(run_id, "loss", float(i), i, i)
    assert writer.flush() is False
    assert writer.pending_spool_files()
    sink.down = False
    for i in range(250, 300):
        writer.add(run_id, "loss", float(i), i, i)
    assert writer.flush() is True
    assert writer.pending_spool_files() == []
    hist = client.get_metric_history(run_id, "loss")
    assert sorted(hist.steps) == list(range(300))  # every point exactly once
    writer.close()


def test_spool_is_replayed_by_the_next_process(tmp_path: Path) -> None:
    client, run_id = _run()
    dead = FlakyStore(client)
    dead.down = True
    first = BufferedWriter(dead, tmp_path / "spool", flush_interval=60)
    for i in range(10):
        first.add(run_id, "x", float("nan") if i == 3 else float(i), i, i)
    assert first.close() is False  # "process" ends with the store down

    second = BufferedWriter(FlakyStore(client), tmp_path / "spool", flush_interval=60)
    assert second.replay_spool() is True
    hist = client.get_metric_history(run_id, "x")
    assert hist.steps == list(range(10))
    assert hist.values[3] != hist.values[3]  # NaN survived the spool


def test_refused_points_are_kept_not_dropped(tmp_path: Path) -> None:
    client, run_id = _run()
    client.delete_run(run_id)
    writer = BufferedWriter(FlakyStore(client), tmp_path / "spool", flush_interval=60)
    writer.add(run_id, "x", 1.0, 0, 0)
    assert writer.flush() is False
    rejected = list((tmp_path / "spool").glob("*.rejected.jsonl"))
    assert len(rejected) == 1 and '"k": "x"' in rejected[0].read_text()


def test_background_thread_flushes_without_being_asked(tmp_path: Path) -> None:
    client, run_id = _run()
    stored = threading.Event()

    def sink(rid: str, metrics: Sequence[Metric]) -> None:
        client.store.log_batch(rid, metrics=metrics)
        stored.set()

    writer = BufferedWriter(sink, tmp_path / "spool", flush_interval=0.05)
    writer.add(run_id, "x", 1.0, 0, 0)
    assert stored.wait(5)
    assert len(client.get_metric_history(run_id, "x")) == 1
    writer.close()


def test_large_backlog_is_sent_in_bounded_batches(tmp_path: Path) -> None:
    client, run_id = _run()
    sizes: list[int] = []

    def sink(rid: str, metrics: Sequence[Metric]) -> None:
        sizes.append(len(metrics))
        client.store.log_batch(rid, metrics=metrics)

    writer = BufferedWriter(sink, tmp_path / "spool", flush_interval=60)
    for i in range(MAX_BATCH * 2 + 10):
        writer.add(run_id, "x", float(i), i, i)
    writer.flush()
    assert max(sizes) <= MAX_BATCH and sum(sizes) == MAX_BATCH * 2 + 10
    writer.close()


def test_concurrent_producers_lose_nothing(tmp_path: Path) -> None:
    client, run_id = _run()
    writer = BufferedWriter(FlakyStore(client), tmp_path / "spool", flush_interval=0.01)

    def produce(k: int) -> None:
        for i in range(2000):
            writer.add(run_id, f"k{k}", float(i), i, i)

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    writer.close()
    for k in range(4):
        assert client.get_metric_history(run_id, f"k{k}").steps == list(range(2000))


def test_ending_a_run_stores_its_buffered_points_with_the_status() -> None:
    client, run_id = _run()
    for i in range(10):
        client.log_metric(run_id, "x", float(i))
    info = client.set_terminated(run_id)
    assert info.status == my.RunStatus.FINISHED
    assert client.get_metric_history(run_id, "x").steps == list(range(10))


def test_points_survive_a_failed_run_end(tmp_path: Path) -> None:
    client, run_id = _run()
    client.log_metric(run_id, "x", 1.0)
    client.store.delete_run(run_id)  # the end is refused: the run is deleted
    import pytest

    with pytest.raises(my.ModelyardError):
        client.set_terminated(run_id)
    client.store.restore_run(run_id)
    assert client.flush()  # the point went back to the buffer and is stored now
    assert len(client.get_metric_history(run_id, "x")) == 1
