"""The buffered writer never loses a point: it journals each one before `add` returns, keeps what an
unreachable store did not take, and stores each point once, whoever sends it and however often."""

from __future__ import annotations

import multiprocessing as mp
import os
import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

import modelyard as my
from modelyard.errors import Unavailable
from modelyard.schemas import BatchSequence, Metric
from modelyard.tracking import journal
from modelyard.tracking.writer import MAX_BATCH, BufferedWriter


class FlakyStore:
    """The real store behind a switch that makes it unreachable, or that loses its replies."""

    def __init__(self, client: my.Client) -> None:
        self.client = client
        self.down = False
        self.lose_replies = False
        self.calls = 0

    def __call__(self, run_id: str, metrics: Sequence[Metric], sequence: BatchSequence) -> None:
        self.calls += 1
        if self.down:
            raise Unavailable("connection refused")
        self.client.store.log_batch(run_id, metrics=metrics, sequence=sequence)
        if self.lose_replies:
            raise Unavailable("read timed out")  # stored, but the writer cannot know it


def _run() -> tuple[my.Client, str]:
    client = my.Client()
    return client, client.create_run("0").run_id


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def test_points_wait_in_the_journal_while_the_store_is_down(tmp_path: Path) -> None:
    client, run_id = _run()
    sink = FlakyStore(client)
    writer = BufferedWriter(sink, tmp_path / "journal", flush_interval=60)
    for i in range(100):
        writer.add(run_id, "loss", float(i), i, i)
    sink.down = True
    for i in range(100, 250):
        writer.add(run_id, "loss", float(i), i, i)
    assert writer.flush() is False
    sink.down = False
    for i in range(250, 300):
        writer.add(run_id, "loss", float(i), i, i)
    assert writer.flush() is True
    assert client.get_metric_history(run_id, "loss").steps == list(range(300))  # every point exactly once
    assert writer.close() is True
    assert _files(tmp_path / "journal") == []  # all stored: the journal is gone


def test_a_batch_whose_reply_was_lost_is_not_stored_twice(tmp_path: Path) -> None:
    client, run_id = _run()
    sink = FlakyStore(client)
    writer = BufferedWriter(sink, tmp_path / "journal", flush_interval=60)
    sink.lose_replies = True
    for i in range(10):
        writer.add(run_id, "x", float(i), i, i)
    assert writer.flush() is False  # stored, but not known to be
    sink.lose_replies = False
    writer.add(run_id, "x", 10.0, 10, 10)
    assert writer.flush() is True  # sends all 11 again
    assert client.get_metric_history(run_id, "x").steps == list(range(11))
    writer.close()


def test_the_journal_of_a_writer_closed_while_the_store_was_down_is_stored_by_the_next(
    tmp_path: Path,
) -> None:
    client, run_id = _run()
    dead = FlakyStore(client)
    dead.down = True
    first = BufferedWriter(dead, tmp_path / "journal", flush_interval=60)
    for i in range(10):
        first.add(run_id, "x", float("nan") if i == 3 else float(i), i, i)
    assert first.close() is False  # the "process" ends with the store down: its journal stays
    assert any(name.endswith(".seg") for name in _files(tmp_path / "journal"))

    second = BufferedWriter(FlakyStore(client), tmp_path / "journal", flush_interval=60)
    assert second.flush() is True  # a flush with nothing of its own still stores what was left
    hist = client.get_metric_history(run_id, "x")
    assert hist.steps == list(range(10))
    assert hist.values[3] != hist.values[3]  # NaN survived the journal
    assert _files(tmp_path / "journal") == []


def test_a_live_writers_journal_is_left_to_it(tmp_path: Path) -> None:
    client, run_id = _run()
    dead = FlakyStore(client)
    dead.down = True
    alive = BufferedWriter(dead, tmp_path / "journal", flush_interval=60)
    alive.add(run_id, "x", 1.0, 0, 0)
    assert alive.flush() is False
    other = BufferedWriter(FlakyStore(client), tmp_path / "journal", flush_interval=60)
    assert other.flush() is True  # nothing of its own; the live journal is not an orphan
    assert len(client.get_metric_history(run_id, "x")) == 0
    alive.close()
    assert other.flush() is True
    assert len(client.get_metric_history(run_id, "x")) == 1


def test_a_journal_left_after_its_points_were_stored_sends_nothing_again(tmp_path: Path) -> None:
    client, run_id = _run()
    first = BufferedWriter(FlakyStore(client), tmp_path / "journal", flush_interval=60)
    for i in range(1000):
        first.add(run_id, "x", float(i), i, i)
    assert first.flush() is True
    assert first._journal is not None
    first._journal.close(remove=False)  # as a process killed after its last flush leaves it
    counting = FlakyStore(client)
    second = BufferedWriter(counting, tmp_path / "journal", flush_interval=60)
    assert second.flush() is True
    assert counting.calls == 0  # the lock file noted them as stored
    assert _files(tmp_path / "journal") == []
    assert len(client.get_metric_history(run_id, "x")) == 1000


def test_refused_points_are_kept_not_dropped(tmp_path: Path) -> None:
    client, run_id = _run()
    client.delete_run(run_id)
    writer = BufferedWriter(FlakyStore(client), tmp_path / "journal", flush_interval=60)
    writer.add(run_id, "x", 1.0, 0, 0)
    assert writer.flush() is False
    rejected = list((tmp_path / "journal").glob("*.rejected.jsonl"))
    assert len(rejected) == 1 and '"k": "x"' in rejected[0].read_text()
    assert writer.flush() is True  # set aside once, not retried forever
    writer.close()


