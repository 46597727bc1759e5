"""Once `log_metric` has returned, its point survives a SIGKILL: real processes are killed, and the next
process's flush (or the end of the resumed run) stores every point exactly once."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import modelyard as my
from tests.server.live import LiveServer

LOG_THEN_WAIT = """
    import sys, time
    import modelyard as my
    client = my.Client()
    run_id, n = sys.argv[1], int(sys.argv[2])
    for i in range(n):
        client.log_metric(run_id, "x", float(i), step=i)
    print("logged", flush=True)
    time.sleep(600)
"""


def _python(code: str, *args: str, **kwargs: object) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code), *args], stdout=subprocess.PIPE, text=True, **kwargs
    )  # type: ignore[call-overload]


def _kill_after_logging(run_id: str, n: int) -> None:
    """A process logs `n` points and is SIGKILLed as soon as the last `log_metric` call has returned."""
    child = _python(LOG_THEN_WAIT, run_id, str(n))
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "logged"
    child.send_signal(signal.SIGKILL)
    assert child.wait(30) == -signal.SIGKILL


def _flush_in_a_new_process(flush: str = "my.flush()") -> None:
    code = f"import modelyard as my; raise SystemExit(0 if {flush} else 1)"
    assert subprocess.run([sys.executable, "-c", code], timeout=300).returncode == 0


@pytest.fixture(params=["embedded", "server"])
def tracking_uri(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[str]:
    if request.param == "embedded":
        uri = f"sqlite:///{tmp_path / 'store.db'}"
        monkeypatch.setenv("MODELYARD_TRACKING_URI", uri)
        yield uri
        return
    live = LiveServer(f"sqlite:///{tmp_path / 'server.db'}", tmp_path / "artifacts").start()
    monkeypatch.setenv("MODELYARD_TRACKING_URI", live.url)
    yield live.url
    live.stop()


def test_points_acknowledged_before_a_sigkill_are_stored_once_by_the_next_flush(tracking_uri: str) -> None:
    n = 50_000
    client = my.Client()
    run_id = client.create_run("0").run_id
    _kill_after_logging(run_id, n)
    _flush_in_a_new_process("my.Client().flush()")
    assert client.get_metric_history(run_id, "x").steps == list(range(n))  # all of them, none twice
    assert list((Path(os.environ["MODELYARD_HOME"]) / "journal").rglob("*.seg")) == []


def test_the_end_of_a_resumed_run_stores_what_the_killed_process_logged(tracking_uri: str) -> None:
    n = 20_000
    run_id = my.Client().create_run("0").run_id
    _kill_after_logging(run_id, n)
    resume = f"import modelyard as my\nwith my.start_run(run_id={run_id!r}):\n    pass\n"
    assert subprocess.run([sys.executable, "-c", resume], timeout=300).returncode == 0
    run = my.Client().get_run(run_id)
    assert run.info.status == my.RunStatus.FINISHED
    assert my.Client().get_metric_history(run_id, "x").steps == list(range(n))


def test_a_process_killed_while_storing_anothers_journal_leaves_it_to_the_next(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    n = 100_000
    database = tmp_path / "server.db"
    live = LiveServer(f"sqlite:///{database}", tmp_path / "artifacts").start()
    monkeypatch.setenv("MODELYARD_TRACKING_URI", live.url)
    try:
        run_id = my.Client().create_run("0").run_id
        live.stop()  # the first process logs while the server is down, then is killed
        monkeypatch.setenv("MODELYARD_HTTP_RETRIES", "0")
        _kill_after_logging(run_id, n)
        live.start()
        monkeypatch.delenv("MODELYARD_HTTP_RETRIES")

        # A second process starts storing that journal and is killed part-way through.
        storing = _python("import modelyard as my; my.flush()")
        stored_at_kill = _wait_for_some_points(database, storing, n)
        storing.send_signal(signal.SIGKILL)
        storing.wait(30)
        assert 0 < stored_at_kill < n

        _flush_in_a_new_process()  # a third takes the claim over
        assert my.Client().get_metric_history(run_id, "x").steps == list(range(n))
    finally:
        live.stop()


def _wait_for_some_points(database: Path, process: subprocess.Popen[str], n: int) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        assert process.poll() is None, "the process stored everything before it could be killed"
        with sqlite3.connect(database, timeout=30) as conn:
            count = conn.execute("SELECT count(*) FROM metrics").fetchone()[0]
        if 0 < count < n:
            return int(count)
        time.sleep(0.005)
    raise AssertionError("no point was stored")
