"""Buffered metric writer: `log_metric` appends to memory and to the journal, and returns; a background thread
stores points in batches at least every `flush_interval` seconds.

Nothing acknowledged is lost. Each point is in the journal (see journal.py) before `add` returns, so it
survives a SIGKILL; a later flush, in this process or the next one, stores what the store did not take (it
was unreachable, or the process died). Points are numbered per run and sent with their numbers
(`BatchSequence`), and the store skips those it already has: a batch sent twice, after a lost reply or a
crash between the store's commit and ours, is stored once."""

from __future__ import annotations

import atexit
import json
import logging
import os
import threading
import time
import weakref
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TypeVar

from modelyard.errors import InvalidState, NotFound
from modelyard.schemas import BatchSequence, Metric
from modelyard.store.validation import validate_run_id
from modelyard.tracking.journal import Journal, Record, orphans

log = logging.getLogger(__name__)

Sink = Callable[[str, Sequence[Metric], BatchSequence], None]
MAX_BATCH = 5000  # points per store call: one transaction each
R = TypeVar("R")


class BufferedWriter:
    def __init__(self, sink: Sink, folder: Path, flush_interval: float = 1.0) -> None:
        """`folder` holds the journals of one tracking store (and the points it refused, for a human)."""
        self._sink = sink
        self._folder = folder
        self._interval = flush_interval
        self._lock = threading.Lock()  # guards the journal, _next and _pending
        self._flush_lock = threading.Lock()  # one flush at a time: each run's points are stored in order
        self._thread: threading.Thread | None = None
        self._recovered_at = float("-inf")
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._reset()
        _live.add(self)

    def _reset(self) -> None:
        """A new journal (made at the next point) with its own id, so its numbers start again at 1."""
        self._journal: Journal | None = None
        self._next: dict[str, int] = {}  # last seq given per run
        self._pending: list[Record] = []
        self._stored: dict[str, int] = {}  # last seq stored (or set aside as refused) per run
        self._backlog: set[str] = set()  # runs whose points could not be stored: resent from the journal

    # producer side: must stay cheap --------------------------------------------------------------------
    def add(self, run_id: str, key: str, value: float, step: int, timestamp: int) -> None:
        with self._lock:
            seq = self._next[run_id] = self._next.get(run_id, 0) + 1
            if seq == 1:  # a run seen first: a bad id is refused now, not by the store a second later
                validate_run_id(run_id)
            if self._journal is None:
                self._journal = Journal(self._folder)
            self._journal.append(run_id, seq, key, value, step, timestamp)
            self._pending.append((run_id, seq, key, value, step, timestamp))
            size = len(self._pending)
        if self._thread is None:
            self._start()
        if size >= MAX_BATCH:
            self._wake.set()

    def _start(self) -> None:
        with self._lock:
            if self._thread is None:
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._loop, args=(self._stop,), name="modelyard-metric-writer", daemon=True
                )
                self._thread.start()

    def _loop(self, stop: threading.Event) -> None:
        with self._flush_lock:
            self._recover()  # what earlier processes left, while this one starts its work
        while not stop.is_set():
            self._wake.wait(self._interval)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # the loop must survive anything; the points stay in the journal
                log.exception("Background metric flush failed")

    # consumer side ---------------------------------------------------------------------------------------
    def flush(self) -> bool:
        """Store every point known to this writer: those that dead processes left in their journals first,
        then its own. True only when all are stored; False when some wait in a journal (the store is
        unreachable) or were refused (kept in `<run>.rejected.jsonl`)."""
        with self._flush_lock:
            recovered = self._recover()
            with self._lock:
                batch, self._pending = self._pending, []
            resent = self._resend_backlog()
            sent = self._store(batch, self._journal.id, self._stored) if batch and self._journal else True
            with self._lock:
                if self._journal is not None:
                    self._journal.release(self._stored)
            return recovered and resent and sent

    def finish(self, run_id: str, end: Callable[[list[Metric], BatchSequence | None], R]) -> R:
        """Store what is known of the run, then call `end` with the run's last buffered points, for the store
        to keep with the run's end in one transaction; they count as stored once `end` returns."""
        with self._flush_lock:
            if time.monotonic() - self._recovered_at >= self._interval:  # as often as the thread looks
                self._recover()
            self._resend_backlog()
            with self._lock:
                mine = [p for p in self._pending if p[0] == run_id]
                if mine:
                    self._pending = [p for p in self._pending if p[0] != run_id]
            mine = [p for p in mine if p[1] > self._stored.get(run_id, 0)]
            if not mine or run_id in self._backlog or self._journal is None:
                return end([], None)  # a backlog still waits: its points, these among them, go first
            try:
                result = end(_points(mine), _sequence(self._journal.id, mine[0][1]))
            except Exception:
                self._backlog.add(run_id)  # the points are in the journal: the next flush sends them
                raise
            self._stored[run_id] = mine[-1][1]
            return result

    def close(self, timeout: float = 30.0) -> bool:
        """Flush and stop the thread. A journal with points not stored stays on disk for the next process."""
        deadline = time.monotonic() + timeout
        stored = self.flush()
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.0, deadline - time.monotonic()))
            self._thread = None
        with self._flush_lock, self._lock:
            if self._journal is not None:
                self._journal.close(remove=not self._backlog and not self._pending)
            self._reset()
        return stored

    # storing ---------------------------------------------------------------------------------------------
    def _recover(self) -> bool:
        """Store the journals that processes left behind: they died, or closed with the store unreachable."""
        self._recovered_at = time.monotonic()
        ok = True
        for orphan in orphans(self._folder, own=self._journal.id if self._journal else None):
            if self._store(orphan.records(), orphan.id, orphan.stored()):
                orphan.discard()
                log.info("Stored the metric points of journal %s, left by an earlier process", orphan.id)
            else:
                orphan.release()
                ok = False
        return ok

    def _resend_backlog(self) -> bool:
        if not self._backlog or self._journal is None:
            return True
        with self._lock:
            records = self._journal.records()
        backlog, self._backlog = self._backlog, set()
        return self._store((r for r in records if r[0] in backlog), self._journal.id, self._stored)

    def _store(self, records: Iterable[Record], writer_id: str, stored: dict[str, int]) -> bool:
        """Send `records` per run, in order, in batches of consecutive numbers, skipping those in `stored`.
        A run the store cannot take now stops there; for this writer's own journal it joins the backlog."""
        own = self._journal is not None and writer_id == self._journal.id
        waiting = set(self._backlog) if own else set()  # their points come from the journal, in order
        refused = False
        chunks: dict[str, list[Record]] = {}

        def send(run_id: str, chunk: list[Record]) -> None:
            nonlocal refused
            outcome = self._send(run_id, chunk, writer_id)
            if outcome == "unavailable":
                waiting.add(run_id)
            else:
                stored[run_id] = chunk[-1][1]
                refused = refused or outcome == "refused"

        for record in records:
            run_id, seq = record[0], record[1]
            if run_id in waiting or seq <= stored.get(run_id, 0):
                continue
            chunk = chunks.setdefault(run_id, [])
            if chunk and (seq != chunk[-1][1] + 1 or len(chunk) >= MAX_BATCH):
                send(run_id, chunk)
                chunks[run_id] = chunk = []
                if run_id in waiting:
                    continue
            chunk.append(record)
        for run_id, chunk in chunks.items():
            if chunk and run_id not in waiting:
                send(run_id, chunk)
        if own:
            self._backlog |= waiting
        return not waiting and not refused

    def _send(self, run_id: str, chunk: list[Record], writer_id: str) -> str:
        points = _points(chunk)
        try:
            self._sink(run_id, points, _sequence(writer_id, chunk[0][1]))
        except (NotFound, InvalidState) as exc:  # the run is gone or deleted: keep the points for a human
            _set_aside(self._folder / f"{run_id}.rejected.jsonl", points)
            log.error("Metrics for run %s were refused (%s); kept in %s", run_id, exc, self._folder)
            return "refused"
        except Exception as exc:  # unreachable store, network, lock timeout: the journal keeps them
            log.warning(
                "Tracking store unavailable (%s); %d points wait in the journal", _short(exc), len(points)
            )
            return "unavailable"
        return "stored"

    def _after_fork_in_child(self) -> None:
        """The parent's points and journal stay the parent's; the child starts afresh."""
        self._lock, self._flush_lock = threading.Lock(), threading.Lock()
        self._stop, self._wake, self._thread = threading.Event(), threading.Event(), None
        if self._journal is not None:
            self._journal.abandon()
        self._reset()


_live: weakref.WeakSet[BufferedWriter] = weakref.WeakSet()


def _after_fork() -> None:
    for writer in list(_live):
        writer._after_fork_in_child()


os.register_at_fork(after_in_child=_after_fork)


@atexit.register
def _close_all() -> None:
    """At a normal exit, store what is buffered and remove the journals (a killed process leaves them)."""
    for writer in list(_live):
        try:
            writer.close()
        except Exception:  # never fail interpreter shutdown; the journal keeps the points
            log.exception("Storing buffered metrics at exit failed")


def _sequence(writer_id: str, first_seq: int) -> BatchSequence:
    return BatchSequence.model_construct(writer_id=writer_id, first_seq=first_seq)  # ours: valid by making


def _points(records: Sequence[Record]) -> list[Metric]:
    return [Metric.model_construct(key=k, value=v, step=s, timestamp=t) for _, _, k, v, s, t in records]


def _set_aside(path: Path, points: Sequence[Metric]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a", encoding="utf-8") as f:
        f.writelines(
            json.dumps({"k": m.key, "v": m.value, "s": m.step, "t": m.timestamp}) + "\n" for m in points
        )


def _short(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:200]