def test_background_thread_flushes_without_being_asked(tmp_path: Path) -> None:
    client, run_id = _run()
    stored = threading.Event()

    def sink(rid: str, metrics: Sequence[Metric], sequence: BatchSequence) -> None:
        client.store.log_batch(rid, metrics=metrics, sequence=sequence)
        stored.set()

    writer = BufferedWriter(sink, tmp_path / "journal", flush_interval=0.05)
    writer.add(run_id, "x", 1.0, 0, 0)
    assert stored.wait(5)
    assert len(client.get_metric_history(run_id, "x")) == 1
    writer.close()


def test_large_backlog_is_sent_in_bounded_batches(tmp_path: Path) -> None:
    client, run_id = _run()
    sizes: list[int] = []

    def sink(rid: str, metrics: Sequence[Metric], sequence: BatchSequence) -> None:
        sizes.append(len(metrics))
        client.store.log_batch(rid, metrics=metrics, sequence=sequence)

    writer = BufferedWriter(sink, tmp_path / "journal", flush_interval=60)
    for i in range(MAX_BATCH * 2 + 10):
        writer.add(run_id, "x", float(i), i, i)
    writer.flush()
    assert max(sizes) <= MAX_BATCH and sum(sizes) == MAX_BATCH * 2 + 10
    writer.close()


def test_concurrent_producers_lose_nothing(tmp_path: Path) -> None:
    client, run_id = _run()
    writer = BufferedWriter(FlakyStore(client), tmp_path / "journal", flush_interval=0.01)

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


def test_full_segments_are_deleted_once_stored(tmp_path: Path) -> None:
    client, run_id = _run()
    writer = BufferedWriter(FlakyStore(client), tmp_path / "journal", flush_interval=60)
    for i in range(20_000):  # ~1.4 MB of records: several segments
        writer.add(run_id, "x", float(i), i, i)
    assert writer.flush() is True
    (left,) = [n for n in _files(tmp_path / "journal") if n.endswith(".seg")]  # the open segment
    assert int(left.split(".")[1]) >= 3  # it was not the first
    writer.close()
    assert client.get_metric_history(run_id, "x").steps == list(range(20_000))


def test_a_torn_record_ends_what_is_read(tmp_path: Path) -> None:
    client, run_id = _run()
    dead = FlakyStore(client)
    dead.down = True
    writer = BufferedWriter(dead, tmp_path / "journal", flush_interval=60)
    for i in range(5):
        writer.add(run_id, "x", float(i), i, i)
    writer.close()
    (segment,) = (tmp_path / "journal").glob("*.seg")
    data = bytearray(segment.read_bytes())
    fourth = _record_offsets(bytes(data))[3]
    data[fourth + 20] ^= 0xFF  # as if the process died while copying the fourth record
    segment.write_bytes(bytes(data))
    assert BufferedWriter(FlakyStore(client), tmp_path / "journal").flush() is True
    assert client.get_metric_history(run_id, "x").steps == [0, 1, 2]


def _record_offsets(data: bytes) -> list[int]:
    offsets, pos = [], 0
    while True:
        size = int.from_bytes(data[pos : pos + 4], "little")
        if size == 0:
            return offsets
        offsets.append(pos)
        pos += size


def test_an_unwritable_folder_keeps_points_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    client, run_id = _run()
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    writer = BufferedWriter(FlakyStore(client), blocked / "journal", flush_interval=60)
    writer.add(run_id, "x", 1.0, 0, 0)
    assert "Cannot write the metric journal" in caplog.text
    assert writer.flush() is True
    assert len(client.get_metric_history(run_id, "x")) == 1
    writer.close()


def _log_in_child(writer: BufferedWriter, run_id: str) -> None:
    writer.add(run_id, "child", 1.0, 0, 0)
    os._exit(0 if writer.flush() else 1)


def test_a_forked_child_does_not_send_its_parents_points(tmp_path: Path) -> None:
    client, run_id = _run()
    writer = BufferedWriter(FlakyStore(client), tmp_path / "journal", flush_interval=60)
    for i in range(5):
        writer.add(run_id, "parent", float(i), i, i)
    child = mp.get_context("fork").Process(target=_log_in_child, args=(writer, run_id))
    child.start()
    child.join(60)
    assert child.exitcode == 0
    assert writer.flush() is True
    assert client.get_metric_history(run_id, "parent").steps == list(range(5))
    assert len(client.get_metric_history(run_id, "child")) == 1
    writer.close()


def test_journal_records_round_trip(tmp_path: Path) -> None:
    j = journal.Journal(tmp_path)
    j.append("r1", 1, "loss", 0.5, 3, 1000)
    j.append("r2", 1, "ключ", float("-inf"), -1, 2**62)
    got = list(j.records())
    assert got == [("r1", 1, "loss", 0.5, 3, 1000), ("r2", 1, "ключ", float("-inf"), -1, 2**62)]
    j.close(remove=True)
    assert _files(tmp_path) == []


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
    with pytest.raises(my.ModelyardError):
        client.set_terminated(run_id)
    client.store.restore_run(run_id)
    assert client.flush()  # the point is still in the journal and is stored now
    assert len(client.get_metric_history(run_id, "x")) == 1


def test_a_bad_run_id_is_refused_at_once(tmp_path: Path) -> None:
    writer = BufferedWriter(lambda *args: None, tmp_path / "journal", flush_interval=60)
    with pytest.raises(my.ModelyardError, match="Invalid run id"):
        writer.add("x" * 300, "k", 1.0, 0, 0)
    assert writer.close() is True
