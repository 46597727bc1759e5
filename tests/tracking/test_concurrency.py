"""Concurrent writers lose nothing: 8 processes log 10,000 points each into one SQLite store."""

from __future__ import annotations

import multiprocessing as mp
from pathlib import Path

import modelyard as my

POINTS = 10_000
PROCESSES = 8


def _worker(uri: str, run_id: str, worker: int) -> None:
    client = my.Client(uri)
    for i in range(POINTS):
        client.log_metric(run_id, f"w{worker}", float(i), step=i)
        if i % 2500 == 0:
            client.set_tag(run_id, f"progress{worker}", str(i))  # synchronous writes interleaved too
    assert client.flush()


def test_eight_processes_into_one_sqlite_store(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'shared.db'}"
    run_id = my.Client(uri).create_run("0").run_id
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_worker, args=(uri, run_id, w)) for w in range(PROCESSES)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(180)
    assert [p.exitcode for p in procs] == [0] * PROCESSES
    client = my.Client(uri)
    for w in range(PROCESSES):
        hist = client.get_metric_history(run_id, f"w{w}")
        assert hist.steps == list(range(POINTS)), f"worker {w} lost points"
    assert client.get_run(run_id).data.metrics == {f"w{w}": float(POINTS - 1) for w in range(PROCESSES)}
